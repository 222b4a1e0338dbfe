#!/usr/bin/env python3
"""RAFT.ADDVOTER answers +OK only for a node that really joins (issue 14's first bug).

Following the original's command list by hand: a node started without --join founds a
cluster of its own, so adding it to another cluster can never work; before, the leader said
+OK and listed it as a Nonvoter for ever. Now:
  - a node that founded its own cluster: -ERR naming the reason, and it is removed again;
  - nothing listening at the address: -ERR after the contact timeout, removed again;
  - a node started with --no-bootstrap: +OK once it answered; it catches up, becomes a voter,
    and (added without a service address) is still a redirect target, learned from its hello:
    -MOVED, CLUSTER NODES and CLUSTER SLOTS name its client address.
"""
import time

from harness import Client, Node, check, free_port, key_slot, membership_call, run_main, wait_for


def members(port):
    conf = Client(port).call("RAFT.CONFIGURATION")
    out = {}
    for row in conf:
        d = dict(zip(row[0::2], row[1::2]))
        out[int(d["id"])] = d
    return out


def main(args):
    nodes = []
    try:
        n1 = Node(args.binary, 1, threads=1)
        nodes.append(n1)
        n1.start()
        first = Client(n1.port).tickets(5)

        # A node with no --join and no --no-bootstrap: it founds a cluster of its own.
        rogue = Node(args.binary, 2, threads=1)
        nodes.append(rogue)
        rogue.start()
        rogue_tickets = Client(rogue.port).tickets(3)
        check(rogue_tickets[0] == 1, "the stray node founded its own cluster (%r)" % rogue_tickets)
        t0 = time.time()
        r = membership_call(n1.port, "RAFT.ADDVOTER", "2", "127.0.0.1:%d" % rogue.rport)
        check(isinstance(r, Exception) and "another cluster" in str(r),
              "ADDVOTER of a node of another cluster is an error (%r, %.1f s)" % (r, time.time() - t0))
        check(wait_for(lambda: 2 not in members(n1.port), 10),
              "the node that could not join left the configuration again (%r)" % members(n1.port))

        # Nothing listens at the address.
        t0 = time.time()
        r = membership_call(n1.port, "RAFT.ADDVOTER", "3", "127.0.0.1:%d" % free_port())
        check(isinstance(r, Exception) and "not answer" in str(r),
              "ADDVOTER of an address nobody answers is an error (%r after %.1f s)" % (r, time.time() - t0))
        check(wait_for(lambda: 3 not in members(n1.port), 10), "node 3 left the configuration again")

        # The documented way: start the node with --no-bootstrap, then add it.
        n4 = Node(args.binary, 4, threads=1, extra=["--no-bootstrap"])
        nodes.append(n4)
        n4.start()
        r = Client(n4.port).call("TICKET")
        check(isinstance(r, Exception) and "CLUSTERDOWN" in str(r),
              "a --no-bootstrap node hands out nothing before it is added (%r)" % r)
        check("waiting to be added" in n4.log(), "it says it waits to be added:\n" + n4.log())
        r = membership_call(n1.port, "RAFT.ADDVOTER", "4", "127.0.0.1:%d" % n4.rport)
        check(r == "OK", "ADDVOTER of a --no-bootstrap node answers OK (%r)" % r)
        check(wait_for(lambda: members(n1.port).get(4, {}).get("suffrage") == "Voter", 15),
              "node 4 caught up and became a voter (%r)" % members(n1.port))
        # Added without a service address: the leader learns it from node 4's hello.
        check(wait_for(lambda: members(n1.port)[4]["service_address"] == "127.0.0.1:%d" % n4.port, 10),
              "node 4's service address was learned (%r)" % members(n1.port).get(4))
        listing = Client(n1.port).call("CLUSTER", "NODES")
        check(" 127.0.0.1:%d@%d slave " % (n4.port, n4.rport) in listing,
              "CLUSTER NODES lists node 4 as a replica at its client address:\n" + listing)
        r = Client(n1.port).call("RAFT.TRANSFERLEADER", "4")
        check(r == "OK", "leadership moves to node 4 (%r)" % r)

        def redirected():
            r = Client(n1.port).call("TICKET")
            return isinstance(r, Exception) and str(r) == "MOVED %d 127.0.0.1:%d" % (key_slot("default"), n4.port)
        check(wait_for(redirected, 10), "node 1 redirects to node 4's service address")
        slots = Client(n1.port).call("CLUSTER", "SLOTS")
        check(slots[0][2][:2] == ["127.0.0.1", n4.port],
              "node 1's CLUSTER SLOTS names node 4's client address as the master (%r)" % slots)
        after = Client(n4.port).tickets(5)
        check(after[0] > first[-1], "node 4 continues the cluster's tickets (%r after %r)" % (after, first))
    finally:
        for n in nodes:
            n.terminate()
            n.cleanup()


if __name__ == "__main__":
    run_main(main)
