"""Window mode (issue 15) on a 3-node cluster.

Checks: TICKET.CREATE ... MODE window [WINDOW n] and its refusals; TICKET.INFO shows mode,
window and the reserved high mark; --default-mode window makes `default` a window sequence;
redis-cli and redis-py get window tickets; under a load of window and dense sequences, kill -9
of the leader: every sequence serves again, no ticket twice, and every ticket is above every
ticket of its sequence whose reply arrived before its request was sent (real-time order),
across the failover; the new leader's tickets are above the killed leader's reserved mark;
the killed node, restarted and made leader, serves above everything before (a fresh
reservation, a gap, never a repeat)."""

import os
import subprocess
import threading
import time

from harness import Client, Cluster, RespError, check, pipelined_loader, run_main
from redis_py import import_redis

QUICK = os.environ.get("TICKETD_TEST_QUICK") == "1"


def loader(cl, plan, seen, stop):
    pipelined_loader(cl, plan, seen, stop, depth=6, step=1)


def order_violations(vals):
    """(sent, value, done) triples: a ticket not above one whose reply came before it was sent."""
    by_done = sorted(vals, key=lambda x: x[2])
    out = []
    j = 0
    best = 0
    for sent, v, _ in sorted(vals, key=lambda x: x[0]):
        while j < len(by_done) and by_done[j][2] < sent:
            best = max(best, by_done[j][1])
            j += 1
        if v <= best:
            out.append((v, best))
    return out


def info(c, name):
    r = c.call("TICKET.INFO", name)
    return dict(zip(r[0::2], r[1::2]))


def main(args):
    cl = Cluster(args.binary, 3, extra=["--default-mode", "window", "--default-window", "200"])
    try:
        cl.start()
        leader = cl.leader()
        c = Client(leader.port)
        check(c.call("TICKET.CREATE", "fast", "MODE", "window", "WINDOW", "50") == "OK", "create a window sequence")
        check(c.call("TICKET.CREATE", "plain", "START", "10") == "OK", "create a dense sequence")
        check(c.call("TICKET.CREATE", "w2", "MODE", "WINDOW", "START", "7") == "OK", "MODE window, START, any order")
        for bad, why in ((("TICKET.CREATE", "x", "MODE", "fast"), "MODE must be dense or window"),
                         (("TICKET.CREATE", "x", "WINDOW", "5"), "WINDOW needs MODE window"),
                         (("TICKET.CREATE", "x", "MODE", "window", "WINDOW", "0"), "WINDOW"),
                         (("TICKET.CREATE", "x", "MODE", "window", "WINDOW", "1000000001"), "at most"),
                         (("TICKET.CREATE", "x", "MODE", "window", "MODE", "dense"), "syntax"),
                         (("TICKET.CREATE", "x", "MODE"), "syntax")):
            r = c.call(*bad)
            check(isinstance(r, RespError) and why in str(r), "%r refused: %r" % (bad, r))
        check(c.call("TICKET.LIST") == ["default", "fast", "plain", "w2"], "nothing made by the refusals")
        i = info(c, "fast")
        check(i["mode"] == "window" and i["window"] == 50 and i["reserved"] == 0 and i["last"] == 0,
              "TICKET.INFO of a fresh window sequence: %r" % i)
        check(info(c, "default")["mode"] == "window" and info(c, "default")["window"] == 200,
              "--default-mode window: %r" % info(c, "default"))
        check(info(c, "plain")["mode"] == "dense" and info(c, "plain")["window"] == 0, "dense stays dense")
        check(int(c.call("TICKET", "fast")) == 1 and int(c.call("TICKET", "fast")) == 2, "window tickets 1, 2")
        check(c.call("TICKET.BLOCK", "fast", "120") == [3, 122], "a block larger than the window")
        check(int(c.call("TICKET", "w2")) == 7, "START of a window sequence")
        i = info(c, "fast")
        check(i["reserved"] >= 122 and i["last"] == i["reserved"], "reserved covers what was handed out: %r" % i)
        check(int(c.call("TICKET.LAST", "fast")) >= 122, "TICKET.LAST of a window sequence: the reserved mark")
        out = subprocess.run(["redis-cli", "-p", str(leader.port), "TICKET", "fast"],
                             capture_output=True, text=True, timeout=20).stdout.split()
        check(out and int(out[-1]) == 123, "redis-cli gets the next window ticket: %r" % out)
        check(int(c.call("TICKET.FLOOR", "fast", "5000")) == 5000, "a floor on a window sequence")
        check(int(c.call("TICKET", "fast")) == 5001, "the window moves above the floor")
        redis = import_redis()
        r = redis.Redis(port=leader.port, socket_timeout=10)
        got = [int(r.execute_command("TICKET", "fast")) for _ in range(5)]
        check(got == list(range(5002, 5007)), "redis-py: consecutive window tickets %r" % got)
        d = [int(r.execute_command("TICKET")) for _ in range(3)]
        check(d == sorted(d) and len(set(d)) == 3, "redis-py: plain TICKET in window mode %r" % d)
        r.close()

        # kill -9 of the leader under load: window sequences beside a dense one, mixed batches.
        plan = [("TICKET",), ("TICKET", "fast"), ("TICKET.BLOCK", "fast", "7"), ("TICKET", "plain"),
                ("TICKET.BLOCK", "default", "3"), ("TICKET", "w2")]
        seen = {}
        stop = threading.Event()
        threads = [threading.Thread(target=loader, args=(cl, plan, seen, stop)) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.6 if QUICK else 1.5)
        old = leader
        before_info = {s: info(Client(old.port), s) for s in ("default", "fast", "w2")}
        kill_time = time.time()
        old.kill9()
        deadline = time.time() + 10
        while time.time() < deadline and not all(
                any(t > kill_time for t, _, _ in seen.get(s, [])) for s in ("default", "fast", "plain", "w2")):
            time.sleep(0.01)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(10)
        for s in ("default", "fast", "plain", "w2"):
            vals = [v for _, v, _ in seen.get(s, [])]
            after = [v for t, v, _ in seen.get(s, []) if t > kill_time + 0.05]
            check(after, "%s served again after the leader was killed" % s)
            check(len(set(vals)) == len(vals), "%s: no ticket twice (%d)" % (s, len(vals)))
            bad = order_violations(seen[s])
            check(not bad, "%s: every ticket above every one acknowledged before it was sent: %r" % (s, bad[:3]))
            if s in before_info:
                # What the old leader reserved is never handed out again by the new one.
                check(min(after) > before_info[s]["reserved"] or min(after) > max(
                    v for t, v, d in seen[s] if d < kill_time),
                    "%s: the new leader serves above the old one's reservation" % s)
        new_leader = cl.leader()
        check(new_leader is not None and new_leader is not old, "a new leader")
        nc = Client(new_leader.port)
        top = {s: max(v for _, v, _ in seen[s]) for s in ("default", "fast", "w2")}

        # The killed node comes back and leads: it starts above the highest committed
        # reservation, from a fresh one of its own (a gap, never a repeat).
        old.start()
        check(cl.wait_voters(3) is not None, "the killed node is back")
        for _ in range(3):
            lead = cl.leader()
            if lead is old:
                break
            Client(lead.port).call("RAFT.TRANSFERLEADER", str(old.id))
            time.sleep(0.5)
        lead = cl.leader()
        lc = Client(lead.port)
        for s in ("default", "fast", "w2"):
            v = int(lc.call("TICKET", s)) if s != "default" else int(lc.call("TICKET"))
            check(v > top[s], "%s on node %d after the restart: %d > %d" % (s, lead.id, v, top[s]))
        nc.close()
    finally:
        cl.cleanup()


if __name__ == "__main__":
    run_main(main)
