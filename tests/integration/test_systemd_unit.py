"""deploy/ticketd.service and deploy/ticketd.conf.

- systemd-analyze verify accepts the unit (ExecStart pointed at this build), when systemd's
  tools are installed (else: skipped, saying so).
- Its SystemCallFilter, expanded by systemd-analyze syscall-filter, allows io_uring_setup,
  io_uring_enter and io_uring_register; the hardening options the README names are there.
- Every system call a node makes (started from the sample config, serving clients, a
  snapshot, SIGTERM), traced with strace, is allowed by that filter, and every socket family
  it opens by RestrictAddressFamilies (release build only: the sanitizers add calls of their
  own; skipped when strace is missing).
- The sample config file starts a node (its credential paths replaced on the command line,
  which wins over the file)."""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import urllib.request

from harness import Client, Node, check, free_port, run_main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(ROOT, "deploy", "ticketd.service")
CONF = os.path.join(ROOT, "deploy", "ticketd.conf")
QUICK = bool(os.environ.get("TICKETD_TEST_QUICK"))
PASSWORD = "unit-test-pw-0123456789"


def unit_values(key):
    vals = []
    with open(UNIT) as f:
        for line in f:
            line = line.strip()
            if line.startswith(key + "="):
                vals.append(line[len(key) + 1:])
    return vals


def syscall_groups():
    """{"@group": [members]} as systemd-analyze syscall-filter lists them."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True,
                         timeout=30).stdout
    groups, cur = {}, None
    for line in out.splitlines():
        if line.startswith("@"):
            cur = groups.setdefault(line.strip(), [])
        elif cur is not None and line.strip() and not line.strip().startswith("#"):
            cur.append(line.strip())
    return groups


def expand(name, groups, seen=None):
    """The system calls of a group (@name) or a single call, as systemd expands them."""
    if not name.startswith("@"):
        return {name}
    seen = seen if seen is not None else set()
    if name in seen:
        return set()
    seen.add(name)
    calls = set()
    for w in groups.get(name, []):
        calls |= expand(w, groups, seen)
    return calls


def allowed_syscalls():
    groups = syscall_groups()
    allowed = None
    for v in unit_values("SystemCallFilter"):
        deny = v.startswith("~")
        names = set()
        for w in v.lstrip("~").split():
            names |= expand(w, groups)
        if deny:
            allowed = (allowed if allowed is not None else set()) - names
        else:
            allowed = names if allowed is None else allowed | names
    return allowed


class ConfNode(Node):
    """A node from the sample config; addresses, dir and secret files from the command line."""

    def __init__(self, binary, tmp, pwfile, secretfile, prefix=(), more=()):
        super().__init__(binary, dir=tmp, auth=PASSWORD)
        self.prefix = list(prefix)
        self.more = list(more)
        self.pwfile, self.secretfile = pwfile, secretfile

    def args(self):
        return self.prefix + [self.binary, "--config", CONF, "--saddr", "127.0.0.1:%d" % self.port,
                              "--raddr", "127.0.0.1:%d" % self.rport, "--dir", self.dir,
                              "--threads", "2", "--requirepass-file", self.pwfile,
                              "--cluster-secret-file", self.secretfile] + self.more


def main(args):
    tmp = tempfile.mkdtemp(prefix="ticketd-unit-")
    try:
        pwfile = os.path.join(tmp, "requirepass")
        secretfile = os.path.join(tmp, "cluster.secret")
        for path, text in ((pwfile, PASSWORD), (secretfile, "s" * 32)):
            with open(path, "w") as f:
                f.write(text + "\n")
            os.chmod(path, 0o600)

        for key, want in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                          ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                          ("ProtectKernelTunables", "yes"), ("ProtectKernelModules", "yes"),
                          ("ProtectKernelLogs", "yes"), ("Restart", "on-failure"),
                          ("ReadWritePaths", "/var/lib/ticketd"), ("KillSignal", "SIGTERM"),
                          ("LimitNOFILE", "65536")):
            check(want in unit_values(key), "the unit sets %s=%s" % (key, want))
        check(unit_values("RestrictAddressFamilies") == ["AF_INET AF_INET6 AF_UNIX"],
              "the unit restricts address families to AF_INET AF_INET6 AF_UNIX")

        if shutil.which("systemd-analyze") is None:
            print("skip: systemd-analyze is not installed: the unit is not verified here")
        else:
            # verify: with ExecStart pointing at this build (it checks that the binary exists).
            unit = os.path.join(tmp, "ticketd.service")
            with open(UNIT) as f:
                text = f.read().replace("/usr/local/bin/ticketd", os.path.abspath(args.binary))
            with open(unit, "w") as f:
                f.write(text)
            p = subprocess.run(["systemd-analyze", "verify", "--man=no", unit], capture_output=True,
                               text=True, timeout=60)
            ours = [l for l in (p.stdout + p.stderr).splitlines() if "ticketd" in l]
            check(p.returncode == 0 and not ours,
                  "systemd-analyze verify accepts the unit (rc %d: %s)" % (p.returncode, ours[:5]))
            allowed = allowed_syscalls()
            for call in ("io_uring_setup", "io_uring_enter", "io_uring_register"):
                check(call in allowed, "SystemCallFilter allows %s" % call)

            if QUICK:
                print("skip: the strace check runs in the release build only (the sanitizers "
                      "make system calls of their own)")
            elif shutil.which("strace") is None:
                print("skip: strace is not installed: the system calls are not traced")
            else:
                trace = os.path.join(tmp, "trace")
                mport = free_port()  # the metrics thread's calls are traced too
                node = ConfNode(args.binary, tmp, pwfile, secretfile,
                                prefix=["strace", "-f", "-qq", "-e", "trace=all", "-e",
                                        "signal=none", "-o", trace],
                                more=["--metrics-addr", "127.0.0.1:%d" % mport])
                node.start(wait=False)
                node.wait_ready(timeout=30)
                c = node.client()
                check(c.call("TICKET") == "1", "a node under strace serves TICKET")
                c.tickets(200)
                c.call("TICKET.CREATE", "orders")
                c.call("RAFT.SNAPSHOT")
                c.call("INFO")
                c.call("CONFIG", "GET", "*")
                with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=20) as r:
                    check(r.status == 200 and b"ticketd_raft_term" in r.read(),
                          "... and serves --metrics-addr under strace")
                # SIGTERM to ticketd itself (strace's child); strace exits with its status.
                with open("/proc/%d/task/%d/children" % (node.proc.pid, node.proc.pid)) as f:
                    child = int(f.read().split()[0])
                os.kill(child, signal.SIGTERM)
                rc = node.proc.wait(timeout=30)
                check(rc == 0, "... and stops on SIGTERM with status 0 (%s; log:\n%s)" %
                      (rc, node.log()[-1000:]))
                used, families = set(), set()
                with open(trace, errors="replace") as f:
                    for line in f:
                        m = re.match(r"^\d+\s+([a-z0-9_]+)\(", line)
                        if m:
                            used.add(m.group(1))
                        m = re.match(r"^\d+\s+socket\((AF_[A-Z0-9]+)", line)
                        if m:
                            families.add(m.group(1))
                # strace itself runs the binary: its own execve is no call of ticketd's.
                outside = sorted(used - allowed - {"execve"})
                check(used and not outside, "every system call of the node is allowed by the "
                      "unit's SystemCallFilter (%d used; not allowed: %s)" % (len(used), outside))
                check(families <= {"AF_INET", "AF_INET6", "AF_UNIX"},
                      "every socket family it opens is allowed (%s)" % sorted(families))

        # The sample config starts a node (command-line flags win over its paths).
        if QUICK:
            print("skip under TICKETD_TEST_QUICK: a node from the sample config")
            return
        node = ConfNode(args.binary, os.path.join(tmp, "plain"), pwfile, secretfile)
        os.makedirs(node.dir, exist_ok=True)
        try:
            node.start()
            c = node.client()
            check(c.call("TICKET") == "1", "a node from deploy/ticketd.conf serves TICKET")
            r = c.call("CONFIG", "GET", "durability", "protected-mode", "loglevel")
            check(dict(zip(r[0::2], r[1::2])) == {"durability": "high", "protected-mode": "yes",
                                                  "loglevel": "notice"},
                  "... with the sample's settings (%r)" % r)
            check(node.terminate() == 0, "... and stops on SIGTERM")
        finally:
            node.kill9()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


run_main(main)
