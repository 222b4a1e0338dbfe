"""A real Prometheus server (Debian's `prometheus`) scrapes the native /metrics endpoint
(--metrics-addr) of a 3-node cluster on 127.0.0.1, and is queried through its HTTP API.

Checks: every target is up (the exposition parses); exactly one node reports
ticketd_raft_role{role="leader"} 1, the one the cluster calls leader; the leader's
ticketd_raft_commit_index increases after TICKETs, and so do its commit-latency and
tickets-per-write histograms' counts; the leader sees both peers up with their replication lag;
the followers know the leader; after the leader is killed a new leader appears in the series
and ticketd_raft_leader_changes_seen_total rises on a survivor. Also: promtool (from the same
package) finds nothing to complain about in the exposition."""

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

from harness import Cluster, check, free_port, run_main, wait_for


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def query(prom, q):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (prom, urllib.parse.urlencode({"query": q}))
    r = json.loads(http_get(url))
    if r.get("status") != "success":
        raise ValueError("query %s failed: %r" % (q, r))
    # By instance; series with a peer label by (instance, peer).
    return {(s["metric"]["instance"], s["metric"]["peer"]) if "peer" in s["metric"]
            else s["metric"].get("instance"): float(s["value"][1]) for s in r["data"]["result"]}


def main(args):
    prom_bin = shutil.which("prometheus")
    promtool = shutil.which("promtool")
    check(prom_bin is not None and promtool is not None,
          "prometheus and promtool are installed (tools/install-deps.sh)")
    mports = {}
    cl = Cluster(args.binary, n=3)
    for i, node in cl.nodes.items():
        mports[i] = free_port()
        node.extra += ["--metrics-addr", "127.0.0.1:%d" % mports[i]]
    cl.start()
    prom = None
    try:
        inst = {i: "127.0.0.1:%d" % p for i, p in mports.items()}
        text = http_get("http://%s/metrics" % inst[1])
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
        check(r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "",
              "promtool check metrics accepts the exposition (%r %r)" % (r.stdout[:300], r.stderr[:300]))

        port = free_port()
        pdir = os.path.join(cl.dir, "prometheus")
        os.makedirs(pdir)
        conf = os.path.join(pdir, "prometheus.yml")
        rules = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy",
                             "ticketd-alerts.yml")
        r = subprocess.run([promtool, "check", "rules", rules], capture_output=True, text=True, timeout=30)
        check(r.returncode == 0, "promtool check rules deploy/ticketd-alerts.yml (%r)" % r.stdout[-300:])
        with open(conf, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n"
                    "  evaluation_interval: 1s\nrule_files: [\"%s\"]\n" % rules +
                    "scrape_configs:\n  - job_name: ticketd\n    static_configs:\n"
                    "      - targets: [%s]\n" % ", ".join('"%s"' % t for t in inst.values()))
        logf = open(os.path.join(pdir, "prometheus.log"), "wb")
        prom = subprocess.Popen([prom_bin, "--config.file=" + conf,
                                 "--storage.tsdb.path=" + os.path.join(pdir, "data"),
                                 "--web.listen-address=127.0.0.1:%d" % port],
                                stdout=logf, stderr=subprocess.STDOUT)
        check(wait_for(lambda: len(query(port, "up == 1")) == 3, 60),
              "Prometheus scrapes all three nodes (up == 1)")
        leader = cl.leader()
        lid = next(i for i, n in cl.nodes.items() if n is leader)
        roles = query(port, 'ticketd_raft_role{role="leader"} == 1')
        check(wait_for(lambda: set(query(port, 'ticketd_raft_role{role="leader"} == 1')) == {inst[lid]}, 15),
              "exactly one series says leader, the leader's (%s, saw %r)" % (inst[lid], roles))
        check(wait_for(lambda: query(port, 'ticketd_raft_has_leader')
                       == {t: 1.0 for t in inst.values()}, 15), "every node knows a leader")
        check(wait_for(lambda: len([k for k in query(port, 'ticketd_peer_up == 1') if k[0] == inst[lid]]) == 2, 15),
              "the leader's links to both peers are up")

        before = query(port, "ticketd_raft_commit_index")[inst[lid]]
        commits_before = query(port, "ticketd_commit_duration_seconds_count").get(inst[lid], 0)
        c = leader.client()
        for _ in range(20):
            c.tickets(50)
        c.close()
        check(wait_for(lambda: query(port, "ticketd_raft_commit_index")[inst[lid]] >= before + 10, 15),
              "the leader's commit index rises after TICKETs (from %d)" % before)
        check(wait_for(lambda: query(port, "ticketd_commit_duration_seconds_count")[inst[lid]]
                       >= commits_before + 10, 15), "the commit-latency histogram counts the entries")
        check(wait_for(lambda: query(port, "ticketd_tickets_per_log_write_sum")[inst[lid]] >= 1000, 15),
              "tickets per log write add up to the tickets sent")
        check(wait_for(lambda: query(port, "ticketd_tickets_issued_total")[inst[lid]] >= 1000, 15),
              "ticketd_tickets_issued_total counts them")
        p99 = query(port, "histogram_quantile(0.99, ticketd_commit_duration_seconds_bucket)")
        check(inst[lid] in p99 and p99[inst[lid]] > 0, "histogram_quantile over the commit buckets: %r" % p99)
        check(wait_for(lambda: {k[0] for k in query(port, "ticketd_peer_replication_lag_entries")} == {inst[lid]} and
                       len(query(port, "ticketd_peer_replication_lag_entries")) == 2, 15),
              "the leader, and only it, reports both peers' replication lag (%r)"
              % query(port, "ticketd_peer_replication_lag_entries"))
        check(wait_for(lambda: all(v == lid for i, v in query(port, "ticketd_raft_leader_id").items()), 15),
              "every node names the same leader id")

        def rules_ok():
            got = json.loads(http_get("http://127.0.0.1:%d/api/v1/rules" % port))
            rs = [r for g in got["data"]["groups"] for r in g["rules"]]
            return len(rs) >= 15 and all(r.get("health") == "ok" for r in rs)
        check(wait_for(rules_ok, 20), "Prometheus evaluates every alerting rule of deploy/ticketd-alerts.yml")
        got = json.loads(http_get("http://127.0.0.1:%d/api/v1/alerts" % port))
        firing = [a["labels"]["alertname"] for a in got["data"]["alerts"] if a["state"] == "firing"]
        check("TicketdNoLeader" not in firing and "TicketdMemberDown" not in firing,
              "a healthy cluster fires neither TicketdNoLeader nor TicketdMemberDown (%r)" % firing)

        # A failover shows in the series.
        survivors = [i for i in cl.nodes if i != lid]
        changes = query(port, "ticketd_raft_leader_changes_seen_total")
        leader.kill9()
        new = cl.leader_among([cl.nodes[i] for i in survivors], timeout=15)
        check(new is not None, "a new leader is elected")
        nid = next(i for i, n in cl.nodes.items() if n is new)
        check(wait_for(lambda: set(query(port, 'ticketd_raft_role{role="leader"} == 1')) == {inst[nid]}, 20),
              "the new leader's series says leader (the old target is down)")
        check(wait_for(lambda: query(port, "ticketd_raft_leader_changes_seen_total").get(inst[nid], 0)
                       > changes.get(inst[nid], 0), 15), "leader changes rise on the new leader")
        check(wait_for(lambda: query(port, 'up{instance="%s"}' % inst[lid]).get(inst[lid]) == 0, 15),
              "the killed node's target is down")
    finally:
        if prom is not None and prom.poll() is None:
            prom.terminate()
            try:
                prom.wait(timeout=15)
            except subprocess.TimeoutExpired:
                prom.kill()
        cl.cleanup()


if __name__ == "__main__":
    run_main(main)
