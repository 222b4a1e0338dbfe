"""The leader of 3 whose disk fills exactly when its WAL needs the next segment: it must not
spin (before, Wal::finish_spare looped forever on shard 0: no heartbeats, so the followers
elected a new leader while the old one stayed wedged and unkillable by SIGTERM). Now it says
so (log, INFO wal_stalled:1), hands leadership to a follower, stays a quiet follower that
acknowledges nothing, keeps heartbeats flowing (the new leader is never challenged), stops
on SIGTERM, and catches up once space returns.

Node 1's data dir is a small loop-mounted ext4 disk with room for one 16 MiB WAL segment but
not its spare. To be quick, redis-benchmark at --durability low fills most of the segment
while node 1 is still alone; nodes 2 and 3 join, and a client's load crosses the boundary.
Needs root, mkfs.ext4 and redis-benchmark; elsewhere it prints SKIP."""

import os
import shutil
import subprocess
import time

from harness import Client, Cluster, check, run_main
from test_wal_failure import LoopDisk, wait_for
from test_wal_failure_diskfull import (cpu_seconds, info, leave_room_for_one_segment, skip_reason,
                                       stalled)

# An Allocate entry's WAL record is 40 bytes: a 16 MiB segment holds ~419k of them. The
# benchmark stops short of that, with a margin for its speed.
ALONE_UNTIL = 390000


def main(args):
    why = skip_reason()
    if why:
        print("SKIP: " + why)
        return
    cl = Cluster(args.binary, 1, durability="low")
    disk = LoopDisk(os.path.join(cl.dir, "disk1.img"), os.path.join(cl.dir, "1"), 64)
    bench = None
    try:
        disk.create()
        filler = leave_room_for_one_segment(disk.mnt)
        cl.start()
        one = cl.nodes[1]
        bench = subprocess.Popen(["timeout", "150", "redis-benchmark", "-h", "127.0.0.1", "-p",
                                  str(one.port), "-c", "50", "-P", "1", "-n", "20000000",
                                  "-q", "TICKET"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        check(wait_for(lambda: int(info(one)["wal_last_index"]) >= ALONE_UNTIL, 150),
              "node 1 alone fills most of its segment")
        bench.kill()
        bench.wait()
        bench = None
        check(not stalled(one), "not stalled yet (%s log entries)" % info(one)["wal_last_index"])
        cl.add_node(2)
        cl.add_node(3)
        cl.wait_voters(3)
        check(cl.leader() is one, "nodes 2 and 3 joined; node 1 (the small disk) leads")

        def load_until_stalled():
            c = Client(one.port, timeout=5)
            while not stalled(one):
                for _ in range(20):
                    c.tickets(1)
            return True
        try:
            filled = load_until_stalled()
        except Exception as e:  # noqa: BLE001 - the stall refuses the client's tickets
            print("client load ended: %s" % e, flush=True)
            filled = wait_for(lambda: stalled(one), 10)
        print("node 1's log entries: %s" % info(one).get("wal_last_index"), flush=True)
        check(filled, "node 1 reports wal_stalled:1 when its segment is full")
        check("wal: cannot start a new segment" in one.log(), "node 1's log says why")
        # The transfer takes a heartbeat round or two: until then node 1 still leads.
        moved = wait_for(lambda: cl.leader(timeout=1) not in (None, one), 10)
        new = cl.leader(timeout=5)
        check(moved and new is not one, "node 1 handed leadership over (now node %s)"
              % (new.id if new else None))
        check(wait_for(lambda: "handing leadership to node" in one.log(), 5),
              "node 1's log says it handed over")
        c = Client(new.port)
        before = c.tickets(50)
        changes = int(cl.stats(new)["leader_changes_seen"])
        t0 = cpu_seconds(one.proc.pid)
        time.sleep(2.0)
        used = cpu_seconds(one.proc.pid) - t0
        check(used < 0.5, "node 1 does not spin (%.2f CPU s in 2 s)" % used)
        check(Client(one.port).call("PING") == "PONG", "node 1 still answers")
        check(int(cl.stats(new)["leader_changes_seen"]) == changes and cl.leader() is new,
              "no election while node 1 is stalled (it keeps hearing heartbeats)")
        check(stalled(one), "node 1 is still stalled")
        after = c.tickets(50)
        check(after[0] > before[-1], "the other two keep serving")

        check(one.terminate(timeout=20) == 0, "SIGTERM stops stalled node 1 (status 0)")
        os.unlink(filler)
        print("space returned on node 1", flush=True)
        one.start()
        top = c.tickets(10)[-1]
        check(wait_for(lambda: int(cl.stats(one)["last_ticket"]) >= top, 15),
              "node 1 restarts and catches up")
        check(not stalled(one), "node 1 is not stalled any more")
        check(one.terminate() == 0, "node 1 stops cleanly")
    finally:
        if bench:
            bench.kill()
            bench.wait()
        cl.cleanup()
        disk.umount()
        shutil.rmtree(cl.dir, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
