"""docs/OPERATIONS.md, run as written (issue 14): every code block marked `<!-- runbook -->`
is parsed out of the document and executed in order against real processes, so the runbook
cannot drift from what ticketd does.

In a block, each `$ ` line is a command and the lines after it (up to the next command) are
its expected reply. Commands understood (anything else fails the test, so the runbook holds
no command that was not run):

  ticketd FLAGS...            start that node in the background (its --id names it), wait for PING
  kill -TERM <pid of node N>  SIGTERM it, expect exit status 0
  kill -9 <pid of node N>     SIGKILL it
  redis-cli -p PORT ARGS...   run redis-cli (formatted output, --no-raw) and compare its reply
  rm -rf / mkdir -p / cp      on paths under /var/lib/ticketd and /backup only

The document's addresses and paths are mapped to this run's: 127.0.0.1:1100N and :1200N to
free ports, /var/lib/ticketd and /backup to a temporary directory (and back, in replies);
nodes get `--threads 1`. Replies: `...` alone matches any lines, a line ending in `...`
matches one line starting with what precedes it. Read commands (RAFT.CONFIGURATION, ROLE,
CLUSTER INFO, ...) are repeated until they match, for up to 20 s, as an operator waits; any
command answered `in progress` (a membership change still committing) is retried."""

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from harness import Client, check, free_port, run_main

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(HERE, "..", "..", "docs", "OPERATIONS.md")
READS = {"RAFT.CONFIGURATION", "ROLE", "CLUSTER", "RAFT.LEADER", "RAFT.STATS", "TICKET.LIST",
         "TICKET.LAST", "INFO"}
WAIT_S = 20


def blocks(text):
    """(heading, [(command, [expected lines])]) per runbook block, in document order."""
    out, heading = [], ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("## "):
            heading = lines[i][3:]
        if lines[i].strip() == "<!-- runbook -->":
            i += 1
            if not lines[i].startswith("```"):
                check(False, "a runbook marker is followed by a code block (%s)" % heading)
            i += 1
            cmds = []
            while not lines[i].startswith("```"):
                if lines[i].startswith("$ "):
                    cmds.append((lines[i][2:], []))
                else:
                    if not cmds:
                        check(False, "a reply follows a command in %s" % heading)
                    cmds[-1][1].append(lines[i])
                i += 1
            out.append((heading, cmds))
        i += 1
    return out


def matches(want, got):
    if not want:
        return not got
    if want[0] == "...":
        return any(matches(want[1:], got[k:]) for k in range(len(got) + 1))
    if not got:
        return False
    w = want[0]
    ok = got[0].startswith(w[:-3]) if w.endswith("...") else got[0] == w
    return ok and matches(want[1:], got[1:])


class Runbook:
    def __init__(self, binary):
        self.binary = binary
        self.tmp = tempfile.mkdtemp(prefix="ticketd-runbook-")
        self.ports = {}  # document port -> real port
        self.procs = {}  # node id -> Popen
        self.logs = {}

    def port(self, doc_port):
        if doc_port not in self.ports:
            self.ports[doc_port] = free_port()
        return self.ports[doc_port]

    def to_real(self, s):
        s = s.replace("/var/lib/ticketd", os.path.join(self.tmp, "data"))
        s = s.replace("/backup", os.path.join(self.tmp, "backup"))
        return re.sub(r"\b(1[12]00\d)\b", lambda m: str(self.port(int(m.group(1)))), s)

    def to_doc(self, s):
        for doc, real in self.ports.items():
            s = re.sub(r"\b%d\b" % real, str(doc), s)
        return s

    def run(self, cmd, want):
        argv = shlex.split(cmd)
        if argv[0] == "ticketd":
            return self.start(argv)
        if argv[0] == "kill":
            m = re.fullmatch(r"kill (-TERM|-9) <pid of node (\d+)>", cmd)
            check(m, "a kill names a node: %r" % cmd)
            return self.kill(int(m.group(2)), m.group(1))
        if argv[0] == "redis-cli":
            return self.redis_cli(cmd, want)
        if argv[0] in ("rm", "mkdir", "cp"):
            real = shlex.split(self.to_real(cmd))
            for a in real[1:]:
                check(a.startswith("-") or a.startswith(self.tmp), "%s stays in the test's directory: %s" % (argv[0], a))
            r = subprocess.run(real, capture_output=True, text=True)
            check(r.returncode == 0, "%s (%s)" % (cmd, r.stderr.strip()))
            return
        check(False, "the runbook's command is one this test runs: %r" % cmd)

    def start(self, argv):
        real = shlex.split(self.to_real(" ".join(shlex.quote(a) for a in argv)))
        real[0] = self.binary
        nid = int(real[real.index("--id") + 1])
        port = int(real[real.index("--saddr") + 1].rsplit(":", 1)[1])
        check(nid not in self.procs or self.procs[nid].poll() is not None, "node %d is not running yet" % nid)
        log = open(os.path.join(self.tmp, "node-%d.log" % nid), "ab")
        self.logs[nid] = log.name
        self.procs[nid] = subprocess.Popen(real + ["--threads", "1"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.procs[nid].poll() is not None:
                check(False, "node %d exited with %s:\n%s" % (nid, self.procs[nid].returncode, self.log(nid)))
            try:
                if Client(port, timeout=2).call("PING") == "PONG":
                    print("ok: started node %d" % nid, flush=True)
                    return
            except OSError:
                pass
            time.sleep(0.05)
        check(False, "node %d answers PING:\n%s" % (nid, self.log(nid)))

    def kill(self, nid, how):
        p = self.procs.get(nid)
        check(p is not None and p.poll() is None, "node %d runs before kill %s" % (nid, how))
        os.kill(p.pid, signal.SIGTERM if how == "-TERM" else signal.SIGKILL)
        try:
            rc = p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = None
        if how == "-TERM":
            check(rc == 0, "node %d stops on SIGTERM with status 0 (%s)" % (nid, rc))
        else:
            print("ok: node %d killed" % nid, flush=True)

    def redis_cli(self, cmd, want):
        argv = shlex.split(self.to_real(cmd))
        argv = [argv[0], "--no-raw"] + argv[1:]
        verb = argv[argv.index("-p") + 2].upper()
        deadline = time.time() + WAIT_S
        while True:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            got = [self.to_doc(l.rstrip("\r")) for l in r.stdout.splitlines()]
            if want and matches(want, got):
                break
            if not want and r.returncode == 0 and not any(l.startswith("(error)") for l in got):
                break
            again = verb in READS or any("in progress" in l for l in got)
            if not again or time.time() > deadline:  # a wrong reply fails here
                print("  got:\n    " + "\n    ".join(got) + "\n  want:\n    " + "\n    ".join(want))
                check(False, "%s answers as the runbook says" % cmd)
            time.sleep(0.2)
        print("ok: %s" % cmd, flush=True)

    def log(self, nid, tail=3000):
        try:
            with open(self.logs[nid], "rb") as f:
                text = f.read().decode(errors="replace")
                return text[-tail:] if tail else text
        except (OSError, KeyError):
            return ""

    def cleanup(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def main(args):
    if shutil.which("redis-cli") is None:
        print("SKIP: redis-cli is not installed (tools/install-deps.sh installs redis-tools)")
        return
    with open(DOC) as f:
        text = f.read()
    bs = blocks(text)
    headings = [h for h, _ in bs]
    for h in ("Start a cluster", "Add a node", "Remove a node", "Replace a node", "Back up",
              "Recover from a lost majority", "Upgrade"):
        check(h in headings, "the runbook has a procedure: %s" % h)
    check("## Monitor" in text, "the runbook has a Monitor section")
    # The reply matcher itself: a wrong reply must not pass.
    check(matches(["OK"], ["OK"]) and not matches(["OK"], ["(error) ERR x"]) and
          matches(["a", "...", "c"], ["a", "b", "b", "c"]) and not matches(["a", "..."], ["b"]) and
          matches(["5) ..."], ["5) (integer) 7"]) and not matches(["x"], ["x", "y"]),
          "the reply matcher tells a wrong reply from a right one")
    print("%d procedures, %d commands" % (len(bs), sum(len(c) for _, c in bs)), flush=True)
    rb = Runbook(args.binary)
    try:
        for heading, cmds in bs:
            print("== %s" % heading, flush=True)
            for cmd, want in cmds:
                rb.run(cmd, want)
        recovered = rb.log(2, tail=0)
        check("--force-new-cluster: this node is now the only voter" in recovered,
              "the survivor's log says what --force-new-cluster did")
    except SystemExit:
        for nid in sorted(rb.logs):
            sys.stdout.write("--- node %d log tail:\n%s\n" % (nid, rb.log(nid)[-1500:]))
        raise
    finally:
        rb.cleanup()


run_main(main)
