"""Window mode under --lease (issue 15) on a 3-node cluster.

Checks: INFO says window_confirmation:lease and the leader releases batches under its lease
(window_lease_confirms grows while window_rounds barely does); under a load of window and
dense sequences:
  * SIGSTOP of the leader for longer than the lease and an election timeout: the others elect
    a new leader and serve; requests sent to the paused node after the new leader answered
    wait in its socket, and when it wakes up (believing it leads, with its tick count stale)
    it must not answer them with tickets: its lease is measured on the clock, so it asks a
    quorum, learns it was deposed and redirects (or answers above everything before);
  * a leadership transfer under load (the lease ends before the target may campaign);
  * kill -9 of the leader;
and across all of it no ticket twice and every ticket above every ticket of its sequence
whose reply arrived before its request was sent (real-time order)."""

import os
import signal
import threading
import time

from harness import Client, Cluster, RespError, check, pipelined_loader, run_main
from test_window_mode import info, order_violations

QUICK = os.environ.get("TICKETD_TEST_QUICK") == "1"
SEQS = ("default", "fast", "plain")


def info_fields(node):
    c = node.client(timeout=3)
    raw = c.call("INFO", "persistence")
    c.close()
    out = {}
    for line in str(raw).splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k] = v.strip()
    return out


def loader(cl, plan, seen, stop):
    pipelined_loader(cl, plan, seen, stop, depth=4, step=1)


def served_after(seen, t):
    return all(any(d > t for _, _, d in seen.get(s, [])) for s in SEQS)


def main(args):
    cl = Cluster(args.binary, 3, extra=["--lease", "--default-mode", "window", "--default-window", "100"])
    old = None
    try:
        cl.start()
        leader = cl.leader()
        c = Client(leader.port)
        check(c.call("TICKET.CREATE", "fast", "MODE", "window", "WINDOW", "50") == "OK", "create a window sequence")
        check(c.call("TICKET.CREATE", "plain") == "OK", "create a dense sequence")
        f0 = info_fields(leader)
        check(f0.get("window_confirmation") == "lease", "INFO: window_confirmation:lease (%r)" % f0)
        got = [int(c.call("TICKET", "fast")) for _ in range(200)]
        check(got == list(range(1, 201)), "consecutive window tickets under the lease")
        f1 = info_fields(leader)
        confirms = int(f1["window_lease_confirms"]) - int(f0["window_lease_confirms"])
        rounds = int(f1["window_rounds"]) - int(f0["window_rounds"])
        check(confirms >= 150 and rounds < 50,
              "200 requests: %d released under the lease, %d quorum rounds" % (confirms, rounds))
        c.close()

        plan = [("TICKET",), ("TICKET", "fast"), ("TICKET.BLOCK", "fast", "5"), ("TICKET", "plain"),
                ("TICKET.BLOCK", "default", "3")]
        seen = {}
        stop = threading.Event()
        threads = [threading.Thread(target=loader, args=(cl, plan, seen, stop)) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5 if QUICK else 1.0)

        # 1. The leader paused past its lease and an election timeout.
        old = cl.leader()
        others = [n for n in cl.nodes.values() if n is not old]
        os.kill(old.proc.pid, signal.SIGSTOP)
        paused_at = time.time()
        new = cl.leader_among(others, timeout=10)
        check(new is not None, "a new leader while the old one is paused")
        deadline = time.time() + 10
        while time.time() < deadline and not served_after(seen, paused_at + 0.3):
            time.sleep(0.02)
        check(served_after(seen, paused_at + 0.3), "the new leader serves every sequence")
        # Requests to the paused node, sent after the new leader answered: they wait in its
        # socket (the kernel accepts the connection for it) until it wakes up.
        stale = Client(old.port, timeout=5)
        stale_sent = time.time()
        stale_cmds = [("TICKET", "fast"), ("TICKET",), ("TICKET.BLOCK", "fast", "4"), ("TICKET", "plain")]
        stale.send_raw(b"".join(Client.encode(*cmd) for cmd in stale_cmds))
        time.sleep(max(0.0, 1.5 - (time.time() - paused_at)))
        os.kill(old.proc.pid, signal.SIGCONT)
        woke = time.time()
        answers = []
        for cmd in stale_cmds:
            r = stale.read_reply()
            answers.append((cmd, r))
        stale.close()
        for cmd, r in answers:
            if isinstance(r, RespError):
                check(str(r).startswith(("MOVED", "CLUSTERDOWN", "TRYAGAIN")),
                      "the woken node redirects %r: %r" % (cmd, r))
                continue
            seq = cmd[1] if len(cmd) > 1 else "default"
            first = r[0] if isinstance(r, list) else int(r)
            before = max([v for _, v, d in seen.get(seq, []) if d < stale_sent] or [0])
            check(first > before, "the woken node answered %r with %r, not above %d acknowledged "
                  "before it was sent" % (cmd, r, before))
        print("woken after %.2fs of pause: %r" % (woke - paused_at, [r for _, r in answers]))

        # 2. A leadership transfer under load.
        time.sleep(0.3)
        lead = cl.leader()
        target = next(n for n in cl.nodes.values() if n is not lead)
        r = Client(lead.port).call("RAFT.TRANSFERLEADER", str(target.id))
        check(r == "OK", "RAFT.TRANSFERLEADER: %r" % r)
        transfer_at = time.time()
        deadline = time.time() + 10
        while time.time() < deadline and not served_after(seen, transfer_at + 0.2):
            time.sleep(0.02)
        check(served_after(seen, transfer_at + 0.2), "served after the transfer")

        # 3. kill -9 of the leader.
        lead = cl.leader()
        lead.kill9()
        kill_at = time.time()
        deadline = time.time() + 10
        while time.time() < deadline and not served_after(seen, kill_at + 0.2):
            time.sleep(0.02)
        check(served_after(seen, kill_at + 0.2), "served after kill -9 of the leader")
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(10)

        for s in SEQS:
            vals = [v for _, v, _ in seen.get(s, [])]
            check(len(set(vals)) == len(vals), "%s: no ticket twice (%d)" % (s, len(vals)))
            bad = order_violations(seen[s])
            check(not bad, "%s: every ticket above every one acknowledged before it was sent: %r" % (s, bad[:3]))
            print("%s: %d tickets, unique and in real-time order" % (s, len(vals)))
        nl = cl.leader()
        check(info(Client(nl.port), "fast")["mode"] == "window", "still a window sequence")
    finally:
        if old is not None and old.proc and old.proc.poll() is None:
            os.kill(old.proc.pid, signal.SIGCONT)
        cl.cleanup()


if __name__ == "__main__":
    run_main(main)
