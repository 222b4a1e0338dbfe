"""Replacing a removed node with a fresh one at the same address (a new machine takes over
a dead one's host:port under a new id) must not disturb the peer links.

Found in a 200-cycle tools/chaos run (its membership nemesis restarts a removed node's slot
as a fresh node with the old IP): every node kept a link to each removed server for good,
so a survivor's stale link "to node 3" reached node 4 at the same address, node 4 took it
for a newer link from that survivor and closed the real one, which reconnected and closed
the stale one, and so on; node 4 also dialled itself as "node 3" from the configuration
history in its log. Over 26 replacements the churn grew to thousands of link breaks."""

import os
import shutil
import time

from harness import Client, Cluster, Node, check, run_main

CHURN = ("replaced by a newer link", "our own id", "belongs to node")


def churn(node, since):
    with open(node.log_path, "rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    return [l for l in text.splitlines() if any(k in l for k in CHURN)]


def main(args):
    cl = Cluster(args.binary, 3)
    try:
        cl.start()
        leader = cl.leader()
        victim = [n for n in cl.alive() if n is not leader][0]
        c = Client(leader.port)
        c.tickets(20)
        check(c.call("RAFT.REMOVESERVER", str(victim.id)) == "OK", "remove a follower")
        victim.kill9()
        shutil.rmtree(os.path.join(cl.dir, str(victim.id)), ignore_errors=True)

        # A fresh node (new id) on the removed one's client and raft ports.
        fresh = Node(args.binary, node_id=9, dir=cl.dir, threads=1, port=victim.port,
                     rport=victim.rport, join="127.0.0.1:%d" % leader.port)
        fresh.own_dir = False
        cl.nodes[9] = fresh
        fresh.start()
        cl.wait_voters(3)
        conf = cl.config(via=leader)
        check(sorted(int(s["id"]) for s in conf) == sorted([leader.id, 9] +
              [n.id for n in cl.alive() if n not in (leader, fresh)]),
              "the configuration holds the fresh node, not the removed one")
        time.sleep(1.0)  # the join's own connects settle

        marks = {n.id: os.path.getsize(n.log_path) for n in cl.alive()}
        t_end = time.time() + 3.0
        n_ok = 0
        while time.time() < t_end:
            n_ok += len(c.tickets(10))
        lines = []
        for n in cl.alive():
            lines += ["node %d: %s" % (n.id, l) for l in churn(n, marks[n.id])]
        for l in lines[:10]:
            print("  " + l)
        check(n_ok > 0, "tickets flow with the fresh node in place (%d in 3 s)" % n_ok)
        check(not lines, "no peer link churn in 3 s of load (%d lines)" % len(lines))
        st = cl.stats(fresh)
        check(int(st["last_ticket"]) > 0, "the fresh node follows")
    finally:
        cl.cleanup()


run_main(main)
