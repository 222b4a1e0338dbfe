"""Authenticated peers: a cluster whose members hold a cluster secret (--cluster-secret-file).

Rogue peers at the leader's and a follower's raft ports while ticket-bench takes tickets: a
hello without the secret (refused with the reason), a wrong secret (its proof fails and the
connection closes), a recorded valid handshake replayed (a fresh challenge it cannot answer),
and a valid handshake followed by garbage (that one link closes). No raft message of theirs
reaches Raft, the cluster keeps its leader and keeps serving at speed, the failures are
logged with their address and counted in RAFT.STATS. Nodes with a wrong or no secret cannot
--join."""

import os
import socket
import subprocess
import threading
import time

from harness import Client, Cluster, check, free_port, run_main, wait_for
from peer_wire import (CHALLENGE, REFUSE, cluster_key, hello, parse_challenge, proof, proof_frame,
                       read_frame)

SECRET = "an example cluster secret, 32b+"


def write_secret(dir, name, secret):
    path = os.path.join(dir, name)
    with open(path, "w") as f:
        f.write(secret + "\n")
    os.chmod(path, 0o600)
    return path


def connect(node):
    s = socket.create_connection(("127.0.0.1", node.rport), timeout=3)
    s.settimeout(3)
    return s


def closed(s):
    try:
        while True:
            if not s.recv(4096):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def open_handshake(node, cluster_id, as_id, raft):
    """Sends a version 3 hello to node; (socket, hello, (listener id, nonce, proof) or None)."""
    s = connect(node)
    h = hello(cluster_id, as_id, raft, node.id, nonce=os.urandom(32))
    s.sendall(h)
    f = read_frame(s)
    return s, h, parse_challenge(f[1]) if f is not None and f[0] == CHALLENGE else None


def attack(node, cluster_id, key, wrong_key, as_id, results, with_key):
    """One round of the rogue kinds at `node`; appends (kind, ok) to results. `with_key`: also
    the two that need the key (a valid handshake, then garbage; its replay)."""
    raft = "127.0.0.1:%d" % free_port()
    # No secret: a version 2 hello is refused with the reason.
    s = connect(node)
    s.sendall(hello(cluster_id, as_id, raft, node.id))
    f = read_frame(s)
    results.append(("no secret", f is not None and f[0] == REFUSE and
                    b"requires the cluster secret" in f[1]))
    s.close()
    # A wrong secret: the proof fails; the node closes without a word.
    s, h, ch = open_handshake(node, cluster_id, as_id, raft)
    ok = ch is not None
    if ok:
        lid, lnonce, lproof = ch
        # Its own check of the listener fails too (the keys differ) ...
        ok = lid == node.id and lproof != proof(wrong_key, True, h, lid, lnonce)
        s.sendall(proof_frame(proof(wrong_key, False, h, lid, lnonce)))
        ok = ok and closed(s)
    results.append(("wrong secret", ok))
    s.close()
    if not with_key:
        return
    # A valid handshake (the test holds the key) followed by garbage: that link closes.
    lnonce, p = b"", b""
    s, h, ch = open_handshake(node, cluster_id, as_id, raft)
    ok = ch is not None
    if ok:
        lid, lnonce, lproof = ch
        ok = lproof == proof(key, True, h, lid, lnonce)  # the node proved the secret to us
        p = proof(key, False, h, lid, lnonce)
        s.sendall(proof_frame(p) + b"\xff\xff\xff\x7f garbage after a valid hello")
        ok = ok and closed(s)
    results.append(("valid hello, then garbage", ok))
    s.close()
    # Replay: the recorded hello and proof of that valid handshake, on a new connection.
    s = connect(node)
    s.sendall(h)
    f = read_frame(s)
    ok = f is not None and f[0] == CHALLENGE and parse_challenge(f[1])[1] != lnonce
    s.sendall(proof_frame(p))
    results.append(("replayed handshake", ok and closed(s)))
    s.close()


def bench(build, port, seconds):
    out = subprocess.run([os.path.join(build, "ticket-bench"), "-p", str(port), "-c", "8",
                          "-P", "4", "-d", str(seconds), "-q"], capture_output=True, text=True,
                         timeout=seconds + 30)
    line = [l for l in out.stdout.splitlines() if l.startswith("requests:")]
    errors = [l for l in out.stdout.splitlines() if l.startswith("errors:")]
    rps = float(line[0].split("= ")[1].split()[0]) if line else 0.0
    return out.returncode, rps, errors[0] if errors else out.stdout[-200:]


def main(args):
    cl = Cluster(args.binary, 3, threads=1)
    secret = write_secret(cl.dir, "secret", SECRET)
    cl.extra = ["--cluster-secret-file", secret]
    for n in cl.nodes.values():
        n.extra = list(cl.extra)
    try:
        cl.start()
        leader = cl.leader()
        follower = [n for n in cl.alive() if n is not leader][0]
        check(wait_for(lambda: all("peers must prove the cluster secret" in n.log() for n in cl.alive()), 5),
              "every node says its peers must prove the secret")
        info = Client(leader.port).call("INFO", "raft")
        cid = int([l for l in info.split("\r\n") if l.startswith("raft_cluster_id:")][0]
                  .split(":")[1], 16)
        key, wrong = cluster_key(SECRET), cluster_key("not the cluster secret at all")

        rc, base, _ = bench(args.build, leader.port, 2)
        check(rc == 0 and base > 0, "ticket-bench before the attack: %.0f req/s" % base)
        results = []
        stop = time.time() + 2.5

        def attacker():
            rounds = 0
            while time.time() < stop:
                rounds += 1
                for target in (leader, follower):
                    # A stranger's id: a member's would, once its (valid) proof passed, stand
                    # in for that member's real link, which is the test's key, not a rogue's.
                    attack(target, cid, key, wrong, 77 if target is leader else 78, results,
                           rounds <= 5)
                time.sleep(0.05)  # ~20 rounds a second: an attack, not a CPU race on 2 cores

        t = threading.Thread(target=attacker)
        t.start()
        rc, under, errors = bench(args.build, leader.port, 2)
        t.join()
        kinds = sorted(set(k for k, _ in results))
        check(len(kinds) == 4 and all(ok for _, ok in results),
              "every rogue kind was turned away (%d attempts: %s)" % (len(results), ", ".join(kinds)))
        check(rc == 0 and "0 error replies" in errors, "ticket-bench under attack: no errors")
        check(under >= 0.5 * base, "... and at speed: %.0f req/s under attack vs %.0f before" %
              (under, base))
        check(cl.leader() is leader, "the leader kept its leadership")
        for n in (leader, follower):
            st = cl.stats(n)
            check(int(st["peer_auth_failures"]) >= 2 and st["peer_auth"] == "secret",
                  "node %d counts the failed handshakes (%s)" % (n.id, st["peer_auth_failures"]))
            with open(n.log_path, errors="replace") as f:
                log = f.read()
            check("failed the cluster-secret proof" in log and "at 127.0.0.1:" in log,
                  "node %d logs the failures with their address" % n.id)
            check(log.count("failed the cluster-secret proof") <= 6,
                  "... rate-limited (%d lines)" % log.count("failed the cluster-secret proof"))

        # A node with the wrong secret, and one with none, cannot --join.
        for i, extra in ((4, ["--cluster-secret-file", write_secret(cl.dir, "wrong", "a wrong secret, long enough")]),
                         (5, [])):
            n = cl.add_node(i, start=False)
            n.extra = extra
            n.start()
            check(wait_for(lambda: "RAFT.JOIN needs proof of the cluster secret" in n.log(), 8),
                  "node %d (%s) cannot --join" % (i, "wrong secret" if extra else "no secret"))
            n.kill9()
        check(len(cl.config(via=leader)) == 3, "the configuration still has 3 members")
        check(int(Client(leader.port).call("TICKET")) > 0, "the cluster serves")
        for n in cl.alive():
            check(SECRET not in n.log(), "node %d never logs the secret" % n.id)
    finally:
        cl.cleanup()


if __name__ == "__main__":
    run_main(main)
