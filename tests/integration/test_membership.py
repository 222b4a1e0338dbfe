"""Membership changes on a live cluster: add a 4th and a 5th node with --join (pointed at a
follower, not the leader), remove one, remove the leader itself; a 5-node cluster survives 2
failures; a node whose data directory was wiped cannot rejoin under its old id until it is
removed; --join on a node that already has state is ignored."""

import shutil
import time

from harness import Client, Cluster, RespError, check, run_main


def tickets_ok(cl, n=20):
    leader = cl.leader()
    if leader is None:
        return None
    return Client(leader.port).tickets(n)


def main(args):
    cl = Cluster(args.binary, 3)
    try:
        cl.start()
        base = tickets_ok(cl)
        leader = cl.leader()
        follower = [n for n in cl.alive() if n is not leader][0]
        # Join through a follower: the join is redirected to the leader.
        cl.add_node(4, join_id=follower.id)
        cl.add_node(5, join_id=follower.id)
        conf = cl.wait_voters(5)
        check(len(conf) == 5, "a 4th and a 5th node joined (through a follower) and vote")
        v = tickets_ok(cl)
        check(v and v[0] > base[-1], "service goes on with 5 voters")
        # The new nodes hold the whole state.
        top = v[-1]
        deadline = time.time() + 10
        while time.time() < deadline and int(cl.stats(cl.nodes[5])["last_ticket"]) < top:
            time.sleep(0.05)
        check(int(cl.stats(cl.nodes[5])["last_ticket"]) >= top, "node 5 caught up")

        # 5 nodes survive 2 failures (kill two followers, then the rest still commit).
        leader = cl.leader()
        victims = [n for n in cl.alive() if n is not leader][:2]
        for n in victims:
            n.kill9()
        v2 = tickets_ok(cl)
        check(v2 and v2[0] > v[-1], "a 5-node cluster serves with 2 nodes down")
        for n in victims:
            n.start()
        # Remove one follower.
        leader = cl.leader()
        gone = [n for n in cl.alive() if n is not leader][0]
        r = Client(leader.port).call("RAFT.REMOVESERVER", str(gone.id))
        check(r == "OK", "RAFT.REMOVESERVER %d -> %r" % (gone.id, r))
        conf = cl.config(via=leader)
        check(len(conf) == 4 and all(int(s["id"]) != gone.id for s in conf),
              "the removed node left the configuration")
        gone.kill9()
        v3 = tickets_ok(cl)
        check(v3 and v3[0] > v2[-1], "service goes on after a removal")
        # Remove the leader itself: it steps down once the change commits.
        leader = cl.leader()
        r = Client(leader.port).call("RAFT.REMOVESERVER", str(leader.id))
        check(r == "OK", "the leader removes itself -> %r" % r)
        deadline = time.time() + 10
        new_leader = None
        while time.time() < deadline:
            new_leader = cl.leader(timeout=1)
            if new_leader is not None and new_leader is not leader:
                break
        check(new_leader is not None and new_leader is not leader,
              "a new leader among the remaining 3")
        conf = cl.config(via=new_leader)
        check(len(conf) == 3 and all(int(s["id"]) != leader.id for s in conf),
              "the old leader is out of the configuration")
        v4 = Client(new_leader.port).tickets(20)
        check(v4[0] > v3[-1], "service goes on after the leader removed itself")
        leader.kill9()

        # A wiped node cannot come back under its old id.
        victim = [n for n in cl.alive() if n is not new_leader][0]
        victim.kill9()
        shutil.rmtree("%s/%d" % (cl.dir, victim.id), ignore_errors=True)
        victim.join = "127.0.0.1:%d" % new_leader.port
        victim.start()
        time.sleep(2.0)
        st = cl.stats(victim)
        check(st["latest_configuration"] == "[]",
              "the wiped node was not let back in (config %s)" % st["latest_configuration"])
        check("another incarnation" in victim.log() or "new incarnation" in victim.log()
              or "incarnation" in new_leader.log(),
              "the refusal names the incarnation mismatch")
        c = Client(new_leader.port)
        check(c.call("RAFT.REMOVESERVER", str(victim.id)) == "OK", "remove the wiped node's old id")
        deadline = time.time() + 15
        back = False
        while time.time() < deadline:
            conf = cl.config(via=new_leader)
            if any(int(s["id"]) == victim.id and s["suffrage"] == "Voter" for s in conf):
                back = True
                break
            time.sleep(0.1)
        check(back, "after the removal the wiped node joins again as a new member")
        # --join on a node with state is ignored.
        victim.terminate()
        victim.start()
        check("ignored" in victim.log(), "--join on a node with state is ignored with a log line")
        r = c.call("TICKET")
        check(not isinstance(r, RespError), "still serving: %r" % r)
    finally:
        cl.cleanup()


run_main(main)
