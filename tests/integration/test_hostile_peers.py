"""Hostile traffic at scale: random bytes at the raft port, a peer from another cluster,
and 10,000 client connections held open. The node keeps serving everyone else and its
memory stays bounded; the figures are printed for docs/RELIABILITY.md."""

import random
import resource
import socket
import time

from harness import Client, Cluster, check, run_main


def main(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    a = Cluster(args.binary, 3)
    b = None
    try:
        a.start()
        leader = a.leader()
        target = [n for n in a.alive() if n is not leader][0]
        base = int(Client(leader.port).call("TICKET"))

        # Random bytes at a follower's raft port: each link is closed, nothing else happens.
        rnd = random.Random(11)
        for i in range(300):
            s = socket.create_connection(("127.0.0.1", target.rport), timeout=2)
            blob = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 2000)))
            if i % 3 == 0:
                blob = b"\x10\x00\x00\x00\x01" + blob  # a plausible length and HELLO kind
            try:
                s.sendall(blob)
            except OSError:
                pass
            s.close()
        v = Client(leader.port).tickets(100)
        check(v[0] > base, "the cluster serves after 300 garbage connections at a raft port")
        st = a.stats(target)
        check(st["state"] == "follower", "the target stayed a healthy follower")

        # A peer from another cluster: cluster B is told to add A's follower as a member;
        # B's leader then connects to it with B's cluster id and is refused.
        b = Cluster(args.binary, 1)
        b.start()
        bl = b.leader()
        r = Client(bl.port).call("RAFT.ADDVOTER", "7", "127.0.0.1:%d" % target.rport)
        check(r == "OK", "cluster B added a bogus member pointing at cluster A (%r)" % r)
        time.sleep(1.0)
        check("cluster id mismatch" in target.log(),
              "A's node refused B's leader for its cluster id")
        v2 = Client(a.leader().port).tickets(100)
        check(v2[0] > v[-1], "cluster A serves on")
        check(int(Client(bl.port).call("TICKET")) > 0, "cluster B serves on (its quorum is itself)")

        # 10,000 client connections held open on one node.
        rss0 = leader.rss_kb()
        socks = []
        t0 = time.time()
        for _ in range(10000):
            socks.append(socket.create_connection(("127.0.0.1", leader.port), timeout=10))
        took = time.time() - t0
        time.sleep(1.0)
        c = Client(leader.port)
        info = c.call("INFO", "clients")
        n = int([l for l in info.split("\r\n") if l.startswith("connected_clients:")][0].split(":")[1])
        check(n >= 10000, "10,000 connections held (%d connected, opened in %.1f s)" % (n, took))
        vals = c.tickets(1000)
        check(vals == list(range(vals[0], vals[0] + 1000)), "serving with 10,000 connections open")
        # A ticket on a sample of the held connections works too.
        for s in socks[::1000]:
            s.sendall(b"TICKET\r\n")
            assert s.recv(100).startswith(b"+")
        rss1 = leader.rss_kb()
        print("RSS: %d KiB before, %d KiB with 10,000 connections (+%d KiB, %.1f KiB each)" % (
            rss0, rss1, rss1 - rss0, (rss1 - rss0) / 10000.0), flush=True)
        check(rss1 - rss0 < 200 * 1024, "10,000 connections cost < 200 MiB of RSS")
        for s in socks:
            s.close()
    finally:
        a.cleanup()
        if b:
            b.cleanup()


run_main(main)
