"""TLS for clients (issue 13), with one set of certificates from tools/make-certs.sh:
- real clients over TLS: redis-cli --tls, redis-benchmark --tls, redis-py ssl=True, ioredis tls;
- refused without harm to anyone else (a TLS and a plaintext client keep being served, in
  order): a client certificate from another CA, an expired one, none, a plaintext client on the
  TLS port, TLS on the plaintext port, random bytes, and handshakes that stop halfway (closed
  after --tls-handshake-timeout);
- a TLS-only node (--saddr HOST:0) with --tls-auth-clients optional;
- start-up refused for an unreadable or mismatched certificate/key, with the flag named;
- reload without a restart: SIGHUP and TLS.RELOAD swap in a new certificate for new
  connections; a bad one is refused and the old stays."""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from harness import Client, Node, check, free_port, run_main, wait_for
from redis_py import python_with_redis
from test_hostile_input import raw_exchange
from tls_util import (TlsClient, client_hello, info, make_certs, node_flags,
                      wait_tls_ready)

QUICK = os.environ.get("TICKETD_TEST_QUICK") == "1"
NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")

REDIS_PY = r'''
import json, sys
import redis
port, certs = int(sys.argv[1]), sys.argv[2]
out = {"version": redis.__version__}
r = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=certs + "/ca.crt",
                ssl_certfile=certs + "/client.crt", ssl_keyfile=certs + "/client.key",
                decode_responses=True)
out["tickets"] = r.pipeline(transaction=False).execute_command("TICKET") \
    .execute_command("TICKET").execute()
out["ping"] = r.ping()
try:
    redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=certs + "/ca.crt",
                ssl_certfile=certs + "/expired-client.crt",
                ssl_keyfile=certs + "/expired-client.key").execute_command("TICKET")
    out["expired"] = "served"
except redis.exceptions.RedisError as e:
    out["expired"] = type(e).__name__ + ": " + str(e)
print(json.dumps(out))
'''


def cli(port, certs, *args, cert="client", tls=True, timeout=10):
    a = ["redis-cli", "-h", "127.0.0.1", "-p", str(port)]
    if tls:
        a += ["--tls", "--cacert", os.path.join(certs, "ca.crt")]
        if cert:
            a += ["--cert", os.path.join(certs, cert + ".crt"), "--key", os.path.join(certs, cert + ".key")]
    t0 = time.time()
    p = subprocess.run(a + list(args), capture_output=True, text=True, timeout=timeout)
    return p.returncode, (p.stdout + p.stderr).strip(), time.time() - t0


def raw(port, data, wait=5.0):
    """Sends `data`, returns (bytes received until the server closed, seconds it took)."""
    t0 = time.time()
    got = raw_exchange(port, data, timeout=wait)
    return got, time.time() - t0


class Watchers:
    """A TLS and a plaintext client that take tickets between the hostile cases: each case
    must leave them served, their tickets increasing."""

    def __init__(self, node, certs):
        self.tls = TlsClient(node.tls_port, certs)
        self.plain = Client(node.port)
        self.last = 0

    def still_served(self, what):
        a = self.tls.tickets(3)
        b = self.plain.tickets(3)
        ok = a == sorted(a) and b == sorted(b) and a[0] > self.last and b[0] > a[-1]
        check(ok, "after %s: a TLS and a plaintext client are still served (%r %r)" % (what, a, b))
        self.last = b[-1]


def hostile_cases(node, certs, w):
    tp, pp = node.tls_port, node.port
    rc, out, _ = cli(tp, certs, "TICKET", cert="other-client")
    check(rc != 0 or "error" in out.lower(), "a client certificate from another CA is refused (%s)" % out)
    w.still_served("another CA's client certificate")
    rc, out, _ = cli(tp, certs, "TICKET", cert="expired-client")
    check(rc != 0 or "error" in out.lower(), "an expired client certificate is refused (%s)" % out)
    rc, out, _ = cli(tp, certs, "TICKET", cert=None)
    check(rc != 0 or "error" in out.lower(), "no client certificate (--tls-auth-clients yes) is refused (%s)" % out)
    w.still_served("expired and missing client certificates")

    got, took = raw(tp, Client.encode("TICKET"))
    check(b"+" not in got and took < 4, "a plaintext client on the TLS port gets no ticket and is "
          "closed at once (%r in %.1fs)" % (got[:40], took))
    rc, out, took = cli(pp, certs, "PING")
    check(rc != 0 and took < 5, "TLS on the plaintext port fails at once (%s, %.1fs)" % (out, took))
    got, _ = raw(pp, client_hello(certs))
    check(got.startswith(b"-ERR this is the plaintext port; TLS clients connect to --tls-port %d" % tp),
          "a raw ClientHello on the plaintext port gets a plain -ERR naming the TLS port (%r)" % got[:90])
    w.still_served("plaintext on the TLS port and TLS on the plaintext port")

    # Random bytes (half of them behind a handshake record header, so they get past the first
    # check) and handshakes that stop halfway (part of a real ClientHello, then silence), all at
    # once: each is closed by the server (at the latest after the 1 s handshake timeout), and
    # meanwhile everyone else is served.
    rng = random.Random(13)
    sent = []
    for i in range(16 if not QUICK else 6):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4000)))
        if i % 2 == 0:
            junk = b"\x16\x03\x01" + junk
        sent.append(("random bytes %d" % i, junk))
    hello = client_hello(certs)
    for cut in (1, 5, len(hello) // 2, len(hello)):
        sent.append(("a handshake stopped after %d of %d bytes" % (cut, len(hello)), hello[:cut]))
    socks = []
    for what, data in sent:
        s = socket.create_connection(("127.0.0.1", tp), timeout=10)
        s.sendall(data)
        socks.append((what, s))
    t0 = time.time()
    w.still_served("%d hostile connections (while they are open)" % len(socks))
    for what, s in socks:
        closed = False
        try:
            while s.recv(65536):
                pass
            closed = True
        except ConnectionResetError:
            closed = True
        except socket.timeout:
            pass
        s.close()
        check(closed, "%s: closed by the server (after %.1fs)" % (what, time.time() - t0))
    check(time.time() - t0 < 6, "all closed within the handshake timeout and its check period")
    st = info(w.plain, "tls")
    check(int(st["tls_handshake_timeouts"]) >= 4, "INFO tls counts the timeouts (%s)" % st["tls_handshake_timeouts"])
    check(int(st["tls_handshake_failures"]) >= 4 and int(st["tls_hello_on_plaintext_port"]) >= 1,
          "INFO tls counts the refused handshakes and the TLS hello on the plaintext port (%r)" % st)
    w.still_served("the handshake timeouts")


def real_clients(node, certs, w):
    tp = node.tls_port
    rc, out, _ = cli(tp, certs, "TICKET")
    check(rc == 0 and int(out) > w.last, "redis-cli --tls --cacert --cert --key: TICKET (%s)" % out)
    n = 1000 if QUICK else 5000
    before = int(info(w.plain, "stats")["tickets_issued"])
    p = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(tp), "--tls", "--cacert",
                        os.path.join(certs, "ca.crt"), "--cert", os.path.join(certs, "client.crt"),
                        "--key", os.path.join(certs, "client.key"), "-c", "10", "-P", "8",
                        "-n", str(n), "-q", "TICKET"], capture_output=True, text=True, timeout=120)
    issued = int(info(w.plain, "stats")["tickets_issued"]) - before
    check(p.returncode == 0 and "requests per second" in p.stdout and issued >= n,
          "redis-benchmark --tls: %d TICKETs (%s)" % (issued, p.stdout.strip().splitlines()[-1:]))

    py = python_with_redis()
    check(py is not None, "a python3 with redis-py (tools/install-deps.sh: python3-redis)")
    p = subprocess.run([py, "-c", REDIS_PY, str(tp), certs], capture_output=True, text=True, timeout=30)
    check(p.returncode == 0, "redis-py script ran (%s)" % p.stderr[-300:])
    r = json.loads(p.stdout)
    t = [int(x) for x in r["tickets"]]
    check(t[1] == t[0] + 1 and r["ping"] is True, "redis-py %s ssl=True: pipelined TICKETs, PING (%r)" % (r["version"], r))
    check(r["expired"] != "served" and "ConnectionError" in r["expired"],
          "redis-py with an expired certificate: refused (%s)" % r["expired"][:120])

    check(os.path.isdir(os.path.join(NODE_DIR, "node_modules", "ioredis")),
          "ioredis is installed (tools/install-deps.sh runs npm ci in tests/integration/node)")
    p = subprocess.run(["node", os.path.join(NODE_DIR, "tls_clients.js"), str(tp), certs],
                       capture_output=True, text=True, timeout=30, cwd=NODE_DIR)
    check(p.returncode == 0, "ioredis script ran (%s)" % p.stderr[-300:])
    r = json.loads(p.stdout)
    t = [int(x) for x in r["tickets"]["ok"]]
    check(r["connect"] == {"ok": "ready"} and t == [t[0], t[0] + 1, t[0] + 2],
          "ioredis tls: ready, pipelined TICKETs (%r)" % r)
    check("err" in r["other_ca"], "ioredis with another CA's certificate: refused (%r %r)" %
          (r["other_ca"], r["other_ca_error"]))
    w.still_served("the real clients")


def reload_cases(node, certs, tmp, w):
    live = os.path.join(tmp, "live")
    tp = node.tls_port

    def subject():
        c = TlsClient(tp, certs)
        s = c.sock.getpeercert()["subject"]
        c.close()
        return dict(x[0] for x in s)["commonName"]

    check(subject() == "ticketd node 1", "before the reload the node serves node 1's certificate")
    c = TlsClient(tp, certs)
    suite = c.sock.cipher()[0]
    c.close()
    # Python lists TLS_AES_256_GCM_SHA384 first; the server's order wins: AES-128-GCM.
    check(suite == "TLS_AES_128_GCM_SHA256", "the server picks its suite (%s)" % suite)
    kept = TlsClient(tp, certs)  # made before the reload: must keep working after it
    kept_first = kept.tickets(1)[0]
    # Rotate to node 2's certificate (same CA), signal, and new connections get it.
    shutil.copy(os.path.join(certs, "node-2.crt"), os.path.join(live, "node.crt"))
    shutil.copy(os.path.join(certs, "node-2.key"), os.path.join(live, "node.key"))
    os.kill(node.proc.pid, signal.SIGHUP)
    check(wait_for(lambda: subject() == "ticketd node 2", 10), "after SIGHUP new connections get the new certificate")
    check(wait_for(lambda: "TLS reloaded: certificate /O=ticketd/CN=ticketd node 2" in node.log(), 5),
          "the reload is logged")
    # A mismatched pair (node 3's certificate, node 2's key): refused, the old one stays.
    shutil.copy(os.path.join(certs, "node-3.crt"), os.path.join(live, "node.crt"))
    r = w.plain.call("TLS.RELOAD")
    check(str(r).startswith("ERR TLS reload failed, the old certificate stays in use: --tls-key-file") and
          "is not the key of the certificate" in str(r), "TLS.RELOAD with a mismatched key: -ERR (%s)" % r)
    check(subject() == "ticketd node 2", "after a refused reload the old certificate is still served")
    shutil.copy(os.path.join(certs, "node-3.key"), os.path.join(live, "node.key"))
    c = TlsClient(tp, certs)
    check(c.call("TLS.RELOAD") == "OK", "TLS.RELOAD over TLS: +OK")
    c.close()
    check(subject() == "ticketd node 3", "after TLS.RELOAD new connections get node 3's certificate")
    check(info(w.plain, "tls")["tls_loads"] == "3", "INFO tls_loads counts the loads (start + 2)")
    t = kept.tickets(2)
    check(t[0] > kept_first, "a connection made before the reloads is still served (%r)" % t)
    kept.close()
    w.still_served("the reloads")


def tls_only_node(binary, certs):
    """--saddr HOST:0 (no plaintext listener) and --tls-auth-clients optional."""
    tp = free_port()
    n = Node(binary, threads=1, extra=node_flags(certs, 1, tls_port=tp, auth_clients="optional"))
    n.args_base = n.args
    n.args = lambda: [("127.0.0.1:0" if a == "127.0.0.1:%d" % n.port else a) for a in n.args_base()]
    n.start(wait=False)
    try:
        wait_tls_ready(tp, certs, n.proc)
        check(not wait_for(lambda: socket.create_connection(("127.0.0.1", n.port), timeout=1), 0.3),
              "--saddr 127.0.0.1:0 with --tls-port: no plaintext listener")
        rc, out, _ = cli(tp, certs, "TICKET", cert=None)
        check(rc == 0 and out == "1", "--tls-auth-clients optional: a client without a certificate is served (%s)" % out)
        rc, out, _ = cli(tp, certs, "TICKET", cert="other-client")
        check(rc != 0 or "error" in out.lower(), "--tls-auth-clients optional: another CA's certificate is still refused (%s)" % out)
        rc, out, _ = cli(tp, certs, "RAFT.LEADER")
        check(out == "127.0.0.1:%d" % tp, "a TLS-only node advertises its TLS address (RAFT.LEADER %s)" % out)
        check("serving on 127.0.0.1:%d (TLS only)" % tp in n.log(), "the log says TLS only")
    finally:
        n.cleanup()


def startup_refusals(binary, certs, tmp):
    def start(flags):
        d = tempfile.mkdtemp(dir=tmp)
        p = subprocess.run([binary, "--id", "1", "--saddr", "127.0.0.1:%d" % free_port(), "--raddr",
                            "127.0.0.1:%d" % free_port(), "--dir", d] + flags,
                           capture_output=True, text=True, timeout=30)
        return p.returncode, p.stderr.strip()

    tp = str(free_port())
    base = node_flags(certs, 1, tls_port=tp)
    for what, repl, want in (
            ("an unreadable certificate", ("node-1.crt", "missing.crt"), "cannot read --tls-cert-file"),
            ("a mismatched key", ("node-1.key", "node-2.key"), "is not the key of the certificate in --tls-cert-file"),
            ("a key where the CA should be", ("ca.crt", "ca.key"), "--tls-ca-cert-file"),
            ("an expired certificate", ("node-1", "expired-client"), "the certificate expired")):
        flags = [a.replace(repl[0], repl[1]) for a in base]
        rc, err = start(flags)
        check(rc != 0 and want in err and "PRIVATE" not in err,
              "start-up with %s exits non-zero, naming it (rc %d: %s)" % (what, rc, err[-200:]))
    rc, err = start(["--tls-port", tp])
    check(rc == 2 and "--tls-cert-file is required" in err, "--tls-port without files: usage error (%s)" % err)


def main(args):
    tmp = tempfile.mkdtemp(prefix="ticketd-tls-")
    certs = make_certs(args.build)
    live = os.path.join(tmp, "live")  # the files the node reads (rotated by reload_cases)
    os.mkdir(live)
    shutil.copy(os.path.join(certs, "node-1.crt"), os.path.join(live, "node.crt"))
    shutil.copy(os.path.join(certs, "node-1.key"), os.path.join(live, "node.key"))
    tp = free_port()
    flags = ["--tls-port", str(tp), "--tls-cert-file", os.path.join(live, "node.crt"),
             "--tls-key-file", os.path.join(live, "node.key"), "--tls-ca-cert-file",
             os.path.join(certs, "ca.crt"), "--tls-handshake-timeout", "1000"]
    node = Node(args.binary, threads=2, extra=flags)
    node.tls_port = tp
    node.start()
    try:
        w = Watchers(node, certs)
        w.still_served("start")
        real_clients(node, certs, w)
        hostile_cases(node, certs, w)
        reload_cases(node, certs, tmp, w)
        check(node.proc.poll() is None, "the node is still running")
        check("TLS client connection refused:" in node.log(), "refused TLS clients are logged")
        # Every connection of the clients above is gone (a TLS connection closed by its client
        # while the server still had its close_notify to send used to stay open for good).
        check(wait_for(lambda: info(w.plain, "clients")["connected_clients"] == "2" and
                       info(w.plain, "tls")["tls_connections"] == "1", 10),
              "only the two watchers are left connected (%r, tls %r)" % (
                  info(w.plain, "clients")["connected_clients"], info(w.plain, "tls")["tls_connections"]))
        w.tls.close()
        w.plain.close()
        t0 = time.time()
        rc = node.terminate(timeout=15)
        check(rc == 0 and time.time() - t0 < 4, "SIGTERM stops the node at once (rc %r in %.1fs)" % (rc, time.time() - t0))
    finally:
        node.cleanup()
    tls_only_node(args.binary, certs)
    startup_refusals(args.binary, certs, tmp)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
