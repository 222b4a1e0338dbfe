"""tools/chaos with window sequences (issue 15): a short run (about 35 s) of kill -9, SIGSTOP
pauses longer than the election timeout and partitions of the leader from its peers, on a
3-node cluster at --durability high, with `default` in window mode (--default-mode window),
two named window sequences (TICKET.CREATE chaos-wK MODE window WINDOW 50) and one dense one,
TICKET and TICKET.BLOCK on each. Passes when the checker passes (no ticket twice, real-time
order, per sequence; gaps allowed), window and dense tickets were both acknowledged, and
every leader that was paused was replaced by another while it slept (the window-mode danger:
a deposed leader waking up with a window in memory). test_chaos.py covers every nemesis with
one window sequence. Where the tool cannot run it prints SKIP and exits 0."""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from test_chaos import run

# Seed 19's 18 s schedule: 7 faults, three of them SIGSTOPs of the leader, a kill -9 of the
# leader and a partition of the leader (checked below with --dry-run).
SEED = 19
SECONDS = 18
NEMESES = "kill,pause,partition-leader"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--build", default=None, help="unused (ctest passes it)")
    args = p.parse_args()
    tool = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "chaos")
    out_dir = tempfile.mkdtemp(prefix="ticketd-chaos-window-")
    json_path = os.path.join(out_dir, "chaos.json")
    cmd = [sys.executable, tool, "--binary", args.binary, "--seed", str(SEED),
           "--seconds", str(SECONDS), "--nemeses", NEMESES, "--sequences", "1",
           "--window-sequences", "2", "--window-size", "50", "--default-mode", "window",
           "--recovery", "5", "--json", json_path, "--deadline", "100"]
    plan = subprocess.run(cmd[:-4] + ["--dry-run"], stdout=subprocess.PIPE, text=True,
                          timeout=60)
    lines = [l for l in plan.stdout.splitlines() if l.startswith("  plan ")]
    paused = [l for l in lines if " pause " in l and "target=leader" in l]
    killed = [l for l in lines if " kill " in l and "target=leader" in l]
    cut = [l for l in lines if " partition-leader " in l]
    if plan.returncode != 0 or not paused or not killed or not cut:
        print("FAIL: seed %d's schedule lacks a leader pause, kill or partition:\n%s" % (
            SEED, plan.stdout), flush=True)
        return 1
    print("ok: seed %d: %d faults, %d leader pauses, %d leader kills, %d leader partitions" % (
        SEED, len(lines), len(paused), len(killed), len(cut)), flush=True)
    r = run(cmd, out_dir, 120)
    if r == 77:
        shutil.rmtree(out_dir, ignore_errors=True)
        return 0
    if r != 0:
        return 1
    with open(json_path) as f:
        res = json.load(f)
    pm = res["per_mode"]
    problems = []
    if res["dup"] or res["order_violations"]:
        problems.append("dup=%d order_violations=%d" % (res["dup"], res["order_violations"]))
    if pm["window"]["dup"] or pm["window"]["order_violations"]:
        problems.append("window: %r" % pm["window"])
    if pm["window"]["sequences"] != 3 or pm["window"]["acked"] < 100:
        problems.append("window tickets: want 3 window sequences (default, chaos-w1, chaos-w2) "
                        "with acknowledged tickets, got %r" % pm["window"])
    if pm["window"]["blocks"] == 0:
        problems.append("no TICKET.BLOCK of a window sequence was acknowledged")
    if pm["dense"]["sequences"] != 1 or pm["dense"]["acked"] < 100:
        problems.append("dense tickets: want chaos-1 acknowledged, got %r" % pm["dense"])
    if res["paused_leaders"] < 1 or res["paused_leaders_superseded"] != res["paused_leaders"]:
        problems.append("paused leaders %d, replaced while paused %d: the run did not pause a "
                        "leader long enough for another to take over" % (
                            res["paused_leaders"], res["paused_leaders_superseded"]))
    if res["leader_changes"] < 2:
        problems.append("leader_changes=%d" % res["leader_changes"])
    if problems:
        print("FAIL: " + "; ".join(problems) + "; results in " + out_dir, flush=True)
        return 1
    print("ok: window acked=%d tickets=%d blocks=%d skipped=%d; dense acked=%d; "
          "leader_changes=%d; paused leaders replaced while paused %d/%d" % (
              pm["window"]["acked"], pm["window"]["tickets"], pm["window"]["blocks"],
              pm["window"]["skipped"], pm["dense"]["acked"], res["leader_changes"],
              res["paused_leaders_superseded"], res["paused_leaders"]), flush=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    print("PASS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
