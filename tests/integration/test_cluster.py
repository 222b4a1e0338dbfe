"""A 3-node cluster formed with the README's commands (node 1 bootstraps, 2 and 3 --join).

Checks: TICKET rises across clients; followers answer -MOVED to the leader's service
address and redis-cli -c follows; RAFT.* commands; kill -9 of the leader under load: a new
leader serves within 1 s and every ticket after the failover is greater than every ticket
acknowledged before it; the old leader restarts and catches up; a follower that was down
while the log was compacted catches up by InstallSnapshot; SIGTERM on the leader hands
leadership over and exits 0."""

import subprocess
import threading
import time

from harness import Client, Cluster, RespError, check, key_slot, leader_loader, run_main


def redis_cli(port, *args):
    r = subprocess.run(["redis-cli", "-p", str(port)] + list(args), capture_output=True,
                       text=True, timeout=20)
    return r.stdout.strip()


def main(args):
    cl = Cluster(args.binary, 3)
    try:
        cl.start()
        conf = cl.config()
        check(len(conf) == 3 and all(s["suffrage"] == "Voter" for s in conf),
              "3 voters in RAFT.CONFIGURATION")
        leader = cl.leader()
        check(leader is not None and leader.id == 1, "node 1 leads the cluster it founded")
        followers = [n for n in cl.nodes.values() if n is not leader]
        vals = [int(redis_cli(leader.port, "TICKET")) for _ in range(3)]
        check(vals == sorted(vals) and len(set(vals)) == 3, "TICKET rises on the leader: %r" % vals)
        r = redis_cli(followers[0].port, "TICKET")
        check(r == "MOVED %d 127.0.0.1:%d" % (key_slot("default"), leader.port), "a follower redirects: %r" % r)
        r = redis_cli(followers[0].port, "-c", "TICKET") if False else subprocess.run(
            ["redis-cli", "-c", "-p", str(followers[0].port), "TICKET"], capture_output=True,
            text=True, timeout=20).stdout.strip().splitlines()[-1]
        check(int(r) > vals[-1], "redis-cli -c follows the redirect: %s" % r)
        check(redis_cli(followers[1].port, "RAFT.LEADER") == "127.0.0.1:%d" % leader.port,
              "RAFT.LEADER gives the leader's service address")
        st = cl.stats(followers[1])
        check(st["state"] == "follower" and st["num_peers"] == "2", "RAFT.STATS on a follower")
        c = Client(followers[1].port)
        check(isinstance(c.call("RAFT.LASTCONTACT"), int), "RAFT.LASTCONTACT")
        r = c.call("RAFT.ADDVOTER", "9", "127.0.0.1:1")
        check(isinstance(r, RespError) and str(r).startswith("MOVED"),
              "membership commands on a follower redirect")
        check("raft_state:follower" in c.call("INFO"), "INFO has a raft section")
        c.close()
        vals = Client(leader.port).tickets(2000)
        check(vals == list(range(vals[0], vals[0] + 2000)), "tickets stay dense in a pipeline")

        # kill -9 of the leader under load.
        seen = []
        stop = threading.Event()
        threads = [threading.Thread(target=leader_loader, args=(cl, seen, stop)) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        kill_time = time.time()
        leader.kill9()
        before = [v for _, v, _ in seen]
        # Wait for the first ticket that was sent after the kill and acknowledged.
        deadline = time.time() + 10
        while time.time() < deadline and not any(t > kill_time for t, _, _ in seen):
            time.sleep(0.005)
        after = sorted((done, v) for t, v, done in seen if t > kill_time)
        check(after, "service resumed after the leader was killed")
        gap = after[0][0] - kill_time
        print("failover: first ticket %.3f s after kill -9" % gap, flush=True)
        check(gap < 1.0, "a new leader serves within 1 s (%.3f s)" % gap)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(10)
        acked_before = max(before)
        first_after = min(v for t, v, _ in seen if t > kill_time)
        allv = [v for _, v, _ in seen]
        check(len(set(allv)) == len(allv), "no ticket was handed out twice (%d)" % len(allv))
        check(first_after > acked_before,
              "every ticket after the failover (%d) > every one before (%d)"
              % (first_after, acked_before))
        new_leader = cl.leader()
        check(new_leader is not None and new_leader is not leader, "a new leader was elected")

        # The old leader restarts and catches up.
        leader.start()
        top = int(Client(new_leader.port).call("TICKET"))
        deadline = time.time() + 10
        caught = False
        while time.time() < deadline:
            st = cl.stats(leader)
            if int(st["last_ticket"]) >= top and st["state"] == "follower":
                caught = True
                break
            time.sleep(0.1)
        check(caught, "the old leader restarted as a follower and caught up")

        # A follower down while the log is compacted catches up by InstallSnapshot.
        lagger = [n for n in cl.alive() if n is not new_leader][0]
        lagger.kill9()
        c = Client(new_leader.port)
        for _ in range(20):
            c.tickets(50)
        check(c.call("RAFT.SNAPSHOT") == "OK", "RAFT.SNAPSHOT")
        for _ in range(5):
            c.tickets(50)
        top = int(c.call("TICKET"))
        snap_idx = int(cl.stats(new_leader)["last_snapshot_index"])
        check(snap_idx > 0, "the leader compacted its log (snapshot at %d)" % snap_idx)
        lagger.start()
        deadline = time.time() + 10
        caught = False
        while time.time() < deadline:
            st = cl.stats(lagger)
            if int(st["last_ticket"]) >= top:
                caught = True
                break
            time.sleep(0.1)
        check(caught and "installed snapshot" in lagger.log(),
              "the lagging follower caught up through InstallSnapshot")

        # SIGTERM on the leader: it hands over and exits 0; service goes on.
        rc = new_leader.terminate()
        check(rc == 0, "SIGTERM on the leader exits 0")
        nl = cl.leader()
        check(nl is not None and nl is not new_leader, "leadership moved on SIGTERM")
        r = Client(nl.port).call("TICKET")
        check(not isinstance(r, Exception) and int(r) > top,
              "service goes on after the leader's SIGTERM (%r)" % r)
    finally:
        cl.cleanup()


run_main(main)
