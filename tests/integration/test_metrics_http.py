"""--metrics-addr under hostile and broken HTTP clients: the endpoint answers 4xx, never
crashes, bounds what a client may send and how long it may take, and none of it slows TICKET.

Checks: GET /metrics is 200 with the 0.0.4 content type, HEAD has no body, / points to /metrics,
other paths 404, other methods 405 with Allow, a garbage line 400, HTTP/2.0 505, a head past
8 KiB 431 (and the connection closes); 16 silent connections (the most it serves at once) do
not stop TICKETs, and after the 5 s request timeout they are closed and a scrape is served
again; a client trickling one byte at a time is cut off at the timeout; 300 random requests get
a status line each (or a close), the node stays up and TICKETs still increase; CONFIG GET
metrics-addr answers the flag; a bad --metrics-addr or one on the client port stops the node
with exit status 2, a taken one stops it with a message before it writes anything."""

import os
import random
import socket
import subprocess
import time

from harness import Node, check, free_port, run_main, wait_for

TIMEOUT_S = 5.0


def request(port, data, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def status(resp):
    line = resp.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    return int(parts[1]) if len(parts) >= 2 and parts[0] == b"HTTP/1.1" else None


def main(args):
    mport = free_port()
    node = Node(args.binary, extra=["--metrics-addr", "127.0.0.1:%d" % mport]).start()
    try:
        c = node.client()
        check(c.call("CONFIG", "GET", "metrics-addr") == ["metrics-addr", "127.0.0.1:%d" % mport],
              "CONFIG GET metrics-addr answers the flag")
        # The Raft view is published every 100 ms: the first one may not be out yet.
        wait_for(lambda: b'role="leader"} 1' in request(mport, b"GET /metrics HTTP/1.0\r\n\r\n"), 5)
        r = request(mport, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = r.partition(b"\r\n\r\n")
        check(status(r) == 200 and b"Content-Type: text/plain; version=0.0.4; charset=utf-8" in head,
              "GET /metrics: 200, text format 0.0.4")
        check(b"ticketd_raft_role{role=\"leader\"} 1" in body, "the body is the exposition")
        length = int([l for l in head.split(b"\r\n") if l.startswith(b"Content-Length:")][0].split()[1])
        check(length == len(body), "Content-Length is the body's length")
        r = request(mport, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        check(status(r) == 200 and r.endswith(b"\r\n\r\n"), "HEAD: headers only")
        check(status(request(mport, b"GET / HTTP/1.0\r\n\r\n")) == 200, "GET / (HTTP/1.0): 200")
        check(status(request(mport, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")) == 404, "other path: 404")
        r = request(mport, b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        check(status(r) == 405 and b"Allow: GET, HEAD" in r, "DELETE: 405 with Allow")
        check(status(request(mport, b"hello there\r\n\r\n")) == 400, "garbage: 400")
        check(status(request(mport, b"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n")) == 505, "HTTP/2.0: 505")
        big = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        check(status(request(mport, big)) == 431, "a head past 8 KiB: 431")

        # 16 silent connections take every slot; TICKETs do not notice.
        idle = [socket.create_connection(("127.0.0.1", mport), timeout=10) for _ in range(16)]
        time.sleep(0.3)
        t0 = time.time()
        vals = c.tickets(100)
        check(vals == sorted(vals) and time.time() - t0 < 2.0,
              "TICKETs are served while the endpoint is full (%.3f s)" % (time.time() - t0))
        t0 = time.time()
        r = request(mport, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", timeout=TIMEOUT_S * 3)
        waited = time.time() - t0
        check(status(r) == 200, "a 17th client is served once the silent ones time out (%.1f s)" % waited)
        closed = 0
        for s in idle:
            s.settimeout(2)
            try:
                closed += 1 if s.recv(1) == b"" else 0
            except (ConnectionResetError, socket.timeout):
                pass
            s.close()
        check(closed == 16, "the silent connections were closed at the timeout (%d of 16)" % closed)

        # Slow loris: one byte every 0.3 s never completes a request.
        s = socket.create_connection(("127.0.0.1", mport), timeout=10)
        t0 = time.time()
        cut = False
        for ch in b"GET /metrics HTTP/1.1\r\nHost: " + b"x" * 100:
            try:
                s.send(bytes([ch]))
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
            s.settimeout(0.3)
            try:
                if s.recv(1) == b"":
                    cut = True
                    break
            except socket.timeout:
                pass
            except ConnectionResetError:
                cut = True
                break
            if time.time() - t0 > TIMEOUT_S * 3:
                break
        s.close()
        check(cut and time.time() - t0 < TIMEOUT_S + 3,
              "a client trickling bytes is cut off at the timeout (%.1f s)" % (time.time() - t0))

        # Random requests.
        rnd = random.Random(14)
        pieces = [b"GET", b"HEAD", b"POST", b" ", b"/metrics", b"/", b"HTTP/1.1", b"HTTP/1.0",
                  b"\r\n", b"\n", b"Host: x", b":", b"\x00", b"\xff", b"Content-Length: 9",
                  b"Transfer-Encoding: chunked", b"?a=b", b"\t", b"%00"]
        answered = 0
        for i in range(300):
            data = b"".join(rnd.choice(pieces) for _ in range(rnd.randrange(1, 30)))
            if rnd.random() < 0.7:
                data += b"\r\n\r\n"
            sock = socket.create_connection(("127.0.0.1", mport), timeout=10)
            sock.sendall(data)
            if b"\r\n\r\n" not in data and b"\n\n" not in data:
                sock.shutdown(socket.SHUT_WR)  # an incomplete request: the client gives up
            out = b""
            sock.settimeout(TIMEOUT_S + 3)
            try:
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    out += chunk
            except (ConnectionResetError, socket.timeout):
                pass
            sock.close()
            st = status(out)
            if not (out == b"" or st in (200, 400, 404, 405, 431, 505)):
                check(False, "random request %d gets a status line or a close (%r)" % (i, out[:60]))
            answered += 1 if st else 0
        check(answered > 200, "most random requests got an HTTP answer (%d of 300)" % answered)
        check(node.proc.poll() is None, "the node is still up")
        more = c.tickets(10)
        check(more[0] > vals[-1], "TICKETs still increase after the hostile clients")
        check(status(request(mport, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")) == 200,
              "the endpoint still serves")
        c.close()

        # Bad flags.
        for bad in ["nonsense", "127.0.0.1:0", "127.0.0.1:%d" % node.port]:
            r = subprocess.run([args.binary, "--saddr", "127.0.0.1:%d" % free_port(),
                                "--raddr", "127.0.0.1:%d" % free_port(), "--dir", node.dir + "/x",
                                "--metrics-addr", bad] if bad != "127.0.0.1:%d" % node.port else
                               [args.binary, "--saddr", "127.0.0.1:%d" % node.port,
                                "--raddr", "127.0.0.1:%d" % free_port(), "--dir", node.dir + "/x",
                                "--metrics-addr", bad], capture_output=True, text=True, timeout=20)
            check(r.returncode == 2 and "metrics-addr" in r.stderr,
                  "--metrics-addr %s: exit 2 naming the flag (%d %r)" % (bad, r.returncode, r.stderr[-200:]))
        d = os.path.join(node.dir, "taken")
        r = subprocess.run([args.binary, "--saddr", "127.0.0.1:%d" % free_port(),
                            "--raddr", "127.0.0.1:%d" % free_port(), "--dir", d,
                            "--metrics-addr", "127.0.0.1:%d" % mport], capture_output=True,
                           text=True, timeout=20)
        check(r.returncode != 0 and "metrics-addr" in r.stderr and not os.path.exists(os.path.join(d, "1")),
              "a taken --metrics-addr stops the node before it writes anything (%d %r)"
              % (r.returncode, r.stderr[-200:]))
    finally:
        node.cleanup()


if __name__ == "__main__":
    run_main(main)
