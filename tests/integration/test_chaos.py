"""A short Jepsen-style run of tools/chaos (about 2-3 minutes) against --binary with a fixed
seed: every nemesis (kill -9, SIGSTOP, partitions, one-way loss, packet loss, a full disk,
membership changes) on a 3-node cluster in network namespaces, at --durability high (the
other levels: test_chaos_durability.py), loading `default`, three dense named sequences and
one window sequence (the tool's defaults; test_chaos_window.py runs more of them). Passes
when the checker passes (no duplicate, no real-time order violation, served again within
10 s of the final heal, no crashed node) and window tickets were acknowledged.
Where the tool cannot run (not root, nft missing) it prints `SKIP: <why>` and exits 0; CI
runs as root with nftables installed."""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

# Seed 8's 120 s schedule holds every nemesis kind at least twice (checked below, so a
# change to the schedule generator cannot silently drop a kind from CI).
SEED = 8
SECONDS = 120


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--build", default=None, help="unused (ctest passes it)")
    args = p.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    tool = os.path.join(here, "..", "..", "tools", "chaos")
    out_dir = tempfile.mkdtemp(prefix="ticketd-chaos-test-")
    json_path = os.path.join(out_dir, "chaos.json")
    cmd = [sys.executable, tool, "--binary", args.binary, "--seed", str(SEED),
           "--seconds", str(SECONDS), "--json", json_path,
           "--svg", os.path.join(out_dir, "chaos.svg"), "--deadline", "280"]
    # The checker must catch a duplicate, a backwards ticket and a missing recovery.
    st = subprocess.run([sys.executable, tool, "--self-test"], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True, timeout=60)
    print(st.stdout, end="")
    if st.returncode != 0:
        print("FAIL: the checker's self-test failed", flush=True)
        return 1
    plan = subprocess.run(cmd[:-6] + ["--dry-run"], stdout=subprocess.PIPE, text=True,
                          timeout=60)
    kinds = {l.split()[2] for l in plan.stdout.splitlines() if l.startswith("  plan ")}
    first = plan.stdout.splitlines()[0] if plan.stdout else ""
    wanted = set(first.split("nemeses=")[-1].split(",")) if "nemeses=" in first else set()
    if plan.returncode != 0 or not wanted or kinds != wanted:
        print("FAIL: the schedule for seed %d misses nemeses: %s" % (SEED, sorted(wanted - kinds)))
        return 1
    print("ok: seed %d's schedule covers all %d nemeses" % (SEED, len(kinds)), flush=True)
    r = run(cmd, out_dir, 295)
    if r == 77:
        shutil.rmtree(out_dir, ignore_errors=True)
        return 0
    if r != 0:
        return 1
    with open(json_path) as f:
        pm = json.load(f)["per_mode"]
    if pm["window"]["acked"] == 0 or pm["dense"]["acked"] == 0:
        print("FAIL: want dense and window tickets acknowledged, got %r; results in %s" % (
            pm, out_dir), flush=True)
        return 1
    print("ok: acknowledged dense %d, window %d (skipped %d)" % (
        pm["dense"]["acked"], pm["window"]["acked"], pm["window"]["skipped"]), flush=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    print("PASS", flush=True)
    return 0


def run(cmd, out_dir, timeout):
    """One tools/chaos run; 0 on PASS, 77 when it cannot run here, else 1."""
    print("running:", " ".join(cmd), flush=True)
    # The tool bounds itself (--deadline); this timeout only guards against a hung child.
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout)
    lines = r.stdout.splitlines()
    if r.returncode == 77:
        why = next((l for l in lines if "cannot run" in l), "exit status 77")
        print("SKIP: " + why, flush=True)
        return 77
    # Everything but the plan lines: the fault log, the availability table, the summary.
    for l in lines:
        if not l.startswith("  plan "):
            print(l)
    summary = [l for l in lines if l.startswith("chaos: PASS") or l.startswith("chaos: FAIL")]
    if r.returncode != 0 or not summary or not summary[-1].startswith("chaos: PASS"):
        print("FAIL: tools/chaos exited %d; results in %s" % (r.returncode, out_dir), flush=True)
        return 1
    print(summary[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
