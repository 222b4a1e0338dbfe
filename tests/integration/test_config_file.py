"""Settings from a config file (--config, read by CLI11), CONFIG GET/SET, and the log format.

- A node started from a file alone behaves as one started with the same flags: CONFIG GET *
  answers the same settings (but the file's own name), the password from the file's
  requirepass-file is required, the log level from the file applies.
- Flags on the command line win over the file.
- Refused, with a message and exit status 2: an unknown key (named), a [section], a bad
  value, a missing or unreadable file, a stray line that might be a secret (not repeated).
- A password given in a config file that others can read draws a warning.
- CONFIG GET: *, single names, globs (Redis's rules), several patterns, any case, nothing
  for an unknown name; never a password (requirepass is not answered, its value appears
  nowhere in CONFIG GET * or the log). CONFIG SET loglevel works at run time (and takes
  effect), every other setting answers -ERR; CONFIG REWRITE -ERR. redis-cli prints it.
- Every log line: UTC timestamp with milliseconds, ticketd[<id>], a level marker."""

import os
import re
import subprocess
import tempfile
import time

from harness import Client, Node, RespError, check, free_port, run_main, wait_for

PASSWORD = "cfg-test-password-7f3a"
QUICK = bool(os.environ.get("TICKETD_TEST_QUICK"))
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ticketd\[\d+\] [.\-*#] \S")


class FileNode(Node):
    """A node whose only flag is --config FILE (plus `extra`)."""

    def __init__(self, binary, conf_path, port, dir, extra=None):
        super().__init__(binary, dir=dir, port=port, extra=extra, auth=PASSWORD)
        self.conf_path = conf_path

    def args(self):
        return [self.binary, "--config", self.conf_path] + self.extra


def write(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def config_get(c, *patterns):
    r = c.call("CONFIG", "GET", *patterns)
    check(isinstance(r, list) and len(r) % 2 == 0, "CONFIG GET %s: a flat name/value array" %
          " ".join(patterns))
    return dict(zip(r[0::2], r[1::2]))


def refused(binary, tmp, text, what, extra=(), mode=0o600, name="bad.conf"):
    path = write(os.path.join(tmp, name), text, mode) if text is not None else os.path.join(tmp, name)
    p = subprocess.run([binary, "--config", path, "--dir", tmp, *extra], capture_output=True,
                       text=True, timeout=10)
    check(p.returncode == 2 and what in p.stderr,
          "refused with exit 2: %r (%s)" % (what, p.stderr.strip()[:160]))
    return p


def same_as_flags(args, tmp, pwfile, got):
    os.makedirs(os.path.join(tmp, "data2"))
    flags = Node(args.binary, node_id=4, dir=os.path.join(tmp, "data2"), durability="medium",
                 threads=2, auth=PASSWORD,
                 extra=["--maxclients", "321", "--max-sequences", "77", "--requirepass-file",
                        pwfile, "--loglevel", "verbose", "--protected-mode", "yes"])
    flags.start()
    try:
        other = config_get(flags.client(), "*")
        diff = {k for k in set(got) | set(other) if got.get(k) != other.get(k)}
        check(diff == {"config", "saddr", "raddr", "port", "dir"},
              "a node from the file answers the same settings as one from flags (differ: %s)"
              % sorted(diff))
    finally:
        flags.cleanup()


def main(args):
    tmp = tempfile.mkdtemp(prefix="ticketd-config-")
    pwfile = write(os.path.join(tmp, "requirepass"), PASSWORD + "\n")
    port, rport = free_port(), free_port()
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    conf = write(os.path.join(tmp, "ticketd.conf"), "\n".join([
        "# a node from its file alone",
        "id = 4",
        'saddr = "127.0.0.1:%d"' % port,
        'raddr = "127.0.0.1:%d"' % rport,
        'dir = "%s"' % data,
        'durability = "medium"',
        "threads = 2",
        "maxclients = 321",
        "max-sequences = 77",
        'requirepass-file = "%s"' % pwfile,
        'loglevel = "verbose"',
        'protected-mode = "yes"',
        ""]))
    node = FileNode(args.binary, conf, port, data)
    try:
        node.start()
        check(str(Client(port).call("PING")).startswith("NOAUTH"),
              "the password from the file's requirepass-file is required")
        c = node.client()
        check(c.call("TICKET") == "1", "TICKET from a node started from its file")
        got = config_get(c, "*")
        for k, v in (("id", "4"), ("saddr", "127.0.0.1:%d" % port), ("dir", data),
                     ("durability", "medium"), ("threads", "2"), ("maxclients", "321"),
                     ("max-sequences", "77"), ("requirepass-file", pwfile),
                     ("loglevel", "verbose"), ("protected-mode", "yes"), ("config", conf),
                     ("port", str(port)), ("bind", "127.0.0.1"), ("databases", "1"),
                     ("no-bootstrap", "no"), ("join", "")):
            check(got.get(k) == v, "CONFIG GET * has %s = %r (%r)" % (k, v, got.get(k)))
        check("requirepass" not in got, "requirepass is never answered")
        check(PASSWORD not in str(got), "the password is nowhere in CONFIG GET *")
        check(wait_for(lambda: "settings: " in node.log(), 5),
              "loglevel verbose from the file: the settings line is logged")

        # The same settings as flags: the same CONFIG GET * (but for the file's own name).
        if QUICK:
            print("skip under TICKETD_TEST_QUICK: the same node from flags")
        else:
            same_as_flags(args, tmp, pwfile, got)

        # CONFIG GET forms.
        check(config_get(c, "maxclients") == {"maxclients": "321"}, "CONFIG GET maxclients")
        check(config_get(c, "MAXCLIENTS") == {"maxclients": "321"}, "CONFIG GET is case-insensitive")
        check(set(config_get(c, "max*")) == {"maxclients", "max-sequences"}, "CONFIG GET max*")
        check(set(config_get(c, "[pb]o*")) == {"port"}, "CONFIG GET [pb]o* (a class)")
        check(set(config_get(c, "?ir")) == {"dir"}, "CONFIG GET ?ir")
        check(set(config_get(c, "port", "bind", "port", "dur*")) == {"port", "bind", "durability"},
              "CONFIG GET with several patterns, each name once")
        check(config_get(c, "nosuch") == {}, "CONFIG GET of an unknown name: empty")
        check(config_get(c, "requirepass") == {}, "CONFIG GET requirepass: nothing")
        check(str(c.call("CONFIG", "GET")) == "ERR wrong number of arguments for 'config|get' command",
              "CONFIG GET without a pattern: Redis's arity error")
        out = subprocess.run(["redis-cli", "-p", str(port), "-a", PASSWORD, "--no-auth-warning",
                              "CONFIG", "GET", "maxclients"], capture_output=True, text=True,
                             timeout=10).stdout.split()
        check(out == ["maxclients", "321"], "redis-cli CONFIG GET maxclients (%r)" % out)

        # CONFIG SET: loglevel only.
        check(c.call("CONFIG", "SET", "loglevel", "warning") == "OK", "CONFIG SET loglevel warning")
        check(config_get(c, "loglevel") == {"loglevel": "warning"}, "... and CONFIG GET says so")
        c.call("CONFIG", "SET", "loglevel", "notice")
        check(wait_for(lambda: " * CONFIG SET loglevel notice" in node.log(), 5) and
              " * CONFIG SET loglevel warning" not in node.log(),
              "the level applies at once: at warning, the notice of that CONFIG SET was dropped")
        r = str(c.call("CONFIG", "SET", "maxclients", "5"))
        check(r == "ERR CONFIG SET failed (possibly related to argument 'maxclients') - can't set "
                   "immutable config", "CONFIG SET maxclients: Redis's immutable error (%s)" % r)
        r = str(c.call("CONFIG", "SET", "requirepass", "x"))
        check("immutable" in r, "CONFIG SET requirepass: immutable (%s)" % r)
        r = str(c.call("CONFIG", "SET", "nosuch", "x"))
        check(r == "ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'",
              "CONFIG SET of an unknown name (%s)" % r)
        r = str(c.call("CONFIG", "SET", "loglevel", "loud"))
        check("must be one of the following: debug, verbose, notice, warning" in r,
              "CONFIG SET loglevel loud is refused (%s)" % r)
        check(str(c.call("CONFIG", "REWRITE")).startswith("ERR CONFIG REWRITE is not supported"),
              "CONFIG REWRITE: -ERR")
        help_lines = c.call("CONFIG", "HELP")
        check(isinstance(help_lines, list) and any("SET" in l for l in help_lines), "CONFIG HELP")

        # Every log line: timestamp, node id, marker; nothing secret.
        node.terminate()
        with open(node.log_path, errors="replace") as f:
            lines = [l.rstrip("\n") for l in f if l.strip()]
        bad = [l for l in lines if not LINE.match(l) and not l.startswith("ticketd: warning")]
        check(lines and not bad, "every log line has a UTC ms timestamp, the node id and a "
              "level marker (%d lines; not: %r)" % (len(lines), bad[:3]))
        check(any(" * CONFIG SET loglevel notice" in l for l in lines), "CONFIG SET is logged")
        check(PASSWORD not in "\n".join(lines), "the password is never logged")

        # The command line wins over the file.
        if QUICK:
            print("skip under TICKETD_TEST_QUICK: a restart with a flag over the file")
        else:
            node.extra = ["--maxclients", "7"]
            node.start()
            check(config_get(node.client(), "maxclients") == {"maxclients": "7"},
                  "a flag on the command line wins over the file")
            node.terminate()
    finally:
        node.cleanup()

    # Bad files.
    refused(args.binary, tmp, "idd = 3\n", "unknown key 'idd'")
    refused(args.binary, tmp, "[server]\nid = 3\n", "sections are not used")
    refused(args.binary, tmp, "threads = 0\n", "--threads")
    refused(args.binary, tmp, None, "nosuch.conf", name="nosuch.conf")
    if not QUICK:  # (server_test's ConfigFile tests check these values' refusals too)
        refused(args.binary, tmp, 'durability = "sometimes"\n', "--durability")
        refused(args.binary, tmp, "loglevel = loud\n", "--loglevel")
        refused(args.binary, tmp, None, "not readable", name="")  # a directory is no file
    p = refused(args.binary, tmp, "Tr0ub4dor&3-secret\n", "names no flag")
    check("Tr0ub4dor" not in p.stderr, "a stray line that may be a secret is not repeated")
    # A password in a file others may read: a warning, said once the flags are parsed (here
    # before a bad --saddr stops the node), never repeating the password.
    wconf = write(os.path.join(tmp, "inline.conf"),
                  'requirepass = "%s"\nsaddr = "no-port"\n' % PASSWORD, 0o644)
    p = refused(args.binary, tmp, None, "bad --saddr", name="inline.conf")
    check("--config %s is readable by group or others" % wconf in p.stderr,
          "a password in a world-readable config file draws a warning")
    check(PASSWORD not in p.stderr, "... which does not repeat it")


run_main(main)
