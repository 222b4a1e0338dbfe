"""Shared pieces of the integration tests: start real ticketd processes on free loopback
ports in a temporary data directory, talk RESP to them, and stop them by PID.

Every test script takes `--binary PATH --build DIR` (ctest passes both) and exits non-zero
on the first failed check, printing what it checked."""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--build", required=True)
    return p.parse_args()


_used_ports = set()


def free_port():
    """A free port BELOW the kernel's ephemeral range: a restarted node must be able to bind
    its old port again, which fails if some client's outgoing connection was given that
    port number as its local port in the meantime."""
    import random
    rnd = random.Random(os.getpid() * 7919 + len(_used_ports))
    for _ in range(1000):
        port = rnd.randrange(20000, 32000)
        if port in _used_ports:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port")


def check(cond, what):
    if not cond:
        print("FAIL:", what, flush=True)
        sys.exit(1)
    print("ok:", what, flush=True)


class Node:
    """One ticketd process. Stopped only by its own PID."""

    def __init__(self, binary, node_id=1, dir=None, durability="high", threads=2,
                 extra=None, port=None, rport=None, join=None, auth=None, env=None):
        self.binary = binary
        self.id = node_id
        self.own_dir = dir is None
        self.dir = dir or tempfile.mkdtemp(prefix="ticketd-it-")
        self.port = port or free_port()
        self.rport = rport or free_port()
        self.durability = durability
        self.threads = threads
        self.extra = extra or []
        self.join = join
        self.auth = auth  # what the harness logs in with: "password" or ("user", "password")
        self.env = env    # extra environment variables for the process
        self.proc = None
        self.log_path = os.path.join(self.dir, "node-%d.log" % node_id)

    def args(self):
        a = [self.binary, "--id", str(self.id), "--saddr", "127.0.0.1:%d" % self.port,
             "--raddr", "127.0.0.1:%d" % self.rport, "--dir", self.dir,
             "--durability", self.durability, "--threads", str(self.threads)]
        if self.join:
            a += ["--join", self.join]
        return a + self.extra

    def start(self, wait=True):
        self.logf = open(self.log_path, "ab")
        env = None
        if self.env:
            env = dict(os.environ)
            env.update(self.env)
        self.proc = subprocess.Popen(self.args(), stdout=self.logf, stderr=subprocess.STDOUT,
                                     env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("ticketd exited early with %s; log:\n%s" %
                                   (self.proc.returncode, self.log()))
            try:
                c = self.client(timeout=2)
                r = c.call("PING")
                c.close()
                if r == "PONG":
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("ticketd did not become ready; log:\n" + self.log())

    def client(self, timeout=10):
        """A Client logged in as the harness's user for this node (if it has one)."""
        return Client(self.port, timeout=timeout, auth=self.auth)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self, timeout=15):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                return None
        return self.proc.returncode if self.proc else None

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cleanup(self):
        self.kill9()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def wait_for(fn, timeout):
    """True once fn() is true (errors while asking count as not yet), False after timeout s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if fn():
                return True
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(0.1)
    return False


def leader_loader(cluster, seen, stop, ports=None):
    """Sends TICKETs to whoever leads, following -MOVED, until `stop` is set; appends
    (sent, value, received) per acknowledged ticket to `seen` (time.time()), and the port
    that answered to `ports` if given."""
    port = cluster.nodes[1].port
    c = None
    while not stop.is_set():
        try:
            if c is None:
                c = Client(port, timeout=2)
            sent = time.time()
            r = c.call("TICKET")
            if isinstance(r, RespError):
                msg = str(r)
                if msg.startswith("MOVED"):
                    port = int(msg.rsplit(":", 1)[1])
                    c.close()
                    c = None
                else:
                    time.sleep(0.01)
                continue
            seen.append((sent, int(r), time.time()))
            if ports is not None:
                ports.append(port)
        except (OSError, ConnectionError, ValueError):
            if c:
                c.close()
            c = None
            alive = cluster.alive()
            if alive:
                port = alive[int(time.time() * 1000) % len(alive)].port
            time.sleep(0.01)


def pipelined_loader(cl, plan, seen, stop, depth=8, step=3):
    """Pipelines of `depth` requests over `plan` (tuples: TICKET [name], TICKET.BLOCK name n)
    to whoever leads, following -MOVED, until `stop` is set; records each acknowledged
    ticket (blocks expanded) as (sent, value, done) in seen[sequence] (time.time())."""
    port = cl.leader().port
    c = None
    i = 0
    while not stop.is_set():
        try:
            if c is None:
                c = Client(port, timeout=2)
            batch = [plan[(i + k) % len(plan)] for k in range(depth)]
            i += step
            sent = time.time()
            c.send_raw(b"".join(Client.encode(*cmd) for cmd in batch))
            moved = None
            for cmd in batch:
                r = c.read_reply()
                if isinstance(r, RespError):
                    if str(r).startswith("MOVED"):
                        moved = int(str(r).rsplit(":", 1)[1])
                    continue
                seq = cmd[1] if len(cmd) > 1 else "default"
                vals = range(r[0], r[1] + 1) if cmd[0] == "TICKET.BLOCK" else [int(r)]
                done = time.time()
                seen.setdefault(seq, []).extend((sent, v, done) for v in vals)
            if moved:
                port = moved
                c.close()
                c = None
        except (OSError, ConnectionError, ValueError):
            # The node went away: try another one (it redirects to the leader it knows).
            if c:
                c.close()
            c = None
            lead = cl.leader(timeout=0.5)
            port = lead.port if lead else port


def membership_call(port, *args, timeout=10):
    """A RAFT.ADDVOTER/REMOVESERVER/JOIN, retried while an earlier configuration change (a
    fresh cluster's own start-up changes, say) is still committing. Returns the last reply."""
    deadline = time.time() + timeout
    while True:
        r = Client(port).call(*args)
        if "in progress" not in str(r) or time.time() > deadline:
            return r
        time.sleep(0.05)


def check_own_raft_address(node, what, timeout=5):
    """A single node's RAFT.CONFIGURATION records the raft address it runs with (within
    `timeout`: a changed address is recorded by a configuration change)."""
    deadline = time.time() + timeout
    while True:
        conf = Client(node.port).call("RAFT.CONFIGURATION")
        entry = dict(zip(conf[0][0::2], conf[0][1::2]))
        if entry["address"] == "127.0.0.1:%d" % node.rport or time.time() > deadline:
            break
        time.sleep(0.05)
    check(entry["address"] == "127.0.0.1:%d" % node.rport, "%s (%r)" % (what, entry))


class RespError(Exception):
    pass


class Client:
    """A minimal blocking RESP2 client (stdlib only)."""

    def __init__(self, port, host="127.0.0.1", timeout=10, auth=None):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        if auth is not None:
            r = self.call("AUTH", *((auth,) if isinstance(auth, str) else auth))
            if r != "OK":
                raise RespError("AUTH refused: %s" % r)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def send_raw(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by server")
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = self.buf[:i]
                self.buf = self.buf[i + 2:]
                return line
            self._fill()

    def read_reply(self, raise_errors=False):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            e = RespError(rest.decode())
            if raise_errors:
                raise e
            return e
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data = self.buf[:n]
            self.buf = self.buf[n + 2:]
            return data.decode(errors="replace")
        if t == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self.read_reply() for _ in range(n)]
        raise ValueError("bad reply line %r" % line)

    def call(self, *args):
        self.send_raw(self.encode(*args))
        return self.read_reply()

    def tickets(self, n):
        """Sends n TICKETs in one pipeline; returns the n values (ints) in order."""
        self.send_raw(self.encode("TICKET") * n)
        out = []
        for _ in range(n):
            r = self.read_reply()
            if isinstance(r, RespError):
                raise r
            out.append(int(r))
        return out


def run_main(fn):
    """Runs fn(args), turning an exception into a failed test with its message."""
    args = parse_args()
    try:
        fn(args)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - report anything as a test failure
        import traceback
        traceback.print_exc()
        print("FAIL: exception:", e, flush=True)
        sys.exit(1)
    print("PASS", flush=True)


class Cluster:
    """N ticketd processes on loopback formed as the README says: node 1 bootstraps, the
    others --join it. Nodes are stopped only by their own PIDs."""

    def __init__(self, binary, n=3, durability="high", threads=1, extra=None, auth=None,
                 env=None):
        self.binary = binary
        self.extra = extra or []
        self.auth = auth
        self.env = env
        self.dir = tempfile.mkdtemp(prefix="ticketd-cluster-")
        self.nodes = {}
        self.durability = durability
        self.threads = threads
        for i in range(1, n + 1):
            self.add_node(i, start=False)

    def add_node(self, i, start=True, join_id=None):
        join = None
        if i != 1 or join_id is not None:
            j = self.nodes[join_id or 1]
            join = "127.0.0.1:%d" % j.port
        node = Node(self.binary, node_id=i, dir=self.dir, durability=self.durability,
                    threads=self.threads, join=join, extra=list(self.extra), auth=self.auth,
                    env=self.env)
        node.own_dir = False
        self.nodes[i] = node
        if start:
            node.start()
        return node

    def start(self):
        for i in sorted(self.nodes):
            self.nodes[i].start()
        self.wait_voters(len(self.nodes))
        return self

    def alive(self):
        return [n for n in self.nodes.values() if n.proc and n.proc.poll() is None]

    def config(self, via=None, timeout=2):
        for n in ([via] if via else self.alive()):
            try:
                c = n.client(timeout=timeout)
                r = c.call("RAFT.CONFIGURATION")
                c.close()
                if isinstance(r, list):
                    return [dict(zip(e[0::2], e[1::2])) for e in r]
            except OSError:
                pass
        return []

    def wait_voters(self, k, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            leader = self.leader(timeout=5)
            if leader:
                conf = self.config(via=leader)
                if sum(1 for s in conf if s["suffrage"] == "Voter") == k:
                    return conf
            time.sleep(0.1)
        raise RuntimeError("cluster did not reach %d voters: %r" % (k, self.config()))

    def leader(self, timeout=10):
        """The node that answers TICKET itself (asks every live node RAFT.LEADER)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for n in self.alive():
                try:
                    c = n.client(timeout=1)
                    r = c.call("RAFT.LEADER")
                    c.close()
                except OSError:
                    continue
                if isinstance(r, str):
                    for m in self.alive():
                        if "127.0.0.1:%d" % m.port == r:
                            try:
                                c = m.client(timeout=1)
                                st = c.call("RAFT.STATS")
                                c.close()
                            except OSError:
                                continue
                            if isinstance(st, list) and dict(zip(st[0::2], st[1::2])).get("state") == "leader":
                                return m
            time.sleep(0.05)
        return None

    def leader_among(self, nodes, timeout=8):
        """The one of `nodes` whose RAFT.STATS says leader (None after `timeout`)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for n in nodes:
                try:
                    if self.stats(n)["state"] == "leader":
                        return n
                except (OSError, ConnectionError):
                    pass
            time.sleep(0.05)
        return None

    def stats(self, node):
        c = node.client(timeout=3)
        st = c.call("RAFT.STATS")
        c.close()
        return dict(zip(st[0::2], st[1::2]))

    def cleanup(self):
        for n in self.nodes.values():
            n.kill9()
        shutil.rmtree(self.dir, ignore_errors=True)


def key_slot(key):
    """Redis Cluster's hash slot of a key (CRC16-XMODEM of its {hash tag} if any, mod 16384):
    the slot a follower's -MOVED names for a command on sequence `key` (plain TICKET:
    "default")."""
    if isinstance(key, str):
        key = key.encode()
    s = key.find(b"{")
    if s >= 0:
        e = key.find(b"}", s + 1)
        if e > s + 1:
            key = key[s + 1:e]
    crc = 0
    for b in key:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc % 16384
