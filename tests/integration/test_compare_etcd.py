"""tools/compare --etcd, in its smallest shape: Redis (the reference rows) and a 3-node etcd
cluster (Debian's etcd-server), no ticketd, 1 and 4 connections x pipeline 1 and 16, half a
second per cell, no open loop. Well under 30 s.

Checks: compare exits 0; the etcd-3 rows at pipeline 1 have positive ticket-bench req/s
(ticket-bench --etcd found every revision unique and increasing per connection, else the
row says CHECK FAILED) and a ratio vs redis-always; its pipeline 16 cells say n/a; the JSON
has the same figures; no etcd process outlives the run. Skipped (saying so) when etcd is not
installed (tools/install-deps.sh installs it)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from harness import check, run_main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def etcd_pids():
    """PIDs of etcd processes whose data dir lies in compare's temp dirs (ours only)."""
    pids = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"etcd" and any(b"compare-etcd-3-" in a for a in argv):
            pids.add(int(d))
    return pids


def main(args):
    if shutil.which("etcd") is None:
        print("skip: etcd is not installed (apt-get install etcd-server, or tools/install-deps.sh): "
              "tools/compare --etcd is not tested here", flush=True)
        return
    bench = os.path.join(args.build, "ticket-bench")
    check(os.access(bench, os.X_OK), "ticket-bench is built at %s" % bench)
    before = etcd_pids()
    with tempfile.TemporaryDirectory(prefix="test-compare-etcd-") as tmp:
        jpath = os.path.join(tmp, "r.json")
        argv = [sys.executable, os.path.join(REPO, "tools", "compare"), "--quick", "--etcd",
                "--no-ticketd", "--no-open-loop", "--connections", "1,4", "--pipelines", "1,16",
                "--seconds", "0.5", "--warmup", "0.1", "--ticket-bench", bench, "--json", jpath]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        check(proc.returncode == 0, "tools/compare --quick --etcd --no-ticketd exits 0 (%d): %s" % (
            proc.returncode, proc.stderr[-1500:]))
        rows = {}
        for line in proc.stdout.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 11 and cells[0].startswith("etcd-3"):
                rows[(int(cells[1]), int(cells[2]))] = cells
        complete = set(rows) == {(1, 1), (1, 16), (4, 1), (4, 16)}
        check(complete, "the table has the four etcd-3 cells" + (
            "" if complete else ": " + proc.stdout[-2000:]))
        for c in (1, 4):
            cells = rows[(c, 1)]
            check(cells[0] == "etcd-3", "etcd-3 at %d connections: no CHECK FAILED, no error "
                  "replies (%s)" % (c, cells[0]))
            check(cells[3].isdigit() and int(cells[3]) > 0,
                  "etcd-3 at %d connections, pipeline 1: positive req/s (%s)" % (c, cells[3]))
            check(float(cells[10]) > 0, "etcd-3 at %d connections: a ratio vs redis-always (%s)"
                  % (c, cells[10]))
            check(rows[(c, 16)][3] == "n/a" and rows[(c, 16)][7] == "n/a",
                  "etcd-3 at %d connections, pipeline 16: n/a (no pipelining over HTTP/1.1)" % c)
        with open(jpath) as f:
            res = json.load(f)
        tb = [r["ticket_bench"] for r in res["results"]
              if r["server"] == "etcd-3" and r["pipeline"] == 1]
        check(len(tb) == 2 and all(r.get("throughput_rps", 0) > 0 and r.get("violations") == 0
                                   and r["config"]["check"] and r["replies"] > 0 for r in tb),
              "the JSON: etcd-3's revisions were checked, none out of order or repeated")
    leaked = etcd_pids() - before
    check(not leaked, "no etcd process outlives tools/compare (%s)" % sorted(leaked))


if __name__ == "__main__":
    run_main(main)
