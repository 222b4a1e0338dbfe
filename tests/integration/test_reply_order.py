"""Replies match requests one for one, in order, for every mix of commands.

Random pipelines (seeded) of every command a client may send (TICKET, PING, ECHO, INFO, the
read-only and harmless RAFT.* commands, COMMAND, CLIENT, SELECT, unknown commands, wrong
arity) go to a single node and to the leader and a follower of a 3-node cluster, on two
connections at once (so both shards of each node answer). Each reply is checked against
what that command answers: tickets strictly increasing, RAFT.SNAPSHOT +OK, RAFT.LEADER the
leader's address, and so on. Admin commands (RAFT.*, INFO with the raft section) run on
shard 0 and finish in any order: their replies must still land in their own slot."""

import random

from harness import Client, Cluster, Node, RespError, check, key_slot, run_main

SEED = 20240611


class Ctx:
    """What a node should answer: its role, the leader's address, the cluster's size."""

    def __init__(self, role, leader_addr, leader_id, servers):
        self.role = role
        self.leader_addr = leader_addr
        self.leader_id = leader_id
        self.servers = servers
        self.last_ticket = 0
        self.client_id = {}


def is_err(r, prefix):
    return isinstance(r, RespError) and str(r).startswith(prefix)


def moved(ctx):
    return "MOVED %d %s" % (key_slot("default"), ctx.leader_addr)


def make_command(rnd, ctx, conn_no):
    """One random command and a checker for its reply (returns True when it fits)."""
    leader = ctx.role == "leader"
    k = rnd.randrange(26)
    if k < 6:
        def chk(r):
            if not leader:
                return is_err(r, moved(ctx))
            if isinstance(r, RespError) or int(r) <= ctx.last_ticket:
                return False
            ctx.last_ticket = int(r)
            return True
        return ("TICKET",), chk
    if k == 6:
        return ("PING",), lambda r: r == "PONG"
    if k == 7:
        msg = "p%d" % rnd.randrange(10**6)
        return ("PING", msg), lambda r: r == msg
    if k == 8:
        msg = "e" * rnd.randrange(0, 3000)
        return ("ECHO", msg), lambda r: r == msg
    if k == 9:
        return ("ECHO",), lambda r: str(r) == "ERR wrong number of arguments for 'echo' command"
    if k == 10:
        return ("INFO",), lambda r: isinstance(r, str) and "# Server" in r and "# Raft" in r
    if k == 11:
        return (("INFO", "server"),
                lambda r: isinstance(r, str) and "redis_version:" in r and "# Raft" not in r)
    if k == 12:
        return (("INFO", "raft"),
                lambda r: isinstance(r, str) and ("raft_state:%s" % ctx.role) in r)
    if k == 13:
        return ("RAFT.LEADER",), lambda r: r == ctx.leader_addr
    if k == 14:
        return (("RAFT.LEADER", "x"),
                lambda r: str(r) == "ERR wrong number of arguments for 'raft.leader' command")
    if k == 15:
        return ("RAFT.SNAPSHOT",), lambda r: r == "OK"
    if k == 16:
        return (("RAFT.CONFIGURATION",),
                lambda r: isinstance(r, list) and len(r) == ctx.servers and
                all(isinstance(e, list) and e[0] == "id" for e in r))
    if k == 17:
        return (("RAFT.STATS",),
                lambda r: isinstance(r, list) and dict(zip(r[0::2], r[1::2])).get("state") == ctx.role)
    if k == 18:
        return ("RAFT.LASTCONTACT",), lambda r: isinstance(r, int) and (r == 0 or not leader)
    if k == 19:
        def chk(r):
            return isinstance(r, int) and ctx.client_id.setdefault(conn_no, r) == r
        return ("CLIENT", "ID"), chk
    if k == 20:
        n = rnd.randrange(3)
        if n == 0:
            return ("COMMAND", "COUNT"), lambda r: isinstance(r, int) and r >= 10
        if n == 1:
            return (("COMMAND", "INFO", "ticket"),
                    lambda r: isinstance(r, list) and len(r) == 1 and r[0][0] == "ticket")
        return ("COMMAND", "LIST"), lambda r: isinstance(r, list) and "ticket" in r
    if k == 21:
        name = "NOPE%d" % rnd.randrange(1000)
        return (name, "a"), lambda r: str(r) == "ERR unknown command '%s', with args beginning with: 'a' " % name
    if k == 22:
        if rnd.randrange(2):
            return ("SELECT", "0"), lambda r: r == "OK"
        return ("SELECT", "1"), lambda r: str(r) == "ERR DB index is out of range"
    if k == 23:
        # An existing member at another address: an error at once on the leader (its address
        # changes only when it restarts with a new --raddr); a follower redirects.
        return (("RAFT.ADDVOTER", str(ctx.leader_id), "127.0.0.1:1"),
                lambda r: is_err(r, "ERR node %d is already a member at " % ctx.leader_id) if leader
                else is_err(r, moved(ctx)))
    if k == 24:
        return (("RAFT.REMOVESERVER", "999"),
                lambda r: is_err(r, "ERR node 999 is not in the configuration") if leader
                else is_err(r, moved(ctx)))
    # Transferring to itself is a no-op on the leader.
    return (("RAFT.TRANSFERLEADER", str(ctx.leader_id)),
            lambda r: r == "OK" if leader else is_err(r, moved(ctx)))


def run_mixes(port, ctx, rnd, rounds, label):
    conns = [Client(port), Client(port)]  # placement puts the second on the other shard
    total = 0
    for i in range(rounds):
        ci = i % 2
        c = conns[ci]
        cmds = [make_command(rnd, ctx, ci) for _ in range(rnd.randrange(1, 40))]
        c.send_raw(b"".join(Client.encode(*a) for a, _ in cmds))
        for j, (a, chk) in enumerate(cmds):
            r = c.read_reply()
            if not chk(r):
                before = [x[0] for x, _ in cmds[max(0, j - 3):j + 2]]
                check(False, "%s round %d slot %d: %r answered %r (around %r)" %
                      (label, i, j, a[:3], str(r)[:120], before))
        total += len(cmds)
    for c in conns:
        c.close()
    check(True, "%s: %d pipelined commands in %d mixes, each answered in its slot" %
          (label, total, rounds))


def main(args):
    rnd = random.Random(SEED)
    node = Node(args.binary, threads=2).start()
    try:
        ctx = Ctx("leader", "127.0.0.1:%d" % node.port, 1, 1)
        run_mixes(node.port, ctx, rnd, 60, "single node")
        # Two real membership changes and a RAFT.LEADER: each ADDVOTER commits, then waits for
        # its node to answer (nothing listens there: an error after the contact timeout), or is
        # refused at once while the first change is pending; RAFT.LEADER, answered at once,
        # still waits in its own slot behind them.
        c = Client(node.port)
        c.send_raw(Client.encode("TICKET") + Client.encode("RAFT.ADDVOTER", "7", "127.0.0.1:1") +
                   Client.encode("RAFT.ADDVOTER", "8", "127.0.0.1:2") +
                   Client.encode("RAFT.LEADER") + Client.encode("TICKET"))
        r = [c.read_reply() for _ in range(5)]
        check(int(r[0]) > ctx.last_ticket and is_err(r[1], "ERR node 7 at 127.0.0.1:1 did not answer") and
              (is_err(r[2], "ERR node 8 at 127.0.0.1:2 did not answer") or
               is_err(r[2], "ERR a configuration change is in progress")) and
              r[3] == ctx.leader_addr and int(r[4]) > int(r[0]),
              "two ADDVOTERs and a RAFT.LEADER answer in their slots: %r" % [str(x) for x in r])
    finally:
        node.cleanup()

    cl = Cluster(args.binary, 3, threads=2)
    try:
        cl.start()
        leader = cl.leader()
        check(leader is not None, "a leader")
        follower = next(n for n in cl.alive() if n is not leader)
        addr = "127.0.0.1:%d" % leader.port
        run_mixes(leader.port, Ctx("leader", addr, leader.id, 3), rnd, 40, "cluster leader")
        run_mixes(follower.port, Ctx("follower", addr, leader.id, 3), rnd, 40, "cluster follower")
    finally:
        cl.cleanup()


run_main(main)
