"""TLS pieces shared by the TLS integration tests: certificates from tools/make-certs.sh (one
set per test process, made once), a TLS RESP client on top of harness.Client, and a node's
TLS flags."""

import os
import shutil
import socket
import ssl
import subprocess
import time

from harness import Client

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAKE_CERTS = os.path.join(ROOT, "tools", "make-certs.sh")


def make_certs(build_dir):
    """CA, node-1..4, client, and the --test-extras (other CA, expired, node-9-as-1), made once
    per build directory and shared by the TLS tests (ctest may run two at once: a lock)."""
    import fcntl
    directory = os.path.join(os.path.abspath(build_dir), "tls-test-certs")
    with open(directory + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(directory, "done")):
            shutil.rmtree(directory, ignore_errors=True)
            subprocess.run([MAKE_CERTS, "--dir", directory, "--nodes", "1 2 3 4", "--test-extras"],
                           check=True, capture_output=True, timeout=300)
            open(os.path.join(directory, "done"), "w").close()
    return directory


def node_flags(certs, node_id, tls_port=None, cluster=False, auth_clients="yes", timeout_ms=None):
    f = ["--tls-cert-file", os.path.join(certs, "node-%d.crt" % node_id),
         "--tls-key-file", os.path.join(certs, "node-%d.key" % node_id),
         "--tls-ca-cert-file", os.path.join(certs, "ca.crt"),
         "--tls-auth-clients", auth_clients]
    if tls_port is not None:
        f += ["--tls-port", str(tls_port)]
    if cluster:
        f += ["--tls-cluster", "yes"]
    if timeout_ms is not None:
        f += ["--tls-handshake-timeout", str(timeout_ms)]
    return f


def context(certs, cert="client", ca="ca.crt"):
    """A client SSLContext trusting `ca`, presenting `<cert>.crt` (None: no certificate)."""
    ctx = ssl.create_default_context(cafile=os.path.join(certs, ca))
    if cert is not None:
        ctx.load_cert_chain(os.path.join(certs, cert + ".crt"), os.path.join(certs, cert + ".key"))
    return ctx


class TlsClient(Client):
    """harness.Client over TLS (the handshake happens in the constructor)."""

    def __init__(self, port, certs, cert="client", timeout=10, ctx=None):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ctx = ctx or context(certs, cert)
        self.sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        self.buf = b""


def wait_tls_ready(port, certs, proc, timeout=20):
    """Until a TLS PING answers (for nodes without a plaintext listener)."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("ticketd exited early with %s" % proc.returncode)
        try:
            c = TlsClient(port, certs, timeout=2)
            r = c.call("PING")
            c.close()
            if r == "PONG":
                return
        except (OSError, ssl.SSLError) as e:
            last = e
        time.sleep(0.1)
    raise RuntimeError("no TLS answer on port %d: %r" % (port, last))


def client_hello(certs):
    """The bytes of a real TLS ClientHello (made in memory, never sent by Python itself)."""
    ctx = context(certs)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="127.0.0.1")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def info(client, section):
    text = client.call("INFO", section)
    return dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)
