"""Named sequences and blocks on one node, with real clients (redis-cli, redis-py).

Checks: every TICKET.* command (TICKET.LAST included) and its Redis-style error texts (a typo creates nothing); the
limits (name length, --max-sequences, block size); INFO keyspace and redis-cli --stat count
the sequences; COMMAND INFO names the key; plain TICKET's reply bytes are unchanged; a
redis-py pipeline mixing plain TICKETs, named TICKETs, blocks and an unknown sequence, from
several connections at once (every reply checked: unique and increasing per sequence, blocks
contiguous and disjoint from everything else); kill -9 under load and restart, with a
snapshot in between: the sequences survive and no ticket of any sequence repeats (gaps are
allowed)."""

import random
import socket
import subprocess
import threading
import time

from harness import Client, Node, RespError, check, run_main
from redis_py import import_redis

redis = import_redis()


def cli(port, *args):
    r = subprocess.run(["redis-cli", "-p", str(port)] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=20)
    return r.stdout.strip()


def err(c, *args):
    r = c.call(*args)
    return str(r) if isinstance(r, RespError) else "not an error: %r" % (r,)


def commands_and_errors(node):
    p = node.port
    check(cli(p, "TICKET") == "1", "redis-cli TICKET: 1")
    check(cli(p, "TICKET", "orders") == "ERR no such sequence 'orders'",
          "TICKET of a sequence that does not exist")
    check(cli(p, "TICKET.LIST") == "default", "... created nothing (TICKET.LIST: default only)")
    check(cli(p, "TICKET.CREATE", "orders", "START", "1000") == "OK", "TICKET.CREATE orders START 1000")
    check(cli(p, "TICKET", "orders") == "1000", "the first ticket is START")
    check(cli(p, "ticket.block", "orders", "3").split() == ["1001", "1003"],
          "ticket.block (lower case) answers [first, last]")
    info = cli(p, "TICKET.INFO", "orders").split("\n")
    check(info[:6] == ["name", "orders", "last", "1003", "issued", "4"] and info[6] == "created_index"
          and int(info[7]) > 0, "TICKET.INFO: last, issued, created index: %r" % info)
    check(cli(p, "TICKET.FLOOR", "orders", "5000") == "5000", "TICKET.FLOOR raises")
    check(cli(p, "TICKET.FLOOR", "orders", "10") == "5000", "TICKET.FLOOR never lowers")
    check(cli(p, "TICKET", "orders") == "5001", "the next ticket is above the floor")
    check(cli(p, "TICKET.CREATE", "users") == "OK" and cli(p, "TICKET", "users") == "1",
          "TICKET.CREATE without START starts at 1")
    check(cli(p, "TICKET.LIST").split() == ["default", "orders", "users"], "TICKET.LIST, sorted")
    check(cli(p, "TICKET.DROP", "users") == "OK", "TICKET.DROP")
    check(cli(p, "TICKET", "users") == "ERR no such sequence 'users'", "a dropped sequence is gone")
    check(cli(p, "TICKET", "default") == "2", "TICKET default is plain TICKET")
    check(cli(p, "TICKET.BLOCK", "default", "5").split() == ["3", "7"], "a block of default")
    check(cli(p, "TICKET") == "8", "plain TICKET continues after the block")

    c = Client(p)
    expect = [
        (("TICKET", "a", "b"), "ERR wrong number of arguments for 'ticket' command"),
        (("TICKET.BLOCK", "orders"), "ERR wrong number of arguments for 'ticket.block' command"),
        (("TICKET.BLOCK", "orders", "0"), "ERR count must be at least 1"),
        (("TICKET.BLOCK", "orders", "-3"), "ERR count must be at least 1"),
        (("TICKET.BLOCK", "orders", "1000001"), "ERR count must be at most 1000000"),
        (("TICKET.BLOCK", "orders", "abc"), "ERR value is not an integer or out of range"),
        (("TICKET.BLOCK", "orders", "99999999999999999999"), "ERR value is not an integer or out of range"),
        (("TICKET.BLOCK", "nosuch", "5"), "ERR no such sequence 'nosuch'"),
        (("TICKET.CREATE", "x", "START", "0"), "ERR START must be at least 1"),
        (("TICKET.CREATE", "x", "START", "abc"), "ERR value is not an integer or out of range"),
        (("TICKET.CREATE", "x", "BEGIN", "5"), "ERR syntax error"),
        (("TICKET.CREATE", "x", "START"), "ERR syntax error"),
        (("TICKET.CREATE",), "ERR wrong number of arguments for 'ticket.create' command"),
        (("TICKET.CREATE", "orders"), "ERR sequence 'orders' already exists"),
        (("TICKET.CREATE", "x" * 129), "ERR sequence name longer than 128 bytes"),
        (("TICKET", "x" * 129), "ERR sequence name longer than 128 bytes"),
        (("TICKET.CREATE", "a b"), "ERR sequence name has a space or control character"),
        (("TICKET", "a\x01b"), "ERR sequence name has a space or control character"),
        (("TICKET", ""), "ERR empty sequence name"),
        (("TICKET.DROP", "default"), "ERR the default sequence cannot be dropped"),
        (("TICKET.DROP", "nosuch"), "ERR no such sequence 'nosuch'"),
        (("TICKET.FLOOR", "nosuch", "5"), "ERR no such sequence 'nosuch'"),
        (("TICKET.FLOOR", "orders", "-1"), "ERR the floor must be at least 0"),
        (("TICKET.FLOOR", "orders", "9223372036854775808"), "ERR value is not an integer or out of range"),
        (("TICKET.INFO", "nosuch"), "ERR no such sequence 'nosuch'"),
        (("TICKET.LIST", "x"), "ERR wrong number of arguments for 'ticket.list' command"),
        (("TICKET.LAST", "a", "b"), "ERR wrong number of arguments for 'ticket.last' command"),
    ]
    for args, want in expect:
        got = err(c, *args)
        check(got == want, "%s -> %s (got %s)" % (" ".join(a[:20] for a in args), want, got))
    check(c.call("TICKET.LAST") == 8, "TICKET.LAST: the default sequence's last ticket")
    check(c.call("TICKET.LAST", "orders") == 5001 and c.call("ticket.last", "default") == 8,
          "TICKET.LAST name; it takes no ticket")
    check(err(c, "TICKET.LAST", "users") == "ERR no such sequence 'users'", "TICKET.LAST of a dropped one")
    check(err(c, "TICKET.LAST", "a b") == "ERR sequence name has a space or control character",
          "TICKET.LAST checks the name")
    check(c.call("TICKET.CREATE", "x" * 128) == "OK", "a 128-byte name is fine")
    check(c.call("TICKET.DROP", "x" * 128) == "OK", "and can be dropped")
    check(c.call("TICKET.LIST") == ["default", "orders"], "no failed command created anything: %r"
          % c.call("TICKET.LIST"))
    # Sequence names are keys: case matters (command names do not).
    check(err(c, "TICKET", "ORDERS") == "ERR no such sequence 'ORDERS'", "names are case-sensitive")
    check(int(c.call("tIcKeT", "orders")) == 5002, "command names are case-insensitive")

    # Plain TICKET, byte for byte (RESP and inline).
    s = socket.create_connection(("127.0.0.1", p), timeout=5)
    s.sendall(b"*1\r\n$6\r\nTICKET\r\nTICKET\r\n")
    got = b""
    while got.count(b"\r\n") < 2:
        got += s.recv(100)
    s.close()
    check(got == b"+9\r\n+10\r\n", "plain TICKET's reply bytes are unchanged: %r" % got)


def limits_and_introspection(node):
    c = Client(node.port)
    # --max-sequences 6 on this node: default, orders, + 4.
    for i in range(4):
        check(c.call("TICKET.CREATE", "s%d" % i) == "OK", "create s%d" % i)
    check(err(c, "TICKET.CREATE", "s9") == "ERR too many sequences (the limit is 6, --max-sequences)",
          "past --max-sequences: refused")
    check(len(c.call("TICKET.LIST")) == 6, "... and nothing created")
    check(c.call("TICKET.DROP", "s3") == "OK" and c.call("TICKET.CREATE", "s3") == "OK",
          "a dropped sequence frees its place")
    info = c.call("INFO", "keyspace")
    check(info.startswith("# Keyspace\r\ndb0:keys=6,"), "INFO keyspace counts sequences: %r" % info)
    check("# Keyspace" in c.call("INFO"), "INFO (default) has the keyspace section")
    p = subprocess.Popen(["stdbuf", "-oL", "redis-cli", "-p", str(node.port), "--stat", "-i", "0.2"],
                         stdout=subprocess.PIPE, text=True)
    time.sleep(0.8)
    p.terminate()
    out = p.communicate(timeout=10)[0]
    rows = [l.split() for l in out.splitlines() if l[:1].isdigit()]
    check(rows and rows[0][0] == "6", "redis-cli --stat's keys column: %r" % rows[:1])
    for name, keys in (("ticket.block", [1, 1, 1]), ("ticket", [1, 1, 1]), ("ticket.list", [0, 0, 0]),
                       ("ticket.create", [1, 1, 1])):
        e = c.call("COMMAND", "INFO", name)[0]
        check(e[0] == name and e[3:6] == keys, "COMMAND INFO %s: key positions %r" % (name, e[3:6]))
    e = c.call("COMMAND", "INFO", "ticket.block")[0]
    check(e[8] and e[8][0][0] == "flags" and "begin_search" in e[8][0], "ticket.block has a key spec")
    docs = c.call("COMMAND", "DOCS", "ticket.block", "ping")
    check(docs[0] == "ticket.block" and "summary" in docs[1] and len(docs) == 2,
          "COMMAND DOCS ticket.block: %r" % docs[:2])


def pipeline_load(port, seed, n, out, failures):
    """One connection: a redis-py pipeline of `n` mixed requests, every reply checked."""
    rnd = random.Random(seed)
    r = redis.Redis(port=port, decode_responses=True)
    pipe = r.pipeline(transaction=False)
    plan = []
    for _ in range(n):
        k = rnd.randrange(10)
        if k < 3:
            plan.append(("TICKET",))
        elif k < 6:
            plan.append(("TICKET", rnd.choice(["orders", "s0", "s1"])))
        elif k < 9:
            plan.append(("TICKET.BLOCK", rnd.choice(["orders", "s0", "default"]), rnd.randrange(1, 50)))
        else:
            plan.append(("TICKET", "nosuch"))
    for cmd in plan:
        pipe.execute_command(*cmd)
    replies = pipe.execute(raise_on_error=False)
    last = {}
    for cmd, rep in zip(plan, replies):
        seq = cmd[1] if len(cmd) > 1 else "default"
        if seq == "nosuch":
            if not (isinstance(rep, redis.ResponseError) and str(rep) == "no such sequence 'nosuch'"):
                failures.append("unknown sequence: %r" % (rep,))
            continue
        if isinstance(rep, Exception):
            failures.append("%r -> %r" % (cmd, rep))
            continue
        if cmd[0] == "TICKET.BLOCK":
            first, lastv = rep
            if lastv - first + 1 != cmd[2]:
                failures.append("block %r -> %r" % (cmd, rep))
            vals = list(range(first, lastv + 1))
        else:
            vals = [int(rep)]
        if vals[0] <= last.get(seq, 0):
            failures.append("%s not increasing on a connection: %d after %d" % (seq, vals[0], last[seq]))
        last[seq] = vals[-1]
        out.setdefault(seq, []).extend(vals)


def mixed_pipelines(node):
    results = [dict() for _ in range(4)]
    failures = []
    threads = [threading.Thread(target=pipeline_load, args=(node.port, i, 1500, results[i], failures))
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check(not failures, "every pipelined reply as asked, increasing per connection: %r" % failures[:3])
    for seq in ("default", "orders", "s0", "s1"):
        allv = [v for res in results for v in res.get(seq, [])]
        check(len(allv) > 100 and len(set(allv)) == len(allv),
              "%s: %d tickets from 4 pipelines, none twice (blocks disjoint)" % (seq, len(allv)))
    st = dict(l.split(":", 1) for l in Client(node.port).call("INFO", "stats").split("\r\n") if ":" in l)
    print("batching: %s requests in %s batches, %s tickets per log write"
          % (st["ticket_requests"], st["ticket_batches"], st["tickets_per_log_write"]), flush=True)


def big_pipelines(node):
    c = Client(node.port, timeout=30)
    # Blocks of a million each, all pending at once: the reply bound counts a pending block
    # as one reply, not a million (it counted 23 bytes per ticket: 3 such blocks dropped the
    # client at 64 MiB).
    c.send_raw(Client.encode("TICKET.BLOCK", "orders", "1000000") * 10)
    blocks = [c.read_reply() for _ in range(10)]
    check(all(isinstance(b, list) and b[1] - b[0] == 999999 for b in blocks) and
          all(blocks[i + 1][0] == blocks[i][1] + 1 for i in range(9)),
          "10 pipelined blocks of 1,000,000: answered, contiguous")
    # More distinct sequences in flight than one batch (1,024) or one entry (4,096) holds:
    # batches and entries are cut there, and every request is answered.
    names = ["typo%d" % i for i in range(6000)]
    plan = []
    for i, n in enumerate(names):
        plan.append(("TICKET", n))
        if i % 500 == 0:
            plan.append(("TICKET", "orders"))
    c.send_raw(b"".join(Client.encode(*cmd) for cmd in plan))
    got = [c.read_reply() for _ in plan]
    typos = [r for cmd, r in zip(plan, got) if cmd[1] != "orders"]
    real = [int(r) for cmd, r in zip(plan, got) if cmd[1] == "orders"]
    check(all(str(r) == "ERR no such sequence '%s'" % n for n, r in zip(names, typos)),
          "6,000 unknown sequences in one pipeline: each its own error")
    check(real == sorted(real) and len(set(real)) == len(real) and real[0] > blocks[-1][1],
          "the real sequence among them got its tickets, in order")
    check(len(c.call("TICKET.LIST")) == 6, "and none of the 6,000 was created")


def loader(port, names, seen, stop):
    c = Client(port, timeout=5)
    rnd = random.Random(hash(tuple(names)))
    while not stop.is_set():
        plan = [rnd.choice(names) for _ in range(16)]
        try:
            c.send_raw(b"".join(Client.encode("TICKET.BLOCK", s[2:], "3") if s.startswith("b:") else
                                (Client.encode("TICKET") if s == "default" else Client.encode("TICKET", s))
                                for s in plan))
            for s in plan:
                r = c.read_reply()
                if isinstance(r, RespError):
                    continue
                if s.startswith("b:"):
                    seen.setdefault(s[2:], []).extend(range(r[0], r[1] + 1))
                else:
                    seen.setdefault(s, []).append(int(r))
        except (ConnectionError, OSError):
            return


def crash_restart(node):
    names = ["default", "orders", "s0", "b:orders", "b:s1"]
    top = {}
    for round_ in range(2):
        seen = {}
        stop = threading.Event()
        threads = [threading.Thread(target=loader, args=(node.port, names, seen, stop)) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        if round_ == 0:
            check(Client(node.port).call("RAFT.SNAPSHOT") == "OK", "a snapshot under load")
        time.sleep(0.5)
        node.kill9()
        stop.set()
        for t in threads:
            t.join(10)
        for seq, vals in seen.items():
            check(len(set(vals)) == len(vals), "round %d: %s: no repeat before the kill" % (round_, seq))
            check(min(vals) > top.get(seq, 0), "round %d: %s rose across the restart" % (round_, seq))
            top[seq] = max(vals)
        node.start()
        c = Client(node.port)
        check(c.call("TICKET.LIST") == ["default", "orders", "s0", "s1", "s2", "s3"],
              "round %d: the sequences survived kill -9" % round_)
        for seq in ("default", "orders", "s0", "s1"):
            v = int(c.call("TICKET") if seq == "default" else c.call("TICKET", seq))
            check(v > top[seq], "round %d: %s after the restart (%d) > every ticket before (%d)"
                  % (round_, seq, v, top[seq]))
            top[seq] = v


def main(args):
    node = Node(args.binary, threads=2, extra=["--max-sequences", "6"]).start()
    try:
        commands_and_errors(node)
        limits_and_introspection(node)
        mixed_pipelines(node)
        big_pipelines(node)
        crash_restart(node)
    finally:
        node.cleanup()


run_main(main)
