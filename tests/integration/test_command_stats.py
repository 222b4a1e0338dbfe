"""INFO commandstats, errorstats and latencystats in Redis 7's formats, summed over the
node's shards, and CONFIG RESETSTAT, with redis-cli, raw RESP and redis-py.

Checks: TICKETs from connections on both shards are all counted (calls = tickets sent);
latency percentiles are ordered and cover the commit; an unknown command counts only in
errorstats; wrong arity and -MOVED are rejected_calls; a missing sequence is a failed_call;
INFO default has errorstats but not the other two, INFO all / everything have all three in
Redis's order; RESETSTAT zeroes them (only its own CONFIG call remains); redis-py parses
every line; in a cluster a follower counts TICKET's -MOVED as rejected and errorstat_MOVED."""

import re
import subprocess

from harness import Client, Cluster, Node, RespError, check, run_main
from redis_py import import_redis

CMDSTAT = re.compile(r"^cmdstat_([a-z.]+):calls=(\d+),usec=(\d+),usec_per_call=(\d+\.\d\d),"
                     r"rejected_calls=(\d+),failed_calls=(\d+)$")
ERRSTAT = re.compile(r"^errorstat_([A-Z]+):count=(\d+)$")
LATSTAT = re.compile(r"^latency_percentiles_usec_([a-z.]+):p50=(\d+\.\d{3}),p99=(\d+\.\d{3}),"
                     r"p99\.9=(\d+\.\d{3})$")


def info(client, *sections):
    r = client.call("INFO", *sections)
    check(isinstance(r, str), "INFO %s answers a bulk string" % " ".join(sections))
    return r


def section_lines(text, header):
    """The key:value lines of one '# Header' section."""
    out = []
    inside = False
    for line in text.split("\r\n"):
        if line.startswith("# "):
            inside = line == "# " + header
            continue
        if inside and line:
            out.append(line)
    return out


def parse(text, header, regex):
    got = {}
    for line in section_lines(text, header):
        m = regex.match(line)
        check(m is not None, "%s line in Redis 7's format: %r" % (header, line))
        got[m.group(1)] = m.groups()[1:]
    return got


def redis_cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port)] + list(args), capture_output=True,
                          text=True, timeout=20).stdout


def main(args):
    node = Node(args.binary, threads=2).start()
    try:
        port = node.port
        # Four connections: placement spreads them over both shards.
        clients = [Client(port) for _ in range(4)]
        shards = set()
        for c in clients:
            shards.add(c.call("CLIENT", "INFO").split(" shard=")[1].split()[0])
        check(len(shards) == 2, "the connections sit on both shards (%r)" % shards)
        base = node.client()
        base.call("CONFIG", "RESETSTAT")
        sent = 0
        for c in clients:
            for _ in range(5):
                c.tickets(20)
                sent += 20
        clients[0].call("TICKET", "default")  # TICKET name: the same command
        sent += 1
        for _ in range(3):
            clients[1].call("PING")
        r = clients[2].call("NOSUCHCOMMAND", "x")
        check(isinstance(r, RespError), "an unknown command answers an error")
        r = clients[3].call("ECHO")
        check(isinstance(r, RespError) and "wrong number of arguments" in str(r),
              "ECHO without its argument: Redis's arity error")
        r = clients[0].call("TICKET", "nosuch")
        check(isinstance(r, RespError) and "no such sequence" in str(r),
              "TICKET of a missing sequence fails")

        text = info(base, "commandstats")
        cmd = parse(text, "Commandstats", CMDSTAT)
        check(text.startswith("# Commandstats\r\n"), "INFO commandstats is that one section")
        calls, usec, per_call, rejected, failed = cmd["ticket"]
        check(int(calls) == sent + 1, "cmdstat_ticket counts every TICKET on both shards "
              "(%s, sent %d plus the failed one)" % (calls, sent))
        check(int(failed) == 1 and int(rejected) == 0, "the missing sequence is one failed_call")
        check(int(usec) > 0 and abs(float(per_call) - int(usec) / int(calls)) < 0.01 + int(usec) / int(calls) * 0.01,
              "usec_per_call is usec / calls (%s %s %s)" % (usec, calls, per_call))
        check(cmd["ping"][0] == "3" and cmd["ping"][3] == "0", "cmdstat_ping: 3 calls")
        check(cmd["echo"][0] == "0" and cmd["echo"][3] == "1", "wrong arity is a rejected call")
        check("nosuchcommand" not in cmd, "an unknown command has no cmdstat line")
        check(cmd["config"][0] == "1", "CONFIG RESETSTAT itself counts after the reset")

        err = parse(info(base, "errorstats"), "Errorstats", ERRSTAT)
        check(err.get("ERR") == ("3",), "errorstat_ERR: unknown, arity, missing sequence (%r)" % err)

        lat = parse(info(base, "latencystats"), "Latencystats", LATSTAT)
        p50, p99, p999 = (float(v) for v in lat["ticket"])
        check(0 < p50 <= p99 <= p999, "ticket latency percentiles ordered (%s)" % (lat["ticket"],))
        check("echo" not in lat, "no latency line for a command never executed")

        # Section selection as Redis 7.
        default = info(base)
        all_ = info(base, "all")
        every = info(base, "everything")
        heads = lambda t: [line for line in t.split("\r\n") if line.startswith("# ")]  # noqa: E731
        check("# Errorstats" in heads(default) and "# Commandstats" not in heads(default) and
              "# Latencystats" not in heads(default),
              "INFO (default) has errorstats, not commandstats or latencystats")
        for name, t in (("all", all_), ("everything", every)):
            h = heads(t)
            check(all(s in h for s in ("# Commandstats", "# Errorstats", "# Latencystats")),
                  "INFO %s has all three" % name)
            check(h.index("# Replication") < h.index("# Commandstats") < h.index("# Errorstats")
                  < h.index("# Latencystats") < h.index("# Cluster") < h.index("# Keyspace"),
                  "INFO %s keeps Redis 7's section order: %r" % (name, h))
        st = dict(line.split(":", 1) for line in section_lines(all_, "Stats"))
        check(st["total_error_replies"] == "3", "total_error_replies counts every error reply")

        # redis-cli prints the same text.
        out = redis_cli(port, "INFO", "commandstats")
        check(re.search(r"^cmdstat_ticket:calls=\d+,usec=\d+,usec_per_call=[\d.]+,rejected_calls=0,"
                        r"failed_calls=1\r?$", out, re.M) is not None, "redis-cli INFO commandstats")

        # redis-py parses every line of each section into numbers.
        redis = import_redis()
        rp = redis.Redis(host="127.0.0.1", port=port)
        cs = rp.info("commandstats")
        check(cs["cmdstat_ticket"]["calls"] == sent + 1 and cs["cmdstat_ticket"]["failed_calls"] == 1,
              "redis-py info('commandstats'): %r" % cs["cmdstat_ticket"])
        es = rp.info("errorstats")
        # redis-py 4.3 leaves a single key=value as the string (as it does for Redis's own).
        check(es["errorstat_ERR"] in ("count=3", {"count": 3}), "redis-py info('errorstats'): %r" % es)
        ls = rp.info("latencystats")
        t = ls["latency_percentiles_usec_ticket"]
        check(t["p50"] <= t["p99"] <= t["p99.9"], "redis-py info('latencystats'): %r" % t)

        # CONFIG RESETSTAT.
        check(base.call("CONFIG", "RESETSTAT") == "OK", "CONFIG RESETSTAT answers OK")
        text = info(base, "commandstats")
        cmd = parse(text, "Commandstats", CMDSTAT)
        check(set(cmd) == {"config"} and cmd["config"][0] == "1",
              "after RESETSTAT only its own CONFIG call is left (%r)" % cmd)
        check(section_lines(info(base, "errorstats"), "Errorstats") == [], "errorstats reset")
        lat = section_lines(info(base, "latencystats"), "Latencystats")
        check(all(not line.startswith("latency_percentiles_usec_ticket") for line in lat),
              "latencystats reset")
        r = base.call("CONFIG", "RESETSTAT", "x")
        check(isinstance(r, RespError) and "wrong number of arguments" in str(r),
              "CONFIG RESETSTAT x: arity error")
        clients[0].tickets(7)
        cmd = parse(info(base, "commandstats"), "Commandstats", CMDSTAT)
        check(cmd["ticket"][0] == "7", "counting resumes from zero after the reset")
        for c in clients + [base]:
            c.close()
    finally:
        node.cleanup()

    # A follower: TICKET is -MOVED, a rejected call, counted as errorstat_MOVED.
    cl = Cluster(args.binary, n=3).start()
    try:
        leader = cl.leader()
        follower = next(n for n in cl.nodes.values() if n is not leader)
        fc = follower.client()
        fc.call("CONFIG", "RESETSTAT")
        fc.send_raw(Client.encode("TICKET") * 5)
        replies = [fc.read_reply() for _ in range(5)]
        check(all(isinstance(r, RespError) and str(r).startswith("MOVED") for r in replies),
              "a follower answers TICKET with -MOVED")
        cmd = parse(info(fc, "commandstats"), "Commandstats", CMDSTAT)
        check(cmd["ticket"][0] == "0" and cmd["ticket"][3] == "5",
              "a -MOVED TICKET is a rejected call, not a call (%r)" % (cmd["ticket"],))
        err = parse(info(fc, "errorstats"), "Errorstats", ERRSTAT)
        check(err.get("MOVED") == ("5",), "errorstat_MOVED:count=5 (%r)" % err)
        fc.close()
        lc = leader.client()
        lc.tickets(10)
        cmd = parse(info(lc, "all"), "Commandstats", CMDSTAT)
        check(int(cmd["ticket"][0]) >= 10, "the leader counts its TICKETs")
        lc.close()
    finally:
        cl.cleanup()


if __name__ == "__main__":
    run_main(main)
