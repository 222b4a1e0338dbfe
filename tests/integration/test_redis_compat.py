"""What Redis clients and tools expect beyond the basic commands.

- `COMMAND HELP`, `CONFIG HELP`, `CLIENT HELP`: an array of lines, as Redis answers (their
  unknown-subcommand error suggests them).
- `INFO` with several sections (Redis 7), and `all`, `everything`, `default`.
- `redis-cli --stat` reads used_memory, blocked_clients and friends: real values, no
  LONG_MIN placeholders in its columns.
- `HELLO` says `role master` on the leader and `role replica` on a follower."""

import subprocess
import time

from harness import Client, Cluster, Node, RespError, check, run_main


def sections(info):
    return [l[2:] for l in info.split("\r\n") if l.startswith("# ")]


def hello_role(port):
    r = Client(port).call("HELLO", "2")
    return dict(zip(r[0::2], r[1::2])).get("role")


def main(args):
    node = Node(args.binary, threads=2).start()
    try:
        c = Client(node.port)
        for cmd, sub in (("COMMAND", "COUNT"), ("CONFIG", "GET <pattern>"),
                         ("CLIENT", "SETNAME <name>")):
            r = c.call(cmd, "HELP")
            check(isinstance(r, list) and len(r) > 3 and
                  r[0].startswith("%s <subcommand>" % cmd) and sub in r and r[-2] == "HELP",
                  "%s HELP answers its lines (%r)" % (cmd, r[:2] if isinstance(r, list) else r))
            r = c.call(cmd.lower(), "help")
            check(isinstance(r, list), "%s help in lower case" % cmd)
            r = c.call(cmd, "HELP", "x")
            check(str(r) == "ERR wrong number of arguments for '%s|help' command" % cmd.lower(),
                  "%s HELP x is an arity error: %s" % (cmd, r))
            r = c.call(cmd, "NOPE")
            check(isinstance(r, RespError) and "Try %s HELP." % cmd in str(r),
                  "%s NOPE still suggests HELP" % cmd)

        r = c.call("INFO", "server", "clients")
        check(sections(r) == ["Server", "Clients"], "INFO server clients: %r" % sections(r))
        r = c.call("INFO", "stats", "server", "nosuch")
        check(sections(r) == ["Server", "Stats"], "INFO in Redis's section order: %r" % sections(r))
        r = c.call("INFO", "raft", "clients")
        check(sections(r) == ["Clients", "Raft"], "INFO raft clients: %r" % sections(r))
        full = sections(c.call("INFO"))
        check("Raft" in full and "Memory" in full and "Errorstats" in full,
              "INFO default has every section but commandstats and latencystats: %r" % full)
        check(sections(c.call("INFO", "default")) == full, "INFO default")
        # As Redis 7: all and everything add commandstats and latencystats around errorstats.
        i = full.index("Errorstats")
        every = full[:i] + ["Commandstats", "Errorstats", "Latencystats"] + full[i + 1:]
        for w in ("all", "everything"):
            check(sections(c.call("INFO", w)) == every, "INFO %s" % w)
        check(sections(c.call("INFO", "nosuch")) == [], "an unknown section adds nothing")
        fields = dict(l.split(":", 1) for l in c.call("INFO").split("\r\n") if ":" in l)
        rss = int(fields["used_memory"])
        check(rss > 1024 * 1024 and fields["blocked_clients"] == "0" and fields["loading"] == "0",
              "INFO has used_memory (%d), blocked_clients, loading" % rss)

        # redis-cli --stat prints a line per interval from INFO; stdbuf keeps its lines.
        p = subprocess.Popen(["stdbuf", "-oL", "redis-cli", "-p", str(node.port), "--stat",
                              "-i", "0.2"], stdout=subprocess.PIPE, text=True)
        time.sleep(1.2)
        p.terminate()
        out = p.communicate(timeout=10)[0]
        rows = [l.split() for l in out.splitlines() if l[:1].isdigit()]
        check(len(rows) >= 2, "redis-cli --stat printed rows: %r" % out[-300:])
        check("-9223372036854775808" not in out and all(r[1] != "0B" and r[3] == "0" for r in rows),
              "redis-cli --stat shows real mem and blocked columns: %r" % rows[:2])
        check(hello_role(node.port) == "master", "HELLO on a single node: role master")
    finally:
        node.cleanup()

    cl = Cluster(args.binary, 3)
    try:
        cl.start()
        leader = cl.leader()
        check(leader is not None, "a leader")
        check(hello_role(leader.port) == "master", "HELLO on the leader: role master")
        for n in cl.alive():
            if n is not leader:
                check(hello_role(n.port) == "replica", "HELLO on follower %d: role replica" % n.id)
    finally:
        cl.cleanup()


run_main(main)
