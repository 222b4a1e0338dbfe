"""Command-line behaviour: --help and --version exit 0; every bad flag value prints what is
wrong and exits 2; a port already in use is a clear start-up error, not a crash."""

import subprocess

from harness import Node, check, run_main


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
