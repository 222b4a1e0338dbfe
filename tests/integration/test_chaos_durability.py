"""tools/chaos at --durability medium and low: short runs of kill -9 and SIGSTOP under load
on a 3-node cluster (test_chaos.py runs every nemesis at high). medium must lose nothing (a
killed process loses nothing it wrote); at low a ticket handed out again after a node died
counts as a low_loss when it was first acknowledged inside the window before the death (the
checker reports it, README says so), anything else fails. Before, medium aborted within a
second of load (check failed: !sync_outstanding_). Where the tool cannot run it prints SKIP."""

import argparse
import os
import shutil
import sys
import tempfile

from test_chaos import run

# (level, seed, seconds, nemeses): fixed seeds, so a failure replays.
LEVELS = [("medium", 3, 20, "kill,pause"), ("low", 5, 20, "kill,pause")]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--build", required=True)
    args = p.parse_args()
    tool = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "chaos")
    out_dir = tempfile.mkdtemp(prefix="ticketd-chaos-durability-")
    for level, seed, seconds, nemeses in LEVELS:
        r = run([sys.executable, tool, "--binary", args.binary, "--durability", level,
                 "--seed", str(seed), "--seconds", str(seconds), "--nemeses", nemeses,
                 "--json", os.path.join(out_dir, "chaos-%s.json" % level), "--deadline", "120"],
                out_dir, 135)
        if r == 77:
            break
        if r != 0:
            return 1
    shutil.rmtree(out_dir, ignore_errors=True)
    print("PASS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
