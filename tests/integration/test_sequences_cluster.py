"""Named sequences in a 3-node cluster.

Checks: followers answer every sequence command with -MOVED to the leader (and redis-cli -c
follows it); kill -9 of the leader under a load of several sequences and blocks: service
resumes, and for every sequence each ticket handed out after the failover is greater than
every ticket acknowledged before it, none twice, while TICKET.LAST readers never see a value
below a ticket acknowledged before their read was sent; a follower that was down while the leader
created hundreds of sequences and compacted its log comes back by InstallSnapshot and, made
the leader, serves every one of them from where it was; a leader without a quorum answers
TICKET.LAST with -CLUSTERDOWN."""

import os
import signal
import subprocess
import threading
import time

from harness import Client, Cluster, RespError, check, key_slot, pipelined_loader, run_main

SEQS = ["orders", "users", "invoices"]


def loader(cl, plan, seen, stop):
    """Pipelines of 8 requests over `plan` to whoever leads (harness.pipelined_loader)."""
    pipelined_loader(cl, plan, seen, stop, depth=8, step=3)


def reader(cl, seq, reads, stop):
    """TICKET.LAST seq in a loop against whoever leads; records (seq, sent, value)."""
    c = None
    while not stop.is_set():
        try:
            if c is None:
                lead = cl.leader(timeout=0.5)
                if lead is None:
                    continue
                c = Client(lead.port, timeout=2)
            sent = time.time()
            r = c.call("TICKET.LAST", seq) if seq != "default" else c.call("TICKET.LAST")
            if isinstance(r, RespError):
                c.close()
                c = None
                continue
            reads.append((seq, sent, r))
            time.sleep(0.01)
        except (OSError, ConnectionError, ValueError):
            if c:
                c.close()
            c = None


def stale_reads(seen, reads):
    """Reads below a ticket of their sequence whose reply arrived before the read was sent."""
    stale = []
    for seq, sent, value in reads:
        acked = max((v for _, v, done in seen.get(seq, []) if done < sent), default=0)
        if value < acked:
            stale.append((seq, sent, value, acked))
    return stale


def main(args):
    cl = Cluster(args.binary, 3)
    try:
        cl.start()
        leader = cl.leader()
        c = Client(leader.port)
        for s in SEQS:
            check(c.call("TICKET.CREATE", s, "START", "100") == "OK", "create %s on the leader" % s)
        follower = [n for n in cl.alive() if n is not leader][0]
        f = Client(follower.port)
        for cmd in (("TICKET", "orders"), ("TICKET.BLOCK", "orders", "5"), ("TICKET.CREATE", "x"),
                    ("TICKET.FLOOR", "orders", "7"), ("TICKET.DROP", "orders"), ("TICKET.LIST",),
                    ("TICKET.INFO", "orders"), ("TICKET.LAST",), ("TICKET.LAST", "orders")):
            r = f.call(*cmd)
            # -MOVED names the slot of the sequence (the key), plain TICKET's without one.
            moved = "MOVED %d 127.0.0.1:%d" % (key_slot(cmd[1] if len(cmd) > 1 else "default"), leader.port)
            check(str(r) == moved, "a follower redirects %s: %s" % (cmd[0], r))
        out = subprocess.run(["redis-cli", "-c", "-p", str(follower.port), "TICKET.BLOCK", "orders", "4"],
                             capture_output=True, text=True, timeout=20).stdout.split()
        check(out[-2:] == ["100", "103"], "redis-cli -c follows the redirect: %r" % out)

        # kill -9 of the leader under load on several sequences.
        plan = [("TICKET",), ("TICKET", "orders"), ("TICKET.BLOCK", "users", "10"),
                ("TICKET", "invoices"), ("TICKET.BLOCK", "default", "3"), ("TICKET", "users"),
                ("TICKET.BLOCK", "orders", "7")]
        seen = {}
        reads = []
        stop = threading.Event()
        threads = [threading.Thread(target=loader, args=(cl, plan, seen, stop)) for _ in range(4)]
        threads += [threading.Thread(target=reader, args=(cl, s, reads, stop)) for s in ["default"] + SEQS]
        for t in threads:
            t.start()
        time.sleep(1.0)
        kill_time = time.time()
        leader.kill9()
        before = {s: max(v for _, v, _ in vals) for s, vals in seen.items()}
        deadline = time.time() + 10
        while time.time() < deadline and not all(
                any(t > kill_time for t, _, _ in seen.get(s, [])) for s in ["default"] + SEQS):
            time.sleep(0.01)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(10)
        for s in ["default"] + SEQS:
            vals = [v for _, v, _ in seen.get(s, [])]
            after = [v for t, v, _ in seen.get(s, []) if t > kill_time]
            check(after, "%s served again after the leader was killed" % s)
            check(len(set(vals)) == len(vals), "%s: no ticket twice (%d)" % (s, len(vals)))
            check(min(after) > before[s], "%s: every ticket after the failover (from %d) > every one "
                  "acknowledged before it (%d)" % (s, min(after), before[s]))
        # TICKET.LAST is linearizable: each value is at least every ticket of its sequence
        # acknowledged before the read was sent, through the failover too.
        stale = stale_reads(seen, reads)
        check(len(reads) > 20 and not stale,
              "%d TICKET.LAST reads, none below a ticket acknowledged before it was sent: %r"
              % (len(reads), stale[:3]))
        new_leader = cl.leader()
        check(new_leader is not None and new_leader is not leader, "a new leader")
        leader.start()

        # A paused leader wakes up believing it leads: a TICKET.LAST it finds waiting must not
        # be answered from its stale state (the read's quorum round fails: -CLUSTERDOWN or
        # -MOVED), while the others went on without it.
        check(cl.wait_voters(3) is not None, "the old leader is back as a voter")
        stale_leader = cl.leader()
        others = [n for n in cl.alive() if n is not stale_leader]
        sc = Client(stale_leader.port, timeout=10)
        check(isinstance(sc.call("TICKET.LAST", "orders"), int), "TICKET.LAST before the pause")
        os.kill(stale_leader.proc.pid, signal.SIGSTOP)
        try:
            fresh = cl.leader_among(others)
            check(fresh is not None, "the others elected a leader")
            top = Client(fresh.port).call("TICKET.BLOCK", "orders", "100")[1]
            sc.send_raw(Client.encode("TICKET.LAST", "orders"))
        finally:
            os.kill(stale_leader.proc.pid, signal.SIGCONT)
        r = sc.read_reply()
        check((isinstance(r, RespError) and str(r).split()[0] in ("CLUSTERDOWN", "MOVED")) or
              (isinstance(r, int) and r >= top),
              "the woken leader's TICKET.LAST is no stale value (%r; the others are at %d)" % (r, top))
        new_leader = cl.leader()

        # A follower down while the leader creates many sequences and compacts its log.
        lagger = [n for n in cl.alive() if n is not new_leader][0]
        lagger.kill9()
        c = Client(new_leader.port)
        many = ["bulk-%03d" % i for i in range(300)]
        c.send_raw(b"".join(Client.encode("TICKET.CREATE", s, "START", str(1000 + i))
                            for i, s in enumerate(many)))
        check(all(c.read_reply() == "OK" for _ in many), "300 more sequences created")
        c.send_raw(b"".join(Client.encode("TICKET.BLOCK", s, "5") for s in many))
        blocks = [c.read_reply() for _ in many]
        check(all(b == [1000 + i, 1004 + i] for i, b in enumerate(blocks)), "a block from each")
        check(c.call("TICKET.DROP", "invoices") == "OK", "drop one")
        check(c.call("RAFT.SNAPSHOT") == "OK", "RAFT.SNAPSHOT")
        top_orders = int(c.call("TICKET", "orders"))
        want = sorted(["default", "orders", "users"] + many)
        check(c.call("TICKET.LIST") == want, "the leader lists %d sequences" % len(want))
        lagger.start()
        target = int(cl.stats(new_leader)["commit_index"])
        caught = False
        deadline = time.time() + 10
        while time.time() < deadline and not caught:
            caught = int(cl.stats(lagger)["applied_index"]) >= target
            time.sleep(0.05)
        check(caught and "installed snapshot" in lagger.log(),
              "the lagging follower caught up through InstallSnapshot")
        check(c.call("RAFT.TRANSFERLEADER", str(lagger.id)) == "OK", "move leadership to it")
        check(cl.leader_among([lagger]) is lagger, "it leads")
        lc = Client(lagger.port)
        check(lc.call("TICKET.LIST") == want, "it holds all %d sequences (invoices dropped)" % len(want))
        info = lc.call("TICKET.INFO", "bulk-299")
        check(info[:4] == ["name", "bulk-299", "last", 1303], "TICKET.INFO from the snapshot: %r" % info)
        check(lc.call("TICKET.BLOCK", "bulk-150", "2") == [1155, 1156], "bulk-150 goes on from there")
        check(int(lc.call("TICKET", "orders")) > top_orders, "orders goes on above the old leader's")
        check(str(lc.call("TICKET", "invoices")) == "ERR no such sequence 'invoices'",
              "the dropped sequence stays dropped")
        check(lc.call("TICKET.LAST", "bulk-150") == 1156, "TICKET.LAST on the new leader")

        # A leader cut off from its quorum answers no read: -CLUSTERDOWN, never a value.
        for n in cl.alive():
            if n is not lagger:
                n.kill9()
        t0 = time.time()
        r = Client(lagger.port, timeout=10).call("TICKET.LAST", "bulk-150")
        check(isinstance(r, RespError) and str(r).startswith("CLUSTERDOWN"),
              "TICKET.LAST on a leader without a quorum: %s after %.2f s" % (r, time.time() - t0))
    finally:
        cl.cleanup()


run_main(main)
