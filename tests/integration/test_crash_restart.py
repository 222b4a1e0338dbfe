"""kill -9 under load, then restart: the first new ticket is greater than every ticket any
client received before the kill (durability high), for several kill/restart rounds.
Also: medium durability survives a SIGTERM restart, and both levels resume above."""

import threading
import time

from harness import Client, Node, check, run_main


def load(port, seen, stop, errors):
    try:
        c = Client(port, timeout=5)
        while not stop.is_set():
            try:
                seen.extend(c.tickets(16))
            except (ConnectionError, OSError):
                return
    except OSError as e:
        errors.append(e)


def main(args):
    node = Node(args.binary, threads=2)
    node.start()
    try:
        # Restart at once after kill -9 while clients still hold connections: the old
        # connections linger in the kernel (and the dead listener for a few ms) and must
        # not keep the node from binding its port again.
        held = [Client(node.port) for _ in range(5)]
        for h in held:
            h.call("PING")
        node.kill9()
        node.start()
        check(Client(node.port).call("PING") == "PONG",
              "restarts at once after kill -9 with client connections still open")
        for h in held:
            h.close()
        highest = 0
        for round_ in range(3):
            seen = []
            stop = threading.Event()
            errors = []
            threads = [threading.Thread(target=load, args=(node.port, seen, stop, errors))
                       for _ in range(8)]
            for t in threads:
                t.start()
            time.sleep(1.0)
            node.kill9()  # mid-load: replies in flight are simply lost, never duplicated
            stop.set()
            for t in threads:
                t.join(10)
            check(len(seen) > 100, "round %d: load ran (%d tickets acknowledged)" % (round_, len(seen)))
            check(len(set(seen)) == len(seen), "round %d: no duplicate before the kill" % round_)
            top = max(seen)
            check(top > highest, "round %d: tickets keep rising across restarts" % round_)
            highest = top
            node.start()
            first = int(Client(node.port).call("TICKET"))
            check(first > highest,
                  "round %d: first ticket after kill -9 (%d) > every acknowledged one (%d)"
                  % (round_, first, highest))
            highest = first
        node.terminate()

        # medium: a graceful restart loses nothing acknowledged.
        med = Node(args.binary, durability="medium", dir=node.dir, node_id=2).start()
        c = Client(med.port)
        vals = c.tickets(500)
        check(vals == list(range(1, 501)), "medium: dense from 1 on a fresh node id")
        check(med.terminate() == 0, "medium: SIGTERM exits 0")
        med.start()
        check(int(Client(med.port).call("TICKET")) == 501, "medium: resumes at 501 after SIGTERM")
        med.terminate()
        low = Node(args.binary, durability="low", dir=node.dir, node_id=3).start()
        vals = Client(low.port).tickets(300)
        check(vals == list(range(1, 301)), "low: dense from 1")
        check(low.terminate() == 0, "low: SIGTERM exits 0")
        low.start()
        check(int(Client(low.port).call("TICKET")) == 301,
              "low: SIGTERM flushes what was acknowledged from memory")
        low.terminate()
    finally:
        node.cleanup()


run_main(main)
