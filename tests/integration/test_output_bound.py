"""The 64 MiB reply bound counts replies queued behind a TICKET that waits for its commit.

A 3-node cluster's followers are SIGSTOPped, so the leader's TICKET cannot commit (it waits
up to 5 s). A client that never reads sends that TICKET and then floods the leader with
large ECHOs (another client: with TICKETs); the replies queue behind the pending TICKET.
The leader must drop each flooding connection once its queued replies pass the bound:
its RSS (/proc/PID/status VmRSS) stays bounded and the connection is closed, while another
client on the same node is answered throughout.

A third client sends a few million TICKETs, fewer than the bound holds while they wait, and
then nothing: when the leader loses its leadership they resolve into CLUSTERDOWN errors
that are many times longer than the tickets they were charged as. The leader must drop that
client instead of writing every error out (it grew by ~300 MiB doing so)."""

import os
import select
import signal
import socket
import threading
import time

from harness import Client, Cluster, check, run_main

MIB = 1024 * 1024
ECHO_ARG = b"e" * (MIB - 64)
ECHO_CMD = b"*2\r\n$4\r\nECHO\r\n$%d\r\n%s\r\n" % (len(ECHO_ARG), ECHO_ARG)


def flood(port, first, chunk, total_bytes, out, hold=1.0):
    """Sends `first`, then `chunk` repeatedly up to total_bytes, reading nothing; then waits
    up to `hold` seconds for the server to close the connection."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    sent = 0
    try:
        s.sendall(first)
        while sent < total_bytes:
            s.sendall(chunk)
            sent += len(chunk)
        out["closed"] = False
    except OSError as e:  # reset or broken pipe: the server dropped us
        out["closed"] = True
        out["error"] = repr(e)
    out["sent"] = sent
    if not out["closed"]:
        # Sent everything without being dropped: the server is still holding the replies.
        s.settimeout(hold)
        try:
            # Reading now would drain replies: peek for the close (or a reset) only.
            deadline = time.time() + hold
            out["closed"] = False
            while time.time() < deadline:
                r, _, _ = select.select([s], [], [], max(0.0, deadline - time.time()))
                if not r:
                    break
                if s.recv(1, socket.MSG_PEEK) == b"":
                    out["closed"] = True
                    break
                # Replies arrived (the server writes them out): drain a little, watch on.
                s.recv(65536)
        except socket.timeout:
            out["closed"] = False
        except OSError:
            out["closed"] = True
    s.close()


def run_flood(cl, leader, label, chunk, total_bytes, hold=1.0):
    others = [n for n in cl.alive() if n is not leader]
    other_client = Client(leader.port, timeout=5)
    check(other_client.call("PING") == "PONG", "%s: a second client is answered" % label)
    base = leader.rss_kb()
    for n in others:
        os.kill(n.proc.pid, signal.SIGSTOP)
    peak = [base]
    pings = []
    out = {}
    try:
        t = threading.Thread(target=flood, args=(leader.port, Client.encode("TICKET"), chunk,
                                                 total_bytes, out, hold))
        t.start()
        while t.is_alive():
            peak[0] = max(peak[0], leader.rss_kb())
            try:
                pings.append(other_client.call("PING"))
            except (OSError, ConnectionError):
                pings.append(None)
            time.sleep(0.02)
        t.join()
    finally:
        for n in others:
            os.kill(n.proc.pid, signal.SIGCONT)
    grown = (peak[0] - base) // 1024
    print("%s: sent %d MiB, RSS %d MiB -> peak %d MiB (+%d MiB), %s" %
          (label, out.get("sent", 0) // MIB, base // 1024, peak[0] // 1024, grown,
           out.get("error", "")), flush=True)
    check(leader.proc.poll() is None, "%s: the leader is alive" % label)
    check(out.get("closed"), "%s: the flooding connection was closed" % label)
    # The bound is 64 MiB of queued replies; input buffers and the allocator add some. Under
    # the sanitizers (TICKETD_TEST_QUICK, make test-asan) freed memory sits in ASan's
    # quarantine (256 MiB by default) and counts in RSS, so only a looser bound holds there;
    # before the fix the flood grew RSS by more than 500 MiB.
    limit = 400 if os.environ.get("TICKETD_TEST_QUICK") else 140
    check(grown < limit, "%s: the leader's RSS grew by %d MiB only" % (label, grown))
    check(all(p == "PONG" for p in pings), "%s: the other client was answered throughout (%d pings)"
          % (label, len(pings)))
    other_client.close()


def main(args):
    cl = Cluster(args.binary, 3, threads=2)
    try:
        cl.start()
        leader = cl.leader()
        check(leader is not None, "a leader")
        run_flood(cl, leader, "millions of TICKETs", b"TICKET\r\n" * 65536, 128 * MIB)
        leader = cl.leader(timeout=20)
        check(leader is not None, "a leader again after the followers resumed")
        run_flood(cl, leader, "large ECHOs", ECHO_CMD * 4, 256 * MIB)
        leader = cl.leader(timeout=20)
        check(leader is not None, "a leader again after the followers resumed")
        # A committed ticket on every shard first: until then a shard charges a waiting
        # ticket at the largest reply (23 bytes), and 4 Mi of them would pass the bound.
        for _ in range(8):
            warm = Client(leader.port)
            check(int(warm.call("TICKET")) > 0, "a ticket before the third flood")
            warm.close()
        # 4 Mi TICKETs: charged a few bytes each while they wait (well under the bound), each
        # becomes a 78-byte CLUSTERDOWN error when the stopped followers cost the leader its
        # leadership (check-quorum within an election timeout, the 5 s expiry at the latest).
        run_flood(cl, leader, "TICKETs refused after the leadership is lost",
                  b"TICKET\r\n" * 65536, 32 * MIB - 8, hold=12.0)
        leader = cl.leader(timeout=20)
        check(leader is not None and int(Client(leader.port).call("TICKET")) > 0,
              "the cluster serves on")
    finally:
        cl.cleanup()  # run_flood resumed the followers; SIGKILL ends a stopped one anyway


run_main(main)
