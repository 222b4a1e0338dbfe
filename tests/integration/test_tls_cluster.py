"""Mutual TLS between peers (--tls-cluster yes, issue 13), one set of certificates from
tools/make-certs.sh:
- a 3-node cluster whose nodes join over TLS (--join to a member's TLS client port) and talk
  Raft over mutual TLS: tickets over TLS, -MOVED names the leader's TLS address and
  redis-cli -c --tls follows it, a leader killed with -9 is replaced;
- the raft port refuses a plaintext peer, a TLS client without a certificate, one from another
  CA, and a certificate of our CA that names another node than the hello claims;
- a node whose certificate is from another CA cannot be added (RAFT.ADDVOTER fails, the
  leader logs why); through all of it the cluster keeps serving."""

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import peer_wire
from harness import Client, Node, check, free_port, key_slot, run_main, wait_for
from tls_util import TlsClient, context, make_certs, node_flags

QUICK = os.environ.get("TICKETD_TEST_QUICK") == "1"


def stats(node):
    c = node.client(timeout=3)
    st = c.call("RAFT.STATS")
    c.close()
    return dict(zip(st[0::2], st[1::2]))


def leader_of(nodes, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for n in nodes:
            if n.proc.poll() is not None:
                continue
            try:
                if stats(n)["state"] == "leader":
                    return n
            except (OSError, ConnectionError, KeyError):
                pass
        time.sleep(0.05)
    return None


def voters(node):
    conf = node.client().call("RAFT.CONFIGURATION")
    return [dict(zip(e[0::2], e[1::2])) for e in conf if isinstance(e, list)]


def raft_tls(port, certs, cert):
    """A TLS connection to a raft port presenting `cert` (None: none); the socket or the error."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    ctx = context(certs, cert)
    ctx.check_hostname = False
    try:
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        return s, None
    except (ssl.SSLError, OSError) as e:
        raw.close()
        return None, e


def refused_on_read(s):
    """True once the peer ends the TLS stream (or breaks it) without sending a frame."""
    try:
        while True:
            if not s.recv(4096):
                return True
    except (ssl.SSLError, OSError):
        return True


def main(args):
    tmp = tempfile.mkdtemp(prefix="ticketd-tlsc-")
    certs = make_certs(args.build)
    os.mkdir(os.path.join(tmp, "data"))
    nodes = []
    try:
        tls_ports = {i: free_port() for i in (1, 2, 3)}
        for i in (1, 2, 3):
            join = None if i == 1 else "127.0.0.1:%d" % tls_ports[1]
            n = Node(args.binary, node_id=i, dir=os.path.join(tmp, "data"), threads=1, join=join,
                     extra=node_flags(certs, i, tls_port=tls_ports[i], cluster=True))
            n.own_dir = False
            n.tls_port = tls_ports[i]
            n.start()
            nodes.append(n)
        check(wait_for(lambda: sum(1 for s in voters(nodes[0]) if s["suffrage"] == "Voter") == 3, 30),
              "3 nodes joined over TLS and became voters: %r" % voters(nodes[0]))
        conf = voters(nodes[0])
        check(sorted(s["service_address"] for s in conf) ==
              sorted("127.0.0.1:%d" % p for p in tls_ports.values()),
              "the configuration records the TLS client addresses (%r)" % conf)
        leader = leader_of(nodes)
        check(leader is not None, "a leader over mutual TLS (node %s)" % (leader and leader.id))
        tc = TlsClient(leader.tls_port, certs)
        t = tc.tickets(50)
        check(t == list(range(t[0], t[0] + 50)), "50 tickets over TLS from the leader")
        follower = next(n for n in nodes if n is not leader)
        r = TlsClient(follower.tls_port, certs).call("TICKET")
        check(str(r) == "MOVED %d 127.0.0.1:%d" % (key_slot("default"), leader.tls_port),
              "a follower's -MOVED names the leader's TLS address (%s)" % r)
        p = subprocess.run(["redis-cli", "-c", "-h", "127.0.0.1", "-p", str(follower.tls_port), "--tls",
                            "--cacert", os.path.join(certs, "ca.crt"), "--cert",
                            os.path.join(certs, "client.crt"), "--key", os.path.join(certs, "client.key"),
                            "TICKET"], capture_output=True, text=True, timeout=15)
        check(p.returncode == 0 and int(p.stdout) > t[-1],
              "redis-cli -c --tls follows -MOVED to the leader (%s)" % (p.stdout + p.stderr).strip())
        last = int(p.stdout)
        fs = stats(follower)
        check(int(fs["commit_index"]) >= 3, "the followers replicate over TLS (commit %s)" % fs["commit_index"])

        # The raft port: plaintext, no certificate, another CA, a certificate naming node 9
        # with a hello claiming node 1. None may disturb the cluster.
        rport = follower.rport
        got = b""
        s = socket.create_connection(("127.0.0.1", rport), timeout=5)
        s.sendall(peer_wire.hello(0, 1, "127.0.0.1:%d" % nodes[0].rport, target=follower.id))
        try:
            got = s.recv(4096)
            got += s.recv(4096)
        except OSError:
            pass
        s.close()
        check(peer_wire.REFUSE not in got[4:5] and b"TKD" not in got,
              "a plaintext hello on a TLS raft port gets no answer in the peer protocol (%r)" % got[:20])
        s, err = raft_tls(rport, certs, None)
        check(s is None or refused_on_read(s), "a TLS peer without a certificate is refused (%s)" % err)
        s, err = raft_tls(rport, certs, "other-node-1")
        check(s is None or refused_on_read(s), "a peer with another CA's certificate is refused (%s)" % err)
        s, err = raft_tls(rport, certs, "node-9-as-1")
        check(s is not None, "our CA's certificate passes the handshake (%s)" % err)
        s.sendall(peer_wire.hello(0, 1, "127.0.0.1:%d" % nodes[0].rport, target=follower.id))
        f = peer_wire.read_frame(s)
        check(f is not None and f[0] == peer_wire.REFUSE and b"does not name node 1" in f[1],
              "a hello claiming node 1 with node 9's certificate is refused (%r)" % (f,))
        s.close()
        fs2 = stats(follower)
        check(int(fs2["peer_auth_failures"]) >= 2 and int(fs2["peer_hellos_refused"]) >= 1,
              "RAFT.STATS counts the refused peers (%s, %s)" % (fs2["peer_auth_failures"], fs2["peer_hellos_refused"]))
        t = tc.tickets(10)
        check(t[0] > last and t == sorted(t), "the cluster still serves after the rogue peers (%r)" % t[:3])
        last = t[-1]

        # A node with another CA's certificate cannot be added: the leader's TLS check fails.
        rogue_tls = free_port()
        rogue = Node(args.binary, node_id=4, dir=os.path.join(tmp, "data"), threads=1,
                     extra=["--no-bootstrap", "--tls-port", str(rogue_tls), "--tls-cluster", "yes",
                            "--tls-cert-file", os.path.join(certs, "other-node-1.crt"),
                            "--tls-key-file", os.path.join(certs, "other-node-1.key"),
                            "--tls-ca-cert-file", os.path.join(certs, "other-ca.crt")])
        rogue.own_dir = False
        rogue.start()
        nodes.append(rogue)
        lc = leader.client(timeout=20)
        r = lc.call("RAFT.ADDVOTER", "4", "127.0.0.1:%d" % rogue.rport, "127.0.0.1:%d" % rogue_tls)
        check(str(r).startswith("ERR"), "RAFT.ADDVOTER of a node with another CA's certificate fails (%s)" % r)
        check(wait_for(lambda: "certificate verify failed" in leader.log(), 5),
              "the leader logs why (certificate verify failed)")
        check(wait_for(lambda: all(s["id"] != "4" for s in voters(leader)), 10),
              "the rogue node is not in the configuration")
        t = tc.tickets(10)
        check(t[0] > last, "the cluster still serves after the refused node (%r)" % t[:3])
        last = t[-1]
        rogue.kill9()

        if not QUICK:
            # Failover over TLS: kill -9 the leader; the other two elect a new one.
            leader.kill9()
            tc.close()
            rest = [n for n in nodes[:3] if n is not leader]
            nl = leader_of(rest, timeout=20)
            check(nl is not None, "after kill -9 of the leader, node %s leads over TLS" % (nl and nl.id))
            t = TlsClient(nl.tls_port, certs).tickets(10)
            check(t[0] > last, "tickets after the failover are above every earlier one (%d > %d)" % (t[0], last))
    finally:
        for n in nodes:
            n.kill9()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
