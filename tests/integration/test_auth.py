"""Client authentication, Redis style, on one node.

- --requirepass (from a file, the environment and the command line, where ps no longer shows
  it): before AUTH only AUTH, HELLO and QUIT run; everything else, TICKET too, gets
  -NOAUTH; a wrong password -WRONGPASS; AUTH in both forms and HELLO 2 AUTH log in; HELLO 3
  stays -NOPROTO. redis-cli -a, redis-benchmark -a.
- --aclfile with an application and an operator role: each role's allowed and refused
  commands (-NOPERM names the user and the command), a disabled user, a #sha256 password,
  redis-cli --user/--pass, ACL WHOAMI, CLIENT INFO and INFO clients show the user.
- No password, no secret in the log."""

import hashlib
import os
import subprocess
import tempfile

from harness import Client, Node, RespError, check, run_main, wait_for

NOAUTH = "NOAUTH Authentication required."
WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."


def noperm(user, cmd):
    return "NOPERM User %s has no permissions to run the '%s' command" % (user, cmd)


def cli(node, *args, auth=()):
    out = subprocess.run(["redis-cli", "-p", str(node.port), "--no-auth-warning", *auth, *args],
                         capture_output=True, text=True, timeout=20)
    return out.stdout.strip()


def info_fields(c, section):
    return dict(l.split(":", 1) for l in c.call("INFO", section).split("\r\n") if ":" in l)


def secret_file(dir, name, text):
    path = os.path.join(dir, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def check_requirepass(args, tmp):
    pw = "s3cret-requirepass-value"
    node = Node(args.binary, extra=["--requirepass-file", secret_file(tmp, "pw", pw + "\n")],
                auth=pw).start()
    try:
        c = Client(node.port)
        for cmd in (("PING",), ("TICKET",), ("RAFT.STATS",), ("INFO",), ("ACL", "WHOAMI"),
                    ("CLIENT", "INFO"), ("RAFT.REMOVESERVER", "1")):
            check(str(c.call(*cmd)) == NOAUTH, "before AUTH: %s gets -NOAUTH" % cmd[0])
        check(str(c.call("NOSUCH")).startswith("ERR unknown command"),
              "an unknown command is still unknown (Redis checks that first)")
        check(str(c.call("AUTH", "wrong")) == WRONGPASS, "a wrong password: -WRONGPASS")
        check(str(c.call("AUTH", "default", "wrong")) == WRONGPASS, "a wrong pair: -WRONGPASS")
        check(str(c.call("AUTH", "nobody", pw)) == WRONGPASS, "an unknown user: -WRONGPASS")
        check(str(c.call("AUTH", "a", "b", "c")) == "ERR syntax error", "AUTH with 3 arguments")
        check(str(c.call("HELLO", "2")).startswith("NOAUTH HELLO must be called with the client "
                                                  "already authenticated"),
              "HELLO 2 without AUTH: Redis's NOAUTH text")
        check(str(c.call("HELLO", "3", "AUTH", "default", pw)).startswith("NOPROTO"),
              "HELLO 3 AUTH stays -NOPROTO (clients fall back to HELLO 2 / AUTH)")
        # TICKETs pipelined before and after AUTH: refused, then served, in order.
        c.send_raw(Client.encode("TICKET") * 3 + Client.encode("AUTH", pw) +
                   Client.encode("TICKET") * 3 + Client.encode("ACL", "WHOAMI"))
        replies = [c.read_reply() for _ in range(8)]
        check([str(r) for r in replies[:3]] == [NOAUTH] * 3 and replies[3] == "OK" and
              [int(r) for r in replies[4:7]] == [1, 2, 3] and replies[7] == "default",
              "a pipeline: NOAUTH x3, +OK, tickets 1..3, default (%r)" % replies)
        check(str(c.call("AUTH", "wrong")) == WRONGPASS and c.call("TICKET") == "4",
              "a failed AUTH keeps the user the connection had")
        c.close()

        c = Client(node.port)
        r = c.call("HELLO", "2", "AUTH", "default", pw, "SETNAME", "svc")
        check(isinstance(r, list) and r[:2] == ["server", "ticketd"], "HELLO 2 AUTH logs in")
        check("user=default" in c.call("CLIENT", "INFO") and "name=svc" in c.call("CLIENT", "INFO"),
              "CLIENT INFO shows the user (and HELLO's SETNAME)")
        check(str(c.call("HELLO", "2", "AUTH", "default", "bad")) == WRONGPASS,
              "HELLO 2 AUTH with a wrong password: -WRONGPASS")
        # The clients closed above leave the count once the server has seen their close.
        wait_for(lambda: info_fields(c, "clients")["clients_by_user"] == "default=1", 5)
        f = info_fields(c, "clients")
        check(f["clients_by_user"] == "default=1" and f["protected_mode"] == "0",
              "INFO clients: clients_by_user (%s)" % f["clients_by_user"])
        st = info_fields(c, "stats")
        check(int(st["acl_access_denied_auth"]) >= 5, "INFO stats counts failed AUTHs (%s)" %
              st["acl_access_denied_auth"])
        check(c.call("QUIT") == "OK", "QUIT")
        c = Client(node.port)
        check(c.call("QUIT") == "OK", "QUIT runs before AUTH")

        check(cli(node, "TICKET", auth=("-a", pw)).isdigit(), "redis-cli -a")
        check(cli(node, "TICKET") == NOAUTH, "redis-cli without -a: NOAUTH")
        check(cli(node, "TICKET", auth=("--user", "default", "--pass", pw)).isdigit(),
              "redis-cli --user default --pass")
        before = int(Client(node.port, auth=pw).call("TICKET"))
        out = subprocess.run(["redis-benchmark", "-p", str(node.port), "-a", pw, "-n", "2000",
                              "-c", "4", "-q", "TICKET"], capture_output=True, text=True,
                             timeout=60)
        after = int(Client(node.port, auth=pw).call("TICKET"))
        check(out.returncode == 0 and after - before == 2001,
              "redis-benchmark -a: 2000 TICKETs (%d issued; %s)" % (after - before - 1,
                                                                    out.stdout.strip()[-80:]))
        log = node.log()
        check(pw not in log and "s3cret" not in log, "the password is not in the log")
        check("needs a password" in log, "the start-up log says clients need a password")
    finally:
        node.cleanup()

    # The environment, and the command line (which ps then shows as x's).
    node = Node(args.binary, env={"TICKETD_REQUIREPASS": "from-env"}, auth="from-env").start()
    try:
        check(node.client().call("TICKET") == "1", "TICKETD_REQUIREPASS sets the password")
        check(str(Client(node.port).call("PING")) == NOAUTH, "... and it is required")
    finally:
        node.cleanup()
    node = Node(args.binary, extra=["--requirepass", "on-argv-secret"], auth="on-argv-secret").start()
    try:
        with open("/proc/%d/cmdline" % node.proc.pid, "rb") as f:
            cmdline = f.read()
        check(b"on-argv-secret" not in cmdline and b"xxxxxxxxxxxxxx" in cmdline,
              "--requirepass is overwritten in the process's argv (ps shows x's)")
        check(node.client().call("TICKET") == "1", "--requirepass on the command line works")
    finally:
        node.cleanup()
    for extra, env, what in ((["--requirepass", "a", "--requirepass-file", "/nonexistent"], None,
                              "not both"),
                             (["--requirepass-file", secret_file(tmp, "empty", "\n")], None,
                              "would be no password"),
                             (["--requirepass-file", "/nonexistent/pw"], None, "cannot open")):
        p = subprocess.run([args.binary, "--dir", tmp, *extra], capture_output=True, text=True,
                           timeout=10)
        check(p.returncode == 2 and what in p.stderr, "refused at start: %s (%s)" %
              (what, p.stderr.strip()[:120]))


def check_acl(args, tmp):
    ops_digest = hashlib.sha256(b"ops-pw").hexdigest()
    acl = secret_file(tmp, "users.acl", "\n".join([
        "# roles",
        "user app on >app-pw +@application",
        "user ops on #%s +@operator" % ops_digest,
        "user mon on >mon-pw +@connection +@status",
        "user gone off >gone-pw +@all",
        ""]))
    node = Node(args.binary, extra=["--aclfile", acl], auth=("ops", "ops-pw")).start()
    try:
        c = Client(node.port)
        check(str(c.call("PING")) == NOAUTH, "an ACL file without 'default': nobody is logged in")
        check(str(c.call("AUTH", "anything")) == WRONGPASS, "AUTH password: default is off")
        app = Client(node.port, auth=("app", "app-pw"))
        check(app.call("ACL", "WHOAMI") == "app", "ACL WHOAMI: app")
        check(app.call("TICKET") == "1" and app.call("PING") == "PONG", "app: TICKET, PING")
        check(app.call("RAFT.LEADER") == "127.0.0.1:%d" % node.port, "app: RAFT.LEADER")
        check(isinstance(app.call("COMMAND", "COUNT"), int), "app: COMMAND COUNT")
        check("last_ticket:1" in app.call("INFO", "stats"), "app: INFO (ioredis's ready check)")
        check(app.call("CLIENT", "SETNAME", "web") == "OK", "app: CLIENT SETNAME")
        for cmd in (("RAFT.REMOVESERVER", "1"), ("RAFT.ADDVOTER", "9", "127.0.0.1:1"),
                    ("RAFT.SNAPSHOT",), ("RAFT.TRANSFERLEADER", "1"), ("RAFT.STATS",),
                    ("RAFT.CONFIGURATION",), ("RAFT.LASTCONTACT",),
                    ("RAFT.JOIN", "9", "127.0.0.1:1", "127.0.0.1:2", "ab")):
            check(str(app.call(*cmd)) == noperm("app", cmd[0].lower()),
                  "app: %s gets -NOPERM naming user and command" % cmd[0])
        check("user=app" in app.call("CLIENT", "INFO"), "CLIENT INFO: user=app")
        # Sequences: the operator makes them, the application takes and reads them.
        for cmd in (("TICKET.CREATE", "orders"), ("TICKET.FLOOR", "default", "100"),
                    ("TICKET.DROP", "orders")):
            check(str(app.call(*cmd)) == noperm("app", cmd[0].lower()),
                  "app: %s is -NOPERM" % cmd[0])

        ops = node.client()
        check(ops.call("ACL", "WHOAMI") == "ops", "ops logs in with a #sha256 password")
        check(ops.call("TICKET") == "2", "ops: TICKET")
        check(ops.call("TICKET.CREATE", "orders") == "OK", "ops: TICKET.CREATE orders")
        check(app.call("TICKET", "orders") == "1", "app: TICKET orders")
        check(isinstance(app.call("TICKET.BLOCK", "orders", "3"), list), "app: TICKET.BLOCK")
        check(app.call("TICKET.LAST", "orders") == 4, "app: TICKET.LAST orders")
        check("orders" in str(app.call("TICKET.LIST")), "app: TICKET.LIST")
        check(isinstance(app.call("TICKET.INFO", "orders"), list), "app: TICKET.INFO")
        check(ops.call("TICKET.FLOOR", "orders", "100") == 100, "ops: TICKET.FLOOR")
        check(ops.call("TICKET.DROP", "orders") == "OK", "ops: TICKET.DROP")
        check(ops.call("RAFT.SNAPSHOT") == "OK", "ops: RAFT.SNAPSHOT")
        check(isinstance(ops.call("RAFT.STATS"), list), "ops: RAFT.STATS")
        check(str(ops.call("RAFT.REMOVESERVER", "7")).startswith("ERR"),
              "ops: RAFT.REMOVESERVER runs (and refuses a non-member)")
        f = info_fields(ops, "clients")
        check(f["clients_by_user"] == "app=1,ops=1" and f["unauthenticated_clients"] == "1",
              "INFO clients: app=1,ops=1 and one unauthenticated (%r)" % f)
        check(int(info_fields(ops, "stats")["acl_access_denied_cmd"]) >= 8,
              "INFO stats counts NOPERM refusals")
        check(ops.call("ACL", "CAT")[:2] == ["all", "connection"], "ACL CAT lists categories")
        check(set(ops.call("ACL", "CAT", "application")) >= {"ticket", "raft.leader", "auth"},
              "ACL CAT application lists its commands")
        check(str(ops.call("ACL", "CAT", "nosuch")) == "ERR Unknown category 'nosuch'",
              "ACL CAT of an unknown category")

        mon = Client(node.port, auth=("mon", "mon-pw"))
        check(isinstance(mon.call("RAFT.STATS"), list) and "# Server" in mon.call("INFO"),
              "mon (+@status): RAFT.STATS and INFO")
        check(str(mon.call("TICKET")) == noperm("mon", "ticket"), "mon: TICKET is -NOPERM")
        check(str(Client(node.port).call("AUTH", "gone", "gone-pw")) == WRONGPASS,
              "a disabled user: -WRONGPASS")
        # A logged-in connection can log in as someone else.
        check(app.call("AUTH", "mon", "mon-pw") == "OK" and str(app.call("TICKET")) ==
              noperm("mon", "ticket"), "AUTH again switches the user")
        check(info_fields(ops, "clients")["clients_by_user"] == "ops=1,mon=2",
              "... and the counts follow")

        check(cli(node, "TICKET", auth=("--user", "app", "--pass", "app-pw")).isdigit(),
              "redis-cli --user app --pass")
        check(cli(node, "RAFT.SNAPSHOT", auth=("--user", "app", "--pass", "app-pw")) ==
              noperm("app", "raft.snapshot"), "redis-cli as app: RAFT.SNAPSHOT refused")
        check(cli(node, "RAFT.SNAPSHOT", auth=("--user", "ops", "--pass", "ops-pw")) == "OK",
              "redis-cli as ops: RAFT.SNAPSHOT")
        log = node.log()
        check("app-pw" not in log and ops_digest not in log, "no password or digest in the log")
        check("5 user(s) from %s, the default user off" % acl in log,
              "the start-up log counts the users and says default is off")
    finally:
        node.cleanup()

    bad = secret_file(tmp, "bad.acl", "user a on >x +@application\nuser b on +frob\n")
    p = subprocess.run([args.binary, "--dir", tmp, "--aclfile", bad], capture_output=True,
                       text=True, timeout=10)
    check(p.returncode == 1 and "line 2: user 'b', word 4: unknown command 'frob'" in p.stderr,
          "a bad ACL file stops the start with its line (%s)" % p.stderr.strip()[:160])
    both = secret_file(tmp, "both.acl", "user default on >x +@all\n")
    p = subprocess.run([args.binary, "--dir", tmp, "--aclfile", both, "--requirepass", "y"],
                       capture_output=True, text=True, timeout=10)
    check(p.returncode == 1 and "keep one" in p.stderr, "--requirepass and a default in the file")


def check_no_password(args):
    node = Node(args.binary).start()
    try:
        c = Client(node.port)
        check(c.call("TICKET") == "1" and c.call("ACL", "WHOAMI") == "default",
              "no password: connections start as default")
        check(str(c.call("AUTH", "x")).startswith("ERR AUTH <password> called without any "
                                                 "password configured for the default user"),
              "AUTH password without one configured: Redis's error")
        check(c.call("AUTH", "default", "anything") == "OK", "AUTH default anything (nopass)")
        f = info_fields(c, "clients")
        check(f["protected_mode"] == "1" and f["clients_by_user"] == "default=1",
              "INFO clients: protected mode on (%r)" % f)
        check(wait_for(lambda: "protected mode" in node.log(), 5), "the start-up log names protected mode")
    finally:
        node.cleanup()


def main(args):
    tmp = tempfile.mkdtemp(prefix="ticketd-auth-")
    try:
        check_requirepass(args, tmp)
        check_acl(args, tmp)
        check_no_password(args)
    finally:
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    run_main(main)
