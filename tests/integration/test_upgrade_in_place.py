"""A data directory written by the build before the ticket state machine existed (one
counter: 8-byte Allocate entries, an 8-byte snapshot counter) opens with this build, its
counter intact as the `default` sequence (issue 11, item 4).

data/single-node-before-sequences.tgz was written by commit 954911b: a single node at
127.0.0.1:24711/24712 that handed out tickets 1..5, took RAFT.SNAPSHOT, handed out 6..1006
and was killed with kill -9. This test starts it on other ports (the node records its new
addresses itself) and checks that the next ticket is 1007, also after a new snapshot and a
restart."""

import os
import tarfile
import tempfile

from harness import Client, Node, check, check_own_raft_address, run_main

HERE = os.path.dirname(os.path.abspath(__file__))


def main(args):
    d = tempfile.mkdtemp(prefix="ticketd-upgrade-")
    with tarfile.open(os.path.join(HERE, "data", "single-node-before-sequences.tgz")) as t:
        t.extractall(d)
    n = Node(args.binary, node_id=1, dir=d)
    n.own_dir = True
    try:
        n.start()
        # A TICKET is answered once the node leads and has applied its whole log (the old
        # entries after the snapshot included); RAFT.STATS could be asked before that.
        v = int(Client(n.port).call("TICKET"))
        check(v == 1007, "the next ticket follows the old ones (%d)" % v)
        st = Client(n.port).call("RAFT.STATS")
        st = dict(zip(st[0::2], st[1::2]))
        check(st["last_ticket"] == "1007", "the old counter is intact: %r" % st["last_ticket"])
        check(Client(n.port).call("RAFT.SNAPSHOT") == "OK", "a snapshot in the new format")
        more = Client(n.port).tickets(10)
        check(n.terminate() == 0, "clean stop")
        n.start()
        v2 = int(Client(n.port).call("TICKET"))
        check(v2 == more[-1] + 1, "after a restart from the new snapshot: %d" % v2)
        check_own_raft_address(n, "its new raft address was recorded")
    finally:
        n.cleanup()


run_main(main)
