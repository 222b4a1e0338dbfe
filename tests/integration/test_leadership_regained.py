"""A leader that loses its quorum answers its waiting TICKETs with -CLUSTERDOWN as soon as it
steps down (not after the 5 s proposal timeout), and when it leads again a moment later its
new, committed proposals are answered with tickets (issue 10, item 11: stale proposals of
the earlier leadership sat in front of the new ones and made them fail)."""

import os
import signal
import threading
import time

from harness import Client, Cluster, RespError, check, run_main


def main(args):
    cl = Cluster(args.binary, 3)
    paused = []
    try:
        cl.start()
        leader = cl.leader()
        base = Client(leader.port).tickets(10)
        followers = [n for n in cl.alive() if n is not leader]
        # 1. Cut the leader off from its quorum and give it several proposals that cannot
        #    commit: one connection per proposal, each sent a moment after the previous one
        #    (each becomes its own log entry).
        # (Killed, not paused: a paused follower would still find the leader's appends in
        # its socket buffer when it resumes, and commit them.)
        for f in followers:
            f.kill9()
        waiting = []
        answers = {}

        def ask(i, c):
            try:
                answers[i] = (c.read_reply(), time.time())
            except OSError as e:
                answers[i] = (e, time.time())

        threads = []
        t0 = time.time()
        for i in range(6):
            c = Client(leader.port, timeout=15)
            c.send_raw(Client.encode("TICKET"))
            waiting.append(c)
            t = threading.Thread(target=ask, args=(i, c))
            t.start()
            threads.append(t)
            time.sleep(0.03)
        # 2. CheckQuorum makes it step down within an election timeout or two.
        deadline = time.time() + 3
        while time.time() < deadline and cl.stats(leader)["state"] == "leader":
            time.sleep(0.02)
        check(cl.stats(leader)["state"] != "leader", "the cut-off leader stepped down")
        # 3. Pause the old leader, restart the others (without its new entries): they elect
        #    one of them, whose entries overwrite the old leader's. Bring it back.
        os.kill(leader.proc.pid, signal.SIGSTOP)
        paused.append(leader)
        for f in followers:
            f.start(wait=False)
        new_leader = cl.leader_among(followers, timeout=8)
        check(new_leader is not None, "the others elected a leader")
        mid = Client(new_leader.port).tickets(5)
        os.kill(leader.proc.pid, signal.SIGCONT)
        paused.remove(leader)
        # 4. Hand leadership straight back to the old leader, inside the old 5 s window.
        deadline = time.time() + 8
        led_again = False
        while time.time() < deadline and not led_again:
            try:
                r = Client(new_leader.port, timeout=2).call("RAFT.TRANSFERLEADER", str(leader.id))
                if r == "OK":
                    end = time.time() + 2
                    while time.time() < end and not led_again:
                        led_again = cl.stats(leader)["state"] == "leader"
                        time.sleep(0.02)
            except (OSError, ConnectionError):
                pass
        check(led_again, "the old leader leads again")
        check(time.time() - t0 < 4.5, "... inside the old proposals' 5 s window (%.1f s)" %
              (time.time() - t0))
        got = []
        for _ in range(5):
            r = Client(leader.port, timeout=10).call("TICKET")
            got.append(r)
        check(all(not isinstance(r, RespError) for r in got),
              "its new proposals are answered with tickets: %r" % got)
        # The TICKETs that waited while it was cut off were answered when it stepped down.
        for t in threads:
            t.join(10)
        check(len(answers) == 6, "every waiting TICKET was answered (%d)" % len(answers))
        for i, (r, at) in sorted(answers.items()):
            check(isinstance(r, RespError) and str(r).startswith("CLUSTERDOWN"),
                  "waiting TICKET %d answered -CLUSTERDOWN (%r)" % (i, r))
            check(at - t0 < 3.0, "... at once on step-down, not after the 5 s timeout (%.2f s)" %
                  (at - t0))
        vals = [int(r) for r in got]
        check(vals == sorted(vals) and vals[0] > max(base + mid),
              "above everything before, increasing: %r (before: %d)" % (vals, max(base + mid)))
        check(leader.proc.poll() is None, "no crash")
    finally:
        for n in paused:
            try:
                os.kill(n.proc.pid, signal.SIGCONT)
            except OSError:
                pass
        cl.cleanup()


run_main(main)
