"""New connections go to the shard with the fewest connections, the lowest index on a tie
(shard 0, where the ticket log lives, so a lone client never pays the cross-thread hop).

Before, the kernel's SO_REUSEPORT hash chose the shard: a single client landed on shard 1
about half the time, and its unpipelined TICKETs were ~20% slower. CLIENT ID carries the
shard in its top 16 bits."""

import time

from harness import Client, Node, check, run_main


def shard_of(c):
    return int(c.call("CLIENT", "ID")) >> 48


def main(args):
    node = Node(args.binary, threads=2).start()
    try:
        for round_ in range(20):
            time.sleep(0.2)  # the previous connection's close has reached the server
            c = Client(node.port)
            check(shard_of(c) == 0, "a lone connection lives on shard 0 (try %d)" % round_)
            int(c.call("TICKET"))
            c.close()
        time.sleep(0.2)
        conns = [Client(node.port) for _ in range(10)]
        shards = [shard_of(c) for c in conns]
        check(sorted(shards) == [0] * 5 + [1] * 5,
              "10 connections split 5/5 over the 2 shards (got %r)" % shards)
        vals = [int(c.call("TICKET")) for c in conns]
        check(len(set(vals)) == 10, "both shards hand out tickets")
        on0 = [c for c, s in zip(conns, shards) if s == 0]
        for c in on0[:2]:
            c.close()  # shard 0: 3 left, shard 1: 5
        time.sleep(0.2)
        extra = [Client(node.port) for _ in range(2)]
        check(all(shard_of(c) == 0 for c in extra),
              "new connections fill the emptier shard first")
        check(node.terminate() == 0, "clean stop")
    finally:
        node.cleanup()


run_main(main)
