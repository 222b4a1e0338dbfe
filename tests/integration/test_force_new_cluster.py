"""Recovery from a lost majority (issue 14): two of three nodes are gone for good; the
survivor restarts with --force-new-cluster and --floor as the only voter of its cluster (its
cluster id kept), hands out tickets above the floor, and new members join it.

The survivor is a follower that was down while the majority kept handing out tickets, so
its data ends before tickets clients already hold: a copy of its data forced WITHOUT a floor
hands one of them out again (why the floor exists); with the floor (the highest ticket the
clients saw plus a margin) none is repeated. Flag mistakes are refused before anything is
written."""

import os
import shutil
import subprocess
import tempfile

from harness import Client, Cluster, Node, RespError, check, run_main, wait_for


def ticket(port, *args):
    r = Client(port).call("TICKET", *args)
    if isinstance(r, RespError):
        raise r
    return int(r)


def flag_errors(binary):
    d = tempfile.mkdtemp(prefix="ticketd-force-flags-")
    try:
        cases = [
            (["--floor", "default=10"], 2, "--floor is applied only with --force-new-cluster"),
            (["--force-new-cluster", "--floor", "default"], 2, "want NAME=N"),
            (["--force-new-cluster", "--floor", "default=-1"], 2, "N must be an integer"),
            (["--force-new-cluster", "--floor", "a b=1"], 2, "bad --floor"),
            (["--force-new-cluster", "--floor", "x=1", "--floor", "x=2"], 2, "given twice"),
            (["--force-new-cluster"], 1, "nothing to recover from"),
            (["--force-new-cluster", "--no-bootstrap"], 2, "contradict"),
        ]
        for extra, code, text in cases:
            n = Node(binary, node_id=1, dir=d, extra=extra)
            p = subprocess.run(n.args(), capture_output=True, text=True, timeout=20)
            out = p.stdout + p.stderr
            check(p.returncode == code and text in out,
                  "%s: exit %d, says %r (%d: %s)" % (" ".join(extra), code, text, p.returncode,
                                                     out.strip()[-200:]))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main(args):
    flag_errors(args.binary)
    cl = Cluster(args.binary, 3)
    spare = tempfile.mkdtemp(prefix="ticketd-force-copy-")
    try:
        cl.start()
        leader = cl.leader()
        survivor = [n for n in cl.alive() if n is not leader][0]
        lost = [n for n in cl.alive() if n is not survivor]
        c = Client(leader.port)
        check(c.call("TICKET.CREATE", "orders", "START", "500") == "OK", "create orders")
        seen = c.tickets(50) + [ticket(leader.port, "orders") for _ in range(5)]
        myid_before = Client(survivor.port).call("CLUSTER", "MYSHARDID")
        # The survivor goes down first; the majority hands out more it never sees.
        check(survivor.terminate() == 0, "survivor stopped (before the others)")
        more = Client(leader.port).tickets(200)
        orders = [ticket(leader.port, "orders") for _ in range(20)]
        max_default, max_orders = max(more), max(orders)
        for n in lost:
            n.kill9()  # gone for good
        print("clients hold default up to %d, orders up to %d" % (max_default, max_orders))

        # Without a floor, a copy of the survivor's data repeats tickets clients hold.
        shutil.copytree(os.path.join(cl.dir, str(survivor.id)), os.path.join(spare, str(survivor.id)))
        bare = Node(args.binary, node_id=survivor.id, dir=spare, threads=1,
                    extra=["--force-new-cluster"])
        bare.own_dir = False
        bare.start()
        t = ticket(bare.port)
        check(t <= max_default, "forced without a floor, the survivor hands out %d, a ticket the "
              "lost majority had handed out (clients hold up to %d)" % (t, max_default))
        bare.kill9()

        # With floors: the highest ticket clients saw, plus a margin.
        margin = 1000
        survivor.extra = ["--force-new-cluster", "--floor", "default=%d" % (max_default + margin),
                          "--floor", "orders=%d" % (max_orders + margin),
                          "--floor", "invoices=7000"]
        survivor.start()
        check(wait_for(lambda: Client(survivor.port).call("RAFT.LEADER") ==
                       "127.0.0.1:%d" % survivor.port, 10), "the survivor leads alone")
        conf = cl.config(via=survivor)
        check([int(s["id"]) for s in conf] == [survivor.id] and conf[0]["suffrage"] == "Voter",
              "its configuration is itself alone: %r" % conf)
        check(Client(survivor.port).call("CLUSTER", "MYSHARDID") == myid_before,
              "the cluster id is kept (%s)" % myid_before)
        t = ticket(survivor.port)
        check(t == max_default + margin + 1, "default continues above its floor: %d" % t)
        o = ticket(survivor.port, "orders")
        check(o == max_orders + margin + 1, "orders continues above its floor: %d" % o)
        i = ticket(survivor.port, "invoices")
        check(i == 7001, "a sequence it never had is created above its floor: %d" % i)
        check("--force-new-cluster: this node is now the only voter" in survivor.log(),
              "the log says what was done")

        # New members join with the normal path; the cluster survives a failure again.
        for nid in (4, 5):
            n = cl.add_node(nid, start=False)
            n.join = "127.0.0.1:%d" % survivor.port
            n.start()
        cl.wait_voters(3)
        vals = Client(survivor.port).tickets(100)
        check(vals == sorted(vals) and vals[0] > t, "tickets keep increasing with 3 members")
        # Restarted without the flag, the survivor stays a member of the grown cluster.
        check(survivor.terminate() == 0, "survivor stopped")
        survivor.extra = []
        survivor.start()
        cl.wait_voters(3)
        new_leader = cl.leader()
        v = ticket(new_leader.port)
        check(v > max(vals), "after the restart without the flag: %d > %d" % (v, max(vals)))
        check(len(cl.config(via=new_leader)) == 3, "three members")
    finally:
        cl.cleanup()
        shutil.rmtree(spare, ignore_errors=True)


run_main(main)
