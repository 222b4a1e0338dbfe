"""Membership commands validate every argument before anything is proposed (issue 10, items
2, 4 and 5): an oversized address no longer aborts the leader, garbage and other members'
addresses are refused, RAFT.REMOVESERVER checks the address it is given, a node that cannot
listen on its raft address fails before it writes any state, and a member restarted with a
new --raddr has the new address recorded by a configuration change."""

import os
import time

from harness import (Client, Cluster, Node, RespError, check, check_own_raft_address, free_port,
                     run_main)


def call(node, *args):
    return Client(node.port, timeout=5).call(*args)


def expect_err(node, args, fragment, what):
    r = call(node, *args)
    check(isinstance(r, RespError) and fragment in str(r),
          "%s: %r answers an error naming %r (got %r)" % (what, args[:3], fragment, r))


def conf_by_id(cl, via):
    return {int(s["id"]): s for s in cl.config(via=via)}


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.1)
    check(False, what)


def bad_raddr_on_first_start(args):
    # --raddr equal to --saddr: refused before anything is written, so a second start with
    # the right address bootstraps with it (before, the wrong one was recorded for good).
    n = Node(args.binary, node_id=1)
    try:
        n.rport = n.port
        n.start(wait=False)
        rc = n.proc.wait(timeout=20)
        check(rc != 0, "a node whose --raddr is its --saddr exits non-zero (%r)" % rc)
        check("same port" in n.log(), "it says why:\n" + n.log())
        files = []
        for root, _, names in os.walk(n.dir):
            files += [f for f in names if not f.endswith(".log")]
        check(files == [], "nothing was written before the check (%r)" % files)
        n.rport = free_port()
        n.start()
        check_own_raft_address(n, "restarted with the right --raddr, it records that address")
    finally:
        n.cleanup()


def main(args):
    bad_raddr_on_first_start(args)
    cl = Cluster(args.binary, 3)
    try:
        cl.start()
        leader = cl.leader()
        before = conf_by_id(cl, leader)
        other = [n for n in cl.alive() if n is not leader][0]

        # Item 2: a context past the codec's limit used to abort the leader on append.
        expect_err(leader, ["RAFT.ADDVOTER", "9", "127.0.0.1:1", "127.0.0.1:" + "9" * 5000],
                   "longer than", "a 5,000-byte service address")
        check(leader.proc.poll() is None, "the leader survived the oversized address")
        # Item 4: garbage, bad ports, empty addresses, another member's address.
        expect_err(leader, ["RAFT.ADDVOTER", "9", "garbage"], "bad raft address", "no port")
        expect_err(leader, ["RAFT.ADDVOTER", "9", "127.0.0.1:99999"], "bad raft address",
                   "a port past 65535")
        expect_err(leader, ["RAFT.ADDVOTER", "9", ""], "empty raft address", "empty")
        expect_err(leader, ["RAFT.ADDVOTER", "9", "127.0.0.1:1", ""], "empty service address",
                   "empty service address")
        expect_err(leader, ["RAFT.ADDVOTER", "9", "127.0.0.1:1 s=x"], "space",
                   "a space would corrupt the context")
        expect_err(leader, ["RAFT.ADDVOTER", "9", "127.0.0.1:%d" % other.rport], "belongs to node",
                   "another member's raft address")
        expect_err(leader, ["RAFT.ADDVOTER", "9", "127.0.0.1:1", "127.0.0.1:%d" % other.port],
                   "belongs to node", "another member's service address")
        expect_err(leader, ["RAFT.ADDVOTER", str(other.id), "127.0.0.1:1"], "already a member",
                   "re-adding a member at a new address")
        r = call(leader, "RAFT.ADDVOTER", str(other.id), "127.0.0.1:%d" % other.rport)
        check(r == "OK", "re-adding a member at its own address is a no-op (%r)" % r)
        expect_err(leader, ["RAFT.REMOVESERVER", str(other.id), "127.0.0.1:1"], "not 127.0.0.1:1",
                   "removing a member by the wrong address")
        expect_err(leader, ["RAFT.REMOVESERVER", "77"], "not in the configuration",
                   "removing a stranger")
        # Arguments are checked on followers too, before the redirect.
        expect_err(other, ["RAFT.ADDVOTER", "9", "garbage"], "bad raft address", "on a follower")
        after = conf_by_id(cl, leader)
        check(after == before, "nothing of that reached the configuration: %r" % after)
        v = Client(leader.port).tickets(5)
        check(len(v) == 5, "the leader still serves tickets")

        # Item 5: a member restarted with a new --raddr gets it recorded (a follower, then
        # the leader itself), and the cluster keeps three voters that replicate.
        for victim in (other, cl.leader()):
            victim.terminate()
            victim.rport = free_port()
            victim.start()
            want = "127.0.0.1:%d" % victim.rport
            wait_for(lambda: conf_by_id(cl, cl.leader() or victim).get(victim.id, {})
                     .get("address") == want, 15,
                     "node %d's new raft address %s was recorded: %r" %
                     (victim.id, want, cl.config()))
            cl.wait_voters(3)
            v2 = Client(cl.leader().port).tickets(5)
            check(v2[0] > v[-1], "tickets go on after node %d moved" % victim.id)
            v = v2
        # A node that joins afterwards becomes a voter (it reaches everyone where they are).
        cl.add_node(4)
        cl.wait_voters(4)
        # And the moved node can take over and be reached at its new address.
        leader = cl.leader()
        target = [n for n in cl.alive() if n is not leader and n.id in (other.id,)]
        if target:
            r = call(leader, "RAFT.TRANSFERLEADER", str(target[0].id))
            check(r == "OK", "transfer to the moved node: %r" % r)
            wait_for(lambda: cl.leader(timeout=2) is target[0], 10,
                     "the moved node leads after the transfer")
            v3 = Client(target[0].port).tickets(5)
            check(v3[0] > v[-1], "and serves tickets above everything before")
    finally:
        cl.cleanup()


run_main(main)
