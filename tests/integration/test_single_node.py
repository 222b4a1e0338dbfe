"""A single ticketd node with real clients: redis-cli, nc, and raw RESP.

Checks: TICKET returns 1, 2, 3...; inline commands over nc; a 10,000-deep pipeline returns
10,000 consecutive values in order; 50 concurrent connections each see increasing values and
no value appears twice; replies keep pipeline order when a TICKET waits and a PING does not;
the connect-time commands real clients send; Redis's exact error texts."""

import subprocess
import threading

from harness import Client, Node, RespError, check, run_main


def redis_cli(port, *args):
    r = subprocess.run(["redis-cli", "-p", str(port)] + list(args), capture_output=True,
                       text=True, timeout=20)
    return r.stdout.strip()


def main(args):
    node = Node(args.binary).start()
    try:
        port = node.port
        # redis-cli prints the bare number for a simple string.
        check([redis_cli(port, "TICKET") for _ in range(3)] == ["1", "2", "3"],
              "redis-cli TICKET returns 1, 2, 3")
        check(redis_cli(port, "ticket") == "4", "command names are case-insensitive")
        out = subprocess.run(["nc", "-q", "1", "127.0.0.1", str(port)],
                             input=b"TICKET\r\nPING\r\n", capture_output=True, timeout=20).stdout
        check(out == b"+5\r\n+PONG\r\n", "inline TICKET and PING over nc (got %r)" % out)

        c = Client(port)
        vals = c.tickets(10000)
        check(vals == list(range(vals[0], vals[0] + 10000)),
              "a pipeline of 10,000 TICKETs returns 10,000 consecutive values in order")
        last = vals[-1]

        # Order is kept per connection: a PING behind a pending TICKET waits its turn.
        c.send_raw(Client.encode("TICKET") + Client.encode("PING") + Client.encode("TICKET") +
                   Client.encode("ECHO", "x") + Client.encode("TICKET"))
        r = [c.read_reply() for _ in range(5)]
        check(r[1] == "PONG" and r[3] == "x" and int(r[0]) < int(r[2]) < int(r[4]) and
              int(r[0]) > last, "replies keep pipeline order around pending TICKETs: %r" % r)

        # 50 concurrent connections.
        results = {}
        errors = []

        def worker(i):
            try:
                cl = Client(port)
                got = []
                for _ in range(20):
                    got += cl.tickets(25)
                cl.close()
                results[i] = got
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        check(not errors, "50 concurrent clients ran without errors %r" % errors[:3])
        check(all(all(a < b for a, b in zip(v, v[1:])) for v in results.values()),
              "each of 50 connections sees strictly increasing tickets")
        allv = [x for v in results.values() for x in v]
        check(len(allv) == 50 * 500 and len(set(allv)) == len(allv),
              "no ticket appears twice across 50 connections (%d tickets)" % len(allv))

        # Connect-time commands of real clients.
        check(c.call("PING") == "PONG", "PING")
        check(c.call("PING", "hi") == "hi", "PING msg")
        check(c.call("ECHO", "hello") == "hello", "ECHO")
        check(c.call("SELECT", "0") == "OK", "SELECT 0")
        r = c.call("SELECT", "1")
        check(isinstance(r, RespError) and str(r) == "ERR DB index is out of range", "SELECT 1")
        check(c.call("CLIENT", "SETNAME", "bench") == "OK", "CLIENT SETNAME")
        check(c.call("CLIENT", "GETNAME") == "bench", "CLIENT GETNAME")
        check(c.call("CLIENT", "SETINFO", "LIB-NAME", "redis-py") == "OK", "CLIENT SETINFO")
        check(isinstance(c.call("CLIENT", "ID"), int), "CLIENT ID")
        check(c.call("CONFIG", "GET", "maxmemory") == [], "CONFIG GET is an empty result")
        r = c.call("HELLO", "3")
        check(isinstance(r, RespError) and str(r).startswith("NOPROTO"), "HELLO 3 -> NOPROTO")
        r = c.call("HELLO", "2")
        check(isinstance(r, list) and r[0] == "server" and r[1] == "ticketd", "HELLO 2")
        r = c.call("COMMAND", "COUNT")
        check(isinstance(r, int) and r >= 10, "COMMAND COUNT")
        r = c.call("COMMAND")
        check(isinstance(r, list) and any(e[0] == "ticket" for e in r), "COMMAND lists ticket")
        docs = c.call("COMMAND", "DOCS")
        check(isinstance(docs, list) and "ticket.block" in docs[0::2], "COMMAND DOCS")
        info = c.call("INFO")
        for section in ("# Server", "# Clients", "# Persistence", "# Stats"):
            check(section in info, "INFO has %s" % section)
        fields = dict(l.split(":", 1) for l in info.split("\r\n") if ":" in l)
        check(int(fields["tickets_issued"]) >= 10000 + 25000, "INFO counts tickets issued")
        check(int(fields["connected_clients"]) >= 1, "INFO counts connected clients")
        check(fields["durability"] == "high", "INFO shows durability")
        check("# Stats" in c.call("INFO", "stats") and "# Server" not in c.call("INFO", "stats"),
              "INFO stats gives one section")

        # INFO names the allocator the process really runs with (it said libc while
        # mimalloc was linked).
        ldd = subprocess.run(["ldd", args.binary], capture_output=True, text=True).stdout
        want = "mimalloc" if "libmimalloc" in ldd else "libc"
        check("mem_allocator:%s\r\n" % want in c.call("INFO", "server"),
              "INFO server says mem_allocator:%s" % want)

        # Redis's exact error texts.
        r = c.call("TICKET", "extra", "more")
        check(str(r) == "ERR wrong number of arguments for 'ticket' command", "TICKET arity: %s" % r)
        r = c.call("TICKET", "extra")  # a name: never creates the sequence
        check(str(r) == "ERR no such sequence 'extra'", "TICKET of an unknown sequence: %s" % r)
        r = c.call("FOO", "a", "b")
        check(str(r) == "ERR unknown command 'FOO', with args beginning with: 'a' 'b' ",
              "unknown command text: %r" % str(r))
        r = c.call("ECHO")
        check(str(r) == "ERR wrong number of arguments for 'echo' command", "ECHO arity")
        r = c.call("CLIENT", "KILL")
        check(str(r).startswith("ERR unknown subcommand 'KILL'"), "unknown subcommand")
        check(c.call("QUIT") == "OK", "QUIT answers +OK")
        try:
            c.read_reply()
            closed = False
        except (ConnectionError, OSError):
            closed = True
        check(closed, "QUIT closes the connection")
        r = redis_cli(port, "TICKET")
        check(int(r) > max(allv), "service continues after all that")
        rc = node.terminate()
        check(rc == 0, "SIGTERM stops the node with exit 0 (got %s)" % rc)
    finally:
        node.cleanup()


run_main(main)
