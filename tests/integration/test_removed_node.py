"""A node removed from the cluster while it keeps running learns that it was removed and
says so in its log (issue 10: it stayed a pre-candidate forever, saying nothing), and its
pre-votes do not disturb the cluster."""

import time

from harness import Client, Cluster, check, membership_call, run_main


def main(args):
    cl = Cluster(args.binary, 3)
    try:
        cl.start()
        leader = cl.leader()
        gone = [n for n in cl.alive() if n is not leader][0]
        # Right after the start the last promotion may still be committing.
        r = membership_call(leader.port, "RAFT.REMOVESERVER", str(gone.id))
        check(r == "OK", "RAFT.REMOVESERVER %d -> %r" % (gone.id, r))
        deadline = time.time() + 10
        while time.time() < deadline and "removed" not in gone.log():
            time.sleep(0.1)
        check("it was removed" in gone.log() or "was removed from the cluster" in gone.log(),
              "the removed node says it was removed:\n" + gone.log())
        check(gone.proc.poll() is None, "and keeps running without a crash")
        t0 = int(cl.stats(leader)["term"])
        time.sleep(1.5)  # several of its election timeouts
        check(cl.leader(timeout=2) is leader and int(cl.stats(leader)["term"]) == t0,
              "its pre-votes moved no term and no leadership")
        v = Client(leader.port).tickets(10)
        check(len(v) == 10, "the two remaining nodes serve")
    finally:
        cl.cleanup()


run_main(main)
