"""Command-line behaviour: --help and --version exit 0; every bad flag value prints what is
wrong and exits 2; a port already in use, or an address this machine does not have, is a
clear start-up error, not a crash."""

import errno
import os
import shutil
import socket
import subprocess
import tempfile

from harness import Node, check, free_port, run_main


def run(binary, *a):
    return subprocess.run([binary] + list(a), capture_output=True, text=True, timeout=20)


def main(args):
    b = args.binary
    r = run(b, "--help")
    check(r.returncode == 0 and "--durability" in r.stdout and "--join" in r.stdout,
          "--help lists the flags")
    r = run(b, "--version")
    check(r.returncode == 0 and "ticketd" in r.stdout, "--version")
    bad = [
        ["--durability", "extreme"],
        ["--id", "0"],
        ["--id", "abc"],
        ["--threads", "0"],
        ["--saddr", "nonsense:"],
        ["--saddr", "127.0.0.1:99999"],
        ["--raddr", ":x"],
        ["--no-such-flag"],
        ["--dir", ""],
        ["--join", "bad:port:"],
    ]
    for a in bad:
        r = run(b, *a)
        check(r.returncode == 2 and (r.stderr.strip() or r.stdout.strip()),
              "bad flags %s exit 2 with a message (%d: %s)"
              % (a, r.returncode, (r.stderr or r.stdout).strip().splitlines()[:1]))
    # An address this machine does not have: said as such (it said "a server is already
    # listening there" when a proxy answered the probe), before the data directory is made.
    foreign = None
    for addr in ("203.0.113.77", "198.51.100.77", "10.254.253.252"):
        s = socket.socket()
        try:
            s.bind((addr, 0))
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                foreign = addr
                break
        finally:
            s.close()
    check(foreign is not None, "found an address this machine does not have")
    d = tempfile.mkdtemp(prefix="ticketd-cli-")
    try:
        r = run(b, "--id", "1", "--saddr", "%s:%d" % (foreign, free_port()), "--raddr",
                "127.0.0.1:%d" % free_port(), "--dir", d)
        msg = r.stderr.strip()
        check(r.returncode == 1 and "not an address of this machine" in msg and
              "already listening" not in msg, "a foreign --saddr says so: %s" % msg)
        check(not os.path.exists(os.path.join(d, "1")), "and writes no data directory")
        r = run(b, "--id", "1", "--saddr", "127.0.0.1:%d" % free_port(), "--raddr",
                "%s:%d" % (foreign, free_port()), "--dir", d)
        msg = r.stderr.strip()
        check(r.returncode == 1 and "raft address" in msg and "not an address of this machine" in msg
              and not os.path.exists(os.path.join(d, "1")),
              "so does a foreign --raddr, before bootstrapping: %s" % msg)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    # A port in use: a clear error and a non-zero exit.
    n = Node(b).start()
    try:
        other = Node(b, port=n.port, node_id=2)
        other.start(wait=False)
        rc = other.proc.wait(timeout=20)
        check(rc not in (0, None) and "cannot listen" in other.log(),
              "a taken port gives a clear error (exit %s)" % rc)
        other.cleanup()
    finally:
        n.cleanup()


run_main(main)
