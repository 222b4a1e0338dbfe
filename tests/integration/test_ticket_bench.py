#!/usr/bin/env python3
"""ticket-bench against small fake RESP servers (python3 stdlib only).

Checks that the checker catches duplicate and decreasing tickets (exit 3), accepts a
correct server (exit 0), follows -MOVED, counts error replies, and fails clearly on bad
flags (exit 2) and on a refused connection (exit 1). --etcd against a fake etcd v3 JSON
gateway: puts answered (Content-Length and chunked), revisions checked like tickets, non-200
replies counted as errors, -P > 1 refused. Must finish well under 60 s.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REQUEST = b"*1\r\n$6\r\nTICKET\r\n"
FAILURES = []


def check(what, ok, detail=""):
    print(("ok    " if ok else "FAIL  ") + what + (("  [" + detail + "]") if detail and not ok else ""))
    if not ok:
        FAILURES.append(what)


class FakeServer:
    """A RESP server on 127.0.0.1 answering every TICKET request according to `mode`."""

    def __init__(self, mode, moved_to=None):
        self.mode = mode
        self.moved_to = moved_to
        self.lock = threading.Lock()
        self.counter = 0
        self.replies = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closing = True
        self.sock.close()

    def _accept(self):
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _reply(self, per_conn):
        if self.mode == "silent":
            return None
        with self.lock:
            self.replies += 1
            n = self.replies
            if self.mode == "moved":
                return b"-MOVED 0 127.0.0.1:%d\r\n" % self.moved_to
            if self.mode == "errors" and n % 10 == 0:
                return b"-ERR something failed\r\n"
            if self.mode == "stall" and n == 200:
                time.sleep(0.3)  # one long pause, like a GC or a slow fsync
            if self.mode == "per-connection":
                # Each connection counts on its own: increasing per connection, but the
                # same numbers go to every connection (only the global check sees it).
                per_conn[0] += 1
                return b"+%d\r\n" % per_conn[0]
            self.counter += 1
            value = self.counter
            if self.mode == "decrease" and n == 700:
                value -= 500  # goes back once on one connection
            if self.mode == "integer":
                return b":%d\r\n" % value
            return b"+%d\r\n" % value

    def _serve(self, conn):
        buf = b""
        per_conn = [0]
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                out = []
                while buf.startswith(REQUEST):
                    buf = buf[len(REQUEST):]
                    reply = self._reply(per_conn)
                    if reply is not None:
                        out.append(reply)
                if buf and not REQUEST.startswith(buf[: len(REQUEST)]):
                    conn.sendall(b"-ERR unexpected request\r\n")
                    return
                if out:
                    conn.sendall(b"".join(out))
        except OSError:
            return
        finally:
            conn.close()


class FakeEtcd:
    """etcd's v3 JSON gateway as ticket-bench --etcd sees it: keep-alive HTTP/1.1, each
    POST /v3/kv/put answered with the store's revision in the reply header."""

    def __init__(self, mode):
        self.mode = mode
        self.lock = threading.Lock()
        self.revision = 1
        self.replies = 0
        self.bad_requests = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.sock.close()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _response(self):
        with self.lock:
            self.replies += 1
            n = self.replies
            if self.mode == "errors" and n % 10 == 0:
                body = b'{"error":"etcdserver: too many requests","code":14}'
                return b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: %d\r\n\r\n%s" % (
                    len(body), body)
            self.revision += 1
            rev = self.revision - (50 if self.mode == "decrease" and n == 300 else 0)
        body = b'{"header":{"cluster_id":"1","member_id":"2","revision":"%d","raft_term":"2"}}' % rev
        if self.mode == "chunked":
            half = len(body) // 2
            return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (
                        half, body[:half], len(body) - half, body[half:]))
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body))

    def _serve(self, conn):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:length], buf[length:]
                req = json.loads(body)
                if not head.startswith(b"POST /v3/kv/put HTTP/1.1\r\n") or not req.get("key"):
                    self.bad_requests += 1
                conn.sendall(self._response())
        except (OSError, ValueError):
            return
        finally:
            conn.close()


def run_bench(bench, args, timeout=30):
    with tempfile.TemporaryDirectory() as tmp:
        jpath = os.path.join(tmp, "out.json")
        proc = subprocess.run([bench, "-q", "--json", jpath] + args, capture_output=True,
                              text=True, timeout=timeout)
        result = None
        if os.path.exists(jpath):
            with open(jpath) as f:
                result = json.load(f)
        return proc, result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=False)
    ap.add_argument("--build", required=True)
    opts = ap.parse_args()
    bench = os.path.join(opts.build, "ticket-bench")
    if not os.path.exists(bench):
        print("ticket-bench not built at " + bench)
        return 1

    proc = subprocess.run([bench, "--self-test"], capture_output=True, text=True, timeout=30)
    check("histogram self-test passes", proc.returncode == 0, proc.stdout[-400:])

    good = FakeServer("good")
    proc, res = run_bench(bench, ["-p", str(good.port), "-c", "8", "-P", "4", "-n", "4000"])
    check("correct server: exit 0", proc.returncode == 0, proc.stdout + proc.stderr)
    check("correct server: 4000 requests measured, no violation",
          res is not None and res["requests"] == 4000 and res["violations"] == 0, str(res))
    check("correct server: check is on by default for TICKET",
          res is not None and res["config"]["check"] is True, str(res))

    integer = FakeServer("integer")
    proc, res = run_bench(bench, ["-p", str(integer.port), "-c", "4", "-P", "2", "-n", "2000"])
    check("integer replies (:n) are accepted as tickets", proc.returncode == 0,
          proc.stdout + proc.stderr)

    per_conn = FakeServer("per-connection")
    proc, res = run_bench(bench, ["-p", str(per_conn.port), "-c", "4", "-n", "2000"])
    check("same ticket on two connections: exit 3", proc.returncode == 3, proc.stdout + proc.stderr)
    check("same ticket on two connections: reported as handed out twice",
          "handed out twice" in proc.stdout and res is not None and res["violations"] > 0,
          proc.stdout)
    proc, res = run_bench(bench, ["-p", str(per_conn.port), "-c", "4", "-n", "2000", "--no-check"])
    check("--no-check disables the checker", proc.returncode == 0, proc.stdout + proc.stderr)

    decrease = FakeServer("decrease")
    proc, res = run_bench(bench, ["-p", str(decrease.port), "-c", "1", "-P", "8", "-n", "2000"])
    check("ticket going back on one connection: exit 3", proc.returncode == 3,
          proc.stdout + proc.stderr)
    check("ticket going back: reported as a per-connection violation",
          "on one connection" in proc.stdout, proc.stdout)

    moved = FakeServer("moved", moved_to=good.port)
    before = good.replies
    proc, res = run_bench(bench, ["-p", str(moved.port), "-c", "4", "-P", "4", "-n", "1000"])
    check("-MOVED is followed to the named server: exit 0", proc.returncode == 0,
          proc.stdout + proc.stderr)
    check("-MOVED: one redirect per connection, all answered by the target",
          res is not None and res["moved"] == 4 and res["requests"] == 1000
          and good.replies - before == 1000, str(res))

    errors = FakeServer("errors")
    proc, res = run_bench(bench, ["-p", str(errors.port), "-c", "2", "-n", "1000"])
    check("error replies are counted (every 10th of 1000)",
          res is not None and res["errors"] == 100 and res["first_error"].startswith("-ERR"),
          str(res))

    proc = subprocess.run([bench, "--bogus"], capture_output=True, text=True, timeout=10)
    check("bad flag: exit 2 with a message", proc.returncode == 2 and "--help" in proc.stderr,
          proc.stderr)
    proc = subprocess.run([bench, "-n", "5", "-d", "1"], capture_output=True, text=True, timeout=10)
    check("-n with -d: exit 2", proc.returncode == 2, proc.stderr)

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    free_port = s.getsockname()[1]
    s.close()  # nothing listens there now
    proc = subprocess.run([bench, "-p", str(free_port), "-n", "10"], capture_output=True,
                          text=True, timeout=10)
    check("connection refused: exit 1 with a clear message",
          proc.returncode == 1 and "refused" in proc.stderr, proc.stderr)

    proc, res = run_bench(bench, ["-p", str(good.port), "-c", "2", "-d", "0.5"])
    check("duration mode stops by itself", proc.returncode == 0 and res is not None
          and res["requests"] > 0, proc.stdout + proc.stderr)

    proc, res = run_bench(bench, ["-p", str(good.port), "-c", "4", "-P", "2", "-n", "1000",
                                  "--rate", "4000"])
    ok = proc.returncode == 0 and res is not None and res["requests"] == 1000
    check("open loop at 4000 req/s: 1000 requests take about 0.25 s",
          ok and 0.2 <= res["seconds"] <= 0.6 and 2500 <= res["throughput_rps"] <= 4500,
          str(res))

    # Coordinated omission: one 0.3 s stall at 1000 req/s on one connection delays the
    # ~300 requests that were due during it. Closed loop sees one slow request; open loop
    # must charge all of them (p90 well above 10 ms).
    stall = FakeServer("stall")
    proc, closed = run_bench(bench, ["-p", str(stall.port), "-c", "1", "-n", "1000"])
    stall.replies = 0
    proc2, opened = run_bench(bench, ["-p", str(stall.port), "-c", "1", "-n", "1000",
                                      "--rate", "1000"])
    check("stall: closed loop p90 stays small, max shows the stall",
          closed is not None and closed["latency_us"]["p90"] < 10000
          and closed["latency_us"]["max"] >= 290000, str(closed and closed["latency_us"]))
    check("stall: open loop charges every delayed request (p90 > 10 ms)",
          proc2.returncode == 0 and opened is not None and opened["latency_us"]["p90"] > 10000
          and opened["latency_us"]["max"] >= 290000, str(opened and opened["latency_us"]))

    silent = FakeServer("silent")
    started = time.monotonic()
    proc, res = run_bench(bench, ["-p", str(silent.port), "-c", "2", "-n", "10", "--timeout", "1"])
    elapsed = time.monotonic() - started
    check("server that never answers: hard timeout stops the run (exit 4) in ~1 s",
          proc.returncode == 4 and elapsed < 5 and res is not None and res["timed_out"],
          "exit %d after %.1f s" % (proc.returncode, elapsed))

    p = subprocess.Popen([bench, "-q", "-p", str(good.port), "-c", "2", "-d", "30"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    try:
        out, _ = p.communicate(timeout=5)
        check("SIGINT stops a 30 s run at once, with a report (exit 4)",
              p.returncode == 4 and "interrupted" in out, out)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        check("SIGINT stops a 30 s run at once", False, "still running 5 s after SIGINT")

    # --etcd: HTTP/1.1 puts to etcd's v3 JSON gateway, revisions checked like tickets.
    etcd = FakeEtcd("good")
    proc, res = run_bench(bench, ["--etcd", "-p", str(etcd.port), "-c", "4", "-n", "2000"])
    check("--etcd: correct gateway: exit 0, 2000 puts, checked by default",
          proc.returncode == 0 and res is not None and res["requests"] == 2000
          and res["violations"] == 0 and res["config"]["check"] is True and etcd.bad_requests == 0,
          proc.stdout + proc.stderr)
    chunked = FakeEtcd("chunked")
    proc, res = run_bench(bench, ["--etcd", "-p", str(chunked.port), "-c", "2", "-n", "500"])
    check("--etcd: chunked replies are read", proc.returncode == 0 and res is not None
          and res["requests"] == 500, proc.stdout + proc.stderr)
    etcd_back = FakeEtcd("decrease")
    proc, res = run_bench(bench, ["--etcd", "-p", str(etcd_back.port), "-c", "1", "-n", "1000"])
    check("--etcd: a revision going back on one connection: exit 3",
          proc.returncode == 3 and "on one connection" in proc.stdout, proc.stdout)
    etcd_err = FakeEtcd("errors")
    proc, res = run_bench(bench, ["--etcd", "-p", str(etcd_err.port), "-c", "2", "-n", "1000"])
    check("--etcd: non-200 replies are counted as error replies",
          res is not None and res["errors"] == 100 and "HTTP 503" in res["first_error"], str(res))
    proc = subprocess.run([bench, "--etcd", "-P", "2", "-p", str(etcd.port), "-n", "10"],
                          capture_output=True, text=True, timeout=10)
    check("--etcd with -P 2: exit 2 (no pipelining)", proc.returncode == 2, proc.stderr)

    for server in (etcd, chunked, etcd_back, etcd_err):
        server.close()
    for server in (good, integer, per_conn, decrease, moved, errors, silent, stall):
        server.close()
    print("%d check(s) failed" % len(FAILURES) if FAILURES else "all checks passed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
