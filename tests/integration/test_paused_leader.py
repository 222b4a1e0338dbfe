"""A paused leader (SIGSTOP longer than the election timeout) wakes up believing it leads.

Clients keep pipelining TICKETs to it while it is paused and after it wakes. Whatever it had
in flight must fail or be answered only from committed entries of its own proposals: no
ticket twice, nothing that goes backwards in real time, no crash of the old leader, and the
cluster keeps serving through the new leader."""

import os
import signal
import threading
import time

from harness import Client, Cluster, RespError, check, run_main


def pipeliner(port, out, stop, depth):
    """Keeps `depth` TICKETs in flight on one connection; records (sent, done, value|error)."""
    try:
        c = Client(port, timeout=10)
    except OSError:
        return
    while not stop.is_set():
        sent = time.time()
        try:
            c.send_raw(Client.encode("TICKET") * depth)
            for _ in range(depth):
                r = c.read_reply()
                out.append((sent, time.time(), r))
        except (OSError, ConnectionError, ValueError):
            return


def main(args):
    cl = Cluster(args.binary, 3)
    try:
        cl.start()
        leader = cl.leader()
        check(leader is not None, "a leader")
        results = []
        stop = threading.Event()
        threads = [threading.Thread(target=pipeliner, args=(leader.port, results, stop, d))
                   for d in (1, 8, 32)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        os.kill(leader.proc.pid, signal.SIGSTOP)
        time.sleep(1.5)  # well past the election timeout: the others elect a new leader
        others = [n for n in cl.alive() if n is not leader]
        new_leader = cl.leader_among(others, timeout=5)
        check(new_leader is not None, "the others elected a new leader while it was paused")
        mid = Client(new_leader.port).tickets(100)
        os.kill(leader.proc.pid, signal.SIGCONT)
        # Long enough for the old leader's stale proposals to time out (5 s) while newer
        # requests on the same shards are refused at once.
        time.sleep(6.0)
        stop.set()
        for t in threads:
            t.join(15)
        check(leader.proc.poll() is None, "the old leader survived its pause (no abort)")
        ok = [(s, d, int(r)) for s, d, r in results if not isinstance(r, RespError)]
        errs = [r for _, _, r in results if isinstance(r, RespError)]
        print("acknowledged %d, errors %d (%s)" % (len(ok), len(errs),
              sorted(set(str(e).split(" ")[0] for e in errs))), flush=True)
        vals = [v for _, _, v in ok] + mid
        check(len(set(vals)) == len(vals), "no ticket handed out twice (%d)" % len(vals))
        # Real-time order: if A completed before B was sent, A < B.
        violations = 0
        done_sorted = sorted(ok, key=lambda x: x[1])
        sent_sorted = sorted(ok, key=lambda x: x[0])
        j = 0
        max_done = 0
        for s, d, v in sent_sorted:
            while j < len(done_sorted) and done_sorted[j][1] < s:
                max_done = max(max_done, done_sorted[j][2])
                j += 1
            if v <= max_done:
                violations += 1
        check(violations == 0, "real-time order holds (%d violations)" % violations)
        after = int(Client(cl.leader().port).call("TICKET"))
        check(after > max(vals), "the cluster serves on, above everything acknowledged")
    finally:
        for n in cl.nodes.values():
            if n.proc and n.proc.poll() is None:
                try:
                    os.kill(n.proc.pid, signal.SIGCONT)
                except OSError:
                    pass
        cl.cleanup()


run_main(main)
