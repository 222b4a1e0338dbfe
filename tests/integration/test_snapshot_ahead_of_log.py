"""A node whose snapshot is ahead of its log must start and serve.

That state is what a crash leaves between saving a snapshot installed from the leader and
resetting the log behind it (found by tools/chaos: the node aborted on every restart with
"wal indexes must be consecutive"). Reproduced deterministically here: an older WAL is put
back under a newer snapshot."""

import os
import shutil

from harness import Client, Node, check, run_main


def main(args):
    node = Node(args.binary, threads=1).start()
    try:
        c = Client(node.port)
        c.tickets(50)
        check(node.terminate() == 0, "first stop")
        wal = os.path.join(node.dir, "1", "wal")
        old_wal = os.path.join(node.dir, "wal-old")
        shutil.copytree(wal, old_wal)
        node.start()
        c = Client(node.port)
        for _ in range(20):
            top = c.tickets(10)[-1]  # more entries than the saved WAL has
        # The snapshot covers everything handed out (nothing is handed out after it, so
        # putting the older WAL back loses nothing acknowledged).
        check(c.call("RAFT.SNAPSHOT") == "OK", "snapshot taken past the saved WAL's end")
        check(node.terminate() == 0, "second stop")
        shutil.rmtree(wal)
        shutil.copytree(old_wal, wal)
        node.start()
        v = int(Client(node.port).call("TICKET"))
        check(node.proc.poll() is None, "the node runs with a snapshot ahead of its log")
        check(v > top, "and resumes above everything handed out (%d > %d)" % (v, top))
        check("does not continue the snapshot" in node.log(), "it says it discarded the stale log")
    finally:
        node.cleanup()


run_main(main)
