"""SIGTERM to the leader of a 3-node cluster under load (what systemctl stop sends): the
leader hands leadership over, a new leader serves promptly (well under an election
timeout plus a failover's election), the old leader exits 0, and no acknowledged ticket is
lost (every ticket acknowledged before the signal stays below every ticket after it; no
value twice). The leadership log says why on every node: the old leader transferred and
stepped down for the transfer's higher term, the new leader won an election that a
leadership transfer began, the third node names the new leader. Then the two followers are
gone and the leader steps down for lack of quorum, saying so."""

import bisect
import os
import signal
import threading
import time

from harness import Cluster, check, leader_loader, run_main, wait_for

QUICK = bool(os.environ.get("TICKETD_TEST_QUICK"))


def main(args):
    cl = Cluster(args.binary, 3)
    try:
        cl.start()
        leader = cl.leader()
        check(leader is not None, "a leader")
        stop = threading.Event()
        seen, ports = [[], []], [[], []]  # per loader: (sent, value, received), port
        threads = [threading.Thread(target=leader_loader, args=(cl, seen[i], stop, ports[i]))
                   for i in range(2)]
        for t in threads:
            t.start()
        check(wait_for(lambda: len(seen[0]) + len(seen[1]) > (50 if QUICK else 200), 10),
              "tickets flow under load")
        t0 = time.time()
        os.kill(leader.proc.pid, signal.SIGTERM)
        rc = leader.proc.wait(timeout=15)
        t_exit = time.time() - t0
        check(rc == 0, "the old leader exits 0 after SIGTERM (in %.2f s)" % t_exit)
        others = [n for n in cl.nodes.values() if n is not leader]
        other_ports = {n.port for n in others}
        def served_by_others():
            return [s[2] for i in (0, 1) for s, p in zip(list(seen[i]), list(ports[i]))
                    if s[0] > t0 and p in other_ports]
        check(wait_for(lambda: served_by_others(), 10), "tickets flow from the new leader")
        first_new = min(served_by_others())
        gap = first_new - t0
        bound = 2.0 if QUICK else 1.0
        check(gap < bound, "the new leader serves %.0f ms after the SIGTERM (< %.0f ms)" %
              (gap * 1000, bound * 1000))
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(timeout=10)
        seen = seen[0] + seen[1]
        values = [s[1] for s in seen]
        check(len(values) == len(set(values)), "no ticket acknowledged twice (%d)" % len(values))
        before = [s for s in seen if s[2] < t0]
        after = [s for s in seen if s[0] > t0]
        check(before and after and max(s[1] for s in before) < min(s[1] for s in after),
              "every ticket after the SIGTERM is above every ticket acknowledged before it")
        # Real time: a ticket sent after another was acknowledged is above it.
        by_recv = sorted(seen, key=lambda s: s[2])
        recv_times = [s[2] for s in by_recv]
        prefix_max, m = [], 0
        for s in by_recv:
            m = max(m, s[1])
            prefix_max.append(m)
        bad = []
        for s in seen:
            i = bisect.bisect_left(recv_times, s[0])
            if i > 0 and prefix_max[i - 1] >= s[1]:
                bad.append(s)
        check(not bad, "real-time order across the handover (%r)" % bad[:3])

        new = cl.leader()
        check(new is not None and new is not leader, "a new leader")
        third = [n for n in others if n is not new][0]
        term = int(cl.stats(new)["term"])
        old_log = leader.log()
        check("shutting down: transferring leadership to node %d" % new.id in old_log,
              "the old leader logs the handover:\n" + old_log[-800:])
        # (Its target's vote request, or the new leader's first append, whichever came first.)
        check(("leadership: stepped down in term %d (higher term seen from node %d" %
               (term, new.id)) in old_log,
              "the old leader logs why it stepped down:\n" + old_log[-1500:])
        check(wait_for(lambda: ("leadership: this node leads term %d (won the election with" % term)
                       in new.log(), 5) and
              ("campaign began on: leadership transfer from node %d)" % leader.id) in new.log(),
              "the new leader logs that a leadership transfer made it leader:\n" + new.log()[-800:])
        check(wait_for(lambda: "leadership: node %d leads term %d (was node %d), after: higher term seen from node %d" %
                       (new.id, term, leader.id, new.id) in third.log(), 5),
              "the third node logs the new leader:\n" + third.log()[-800:])

        # Nothing acknowledged was lost: the last ticket, read linearizably, covers them all.
        top = max(values)
        check(int(new.client().call("TICKET.LAST")) >= top, "TICKET.LAST covers every ticket")

        # Both followers gone (the old leader stopped, the third killed): the leader steps
        # down for lack of quorum and says why.
        third.kill9()
        check(wait_for(lambda: "lost quorum: heard from 1 of 3 voters" in new.log(), 5),
              "the leader logs that it stepped down for lack of quorum:\n" + new.log()[-600:])
    finally:
        cl.cleanup()


run_main(main)
