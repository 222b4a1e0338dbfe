"""Hostile and clumsy clients: malformed and oversized input gets -ERR and a close; a
byte-at-a-time sender is served correctly; 1,000 idle connections keep memory bounded; a
client that never reads its replies is dropped; and through all of it the server keeps
serving everyone else."""

import socket
import time

from harness import Client, Node, check, run_main


def raw_exchange(port, data, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        out += b"<timeout>"
    s.close()
    return out


def main(args):
    node = Node(args.binary).start()
    try:
        port = node.port
        watcher = Client(port)
        base = int(watcher.call("TICKET"))

        cases = [
            (b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
            (b"*1\r\n$-5\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
            (b"*1\r\n$999999999999\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
            (b"*99999999\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
            (b"*1\r\n+TICKET\r\n", b"-ERR Protocol error: expected '$', got '+'\r\n"),
            (b"\"unbalanced\r\n", b"-ERR Protocol error: unbalanced quotes in request\r\n"),
            (b"x" * 70000, b"-ERR Protocol error: too big inline request\r\n"),
        ]
        for data, want in cases:
            got = raw_exchange(port, data)
            check(got == want, "malformed %r... -> %r (got %r)" % (data[:20], want, got[:80]))
        # Valid commands before a protocol error are answered first, in order.
        got = raw_exchange(port, Client.encode("PING") + b"*1\r\n$x\r\n")
        check(got == b"+PONG\r\n-ERR Protocol error: invalid bulk length\r\n",
              "commands before the error are answered (got %r)" % got)
        # Random garbage never crashes the server.
        import random
        rnd = random.Random(7)
        for _ in range(200):
            blob = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300)))
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.sendall(blob)
            s.close()
        check(watcher.call("PING") == "PONG", "server alive after 200 random blobs")

        # A byte-at-a-time sender is served correctly.
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        msg = Client.encode("TICKET") * 3 + Client.encode("ECHO", "slow") + b"PING\r\n"
        for b in msg:
            s.sendall(bytes([b]))
            time.sleep(0.0005)
        c = Client.__new__(Client)
        c.sock, c.buf = s, b""
        r = [c.read_reply() for _ in range(5)]
        check(r[3] == "slow" and r[4] == "PONG" and int(r[0]) < int(r[1]) < int(r[2]),
              "byte-at-a-time sender served in order: %r" % r)
        s.close()

        # A huge declared bulk (within the limit) that never arrives does not block others.
        hog = socket.create_connection(("127.0.0.1", port))
        hog.sendall(b"*2\r\n$4\r\nECHO\r\n$1000000\r\n" + b"a" * 1000)
        check(int(watcher.call("TICKET")) > base, "others are served while a bulk is pending")
        hog.close()

        # 1,000 idle connections: memory stays bounded.
        rss0 = node.rss_kb()
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(1000)]
        time.sleep(0.5)
        check(watcher.call("PING") == "PONG", "serving with 1,000 idle connections")
        rss1 = node.rss_kb()
        check(rss1 - rss0 < 64 * 1024,
              "1,000 idle connections cost %d KiB of RSS (< 64 MiB)" % (rss1 - rss0))
        info = watcher.call("INFO", "clients")
        check("connected_clients:100" in info, "INFO counts the idle connections")
        for s in idle:
            s.close()

        # A client that pipelines without ever reading is dropped, not buffered forever.
        greedy = socket.create_connection(("127.0.0.1", port))
        greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        greedy.settimeout(0.5)
        chunk = Client.encode("ECHO", "y" * 1000) * 1000
        sent = 0
        dropped = False
        deadline = time.time() + 60
        while time.time() < deadline and sent < 400 * 1024 * 1024:
            try:
                greedy.sendall(chunk)
                sent += len(chunk)
            except socket.timeout:
                continue
            except OSError:
                dropped = True
                break
        check(dropped, "a client that never reads is dropped (after %d MiB)" % (sent >> 20))
        greedy.close()
        rss2 = node.rss_kb()
        check(rss2 < rss0 + 256 * 1024, "RSS stays bounded (%d KiB)" % rss2)
        check(int(watcher.call("TICKET")) > base, "still serving everyone else")
    finally:
        node.cleanup()


run_main(main)
