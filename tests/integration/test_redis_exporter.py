"""Debian's prometheus-redis-exporter (1.45) against a 3-node cluster, unmodified: what it
sends (INFO ALL, CONFIG GET, CLIENT SETNAME, CLUSTER INFO, SLOWLOG, LATENCY) gets an answer
or a proper -ERR, and its /metrics carries ticketd's commandstats, errorstats and
latencystats as its usual series.

Checks: redis_up 1 and no scrape error for the leader and a follower (through the
exporter's multi-target /scrape endpoint); redis_commands_total{cmd="ticket"} counts the
TICKETs sent; redis_latency_percentiles_usec{cmd="ticket"} has p50 <= p99 <= p99.9, above 0;
a follower's -MOVED replies appear as redis_commands_rejected_calls_total{cmd="ticket"} and
redis_errors_total{err="MOVED"}; the exporter logs no error but the one it logs once for
LATENCY LATEST (ticketd has no latency monitor: it answers Redis's unknown-command error)."""

import os
import re
import shutil
import subprocess
import time
import urllib.request

from harness import Client, Cluster, check, free_port, run_main, wait_for

EXPORTER = "prometheus-redis-exporter"


def scrape(port, target):
    url = "http://127.0.0.1:%d/scrape?target=redis://127.0.0.1:%d" % (port, target)
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def samples(text):
    """{(name, frozenset(labels)): value} of an exposition."""
    out = {}
    bad = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$', line)
        if m is None:
            bad.append(line)
            continue
        labels = frozenset(re.findall(r'([a-zA-Z_]+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    check(bad == [], "every exposition line is one the format allows (%r)" % bad[:3])
    return out


def get(s, name, **labels):
    return s.get((name, frozenset(labels.items())))


def main(args):
    exe = shutil.which(EXPORTER)
    check(exe is not None, "%s is installed (tools/install-deps.sh)" % EXPORTER)
    cl = Cluster(args.binary, n=3).start()
    exp = None
    try:
        leader = cl.leader()
        follower = next(n for n in cl.nodes.values() if n is not leader)
        lc = leader.client()
        lc.call("CONFIG", "RESETSTAT")
        lc.tickets(40)
        for _ in range(10):
            lc.call("TICKET")
        fc = follower.client()
        fc.call("CONFIG", "RESETSTAT")
        fc.send_raw(Client.encode("TICKET") * 3)
        moved = [fc.read_reply() for _ in range(3)]
        check(all(str(r).startswith("MOVED") for r in moved), "the follower answers -MOVED")

        port = free_port()
        log_path = os.path.join(cl.dir, "exporter.log")
        logf = open(log_path, "wb")
        # No default target: only the /scrape?target= endpoint is used.
        exp = subprocess.Popen([exe, "-web.listen-address", "127.0.0.1:%d" % port,
                                "-redis.addr", ""], stdout=logf, stderr=subprocess.STDOUT)
        check(wait_for(lambda: urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=2)
                       .status == 200, 10), "the exporter serves")
        # The first scrape sees the exporter's own errors (SLOWLOG, LATENCY) only after it
        # read INFO; the second one counts them too.
        scrape(port, leader.port)
        s = samples(scrape(port, leader.port))
        check(get(s, "redis_up") == 1, "redis_up 1 for the leader")
        check(get(s, "redis_exporter_last_scrape_error", err="") == 0,
              "no scrape error (redis_exporter_last_scrape_error)")
        calls = get(s, "redis_commands_total", cmd="ticket")
        check(calls == 50, "redis_commands_total{cmd=\"ticket\"} is 50 (%r)" % calls)
        p50 = get(s, "redis_latency_percentiles_usec", cmd="ticket", quantile="50")
        p99 = get(s, "redis_latency_percentiles_usec", cmd="ticket", quantile="99")
        p999 = get(s, "redis_latency_percentiles_usec", cmd="ticket", quantile="99.9")
        check(p50 is not None and 0 < p50 <= p99 <= p999,
              "redis_latency_percentiles_usec{cmd=\"ticket\"}: %r %r %r" % (p50, p99, p999))
        dur = get(s, "redis_commands_duration_seconds_total", cmd="ticket")
        check(dur is not None and dur > 0, "redis_commands_duration_seconds_total{cmd=\"ticket\"}")
        check(get(s, "redis_errors_total", err="ERR") is not None,
              "redis_errors_total{err=\"ERR\"} (the exporter's SLOWLOG / LATENCY calls)")
        check(get(s, "redis_cluster_enabled") == 1 and get(s, "redis_cluster_state") == 1,
              "CLUSTER INFO read: redis_cluster_enabled 1, redis_cluster_state 1")
        check(get(s, "redis_config_maxclients") == 20000, "CONFIG GET read: redis_config_maxclients")
        check(get(s, "redis_connected_slaves") == 2, "INFO replication read: 2 connected replicas")

        s = samples(scrape(port, follower.port))
        check(get(s, "redis_up") == 1, "redis_up 1 for the follower")
        check(get(s, "redis_commands_rejected_calls_total", cmd="ticket") == 3,
              "the follower's -MOVED TICKETs are redis_commands_rejected_calls_total{cmd=\"ticket\"}")
        check(get(s, "redis_errors_total", err="MOVED") == 3, "redis_errors_total{err=\"MOVED\"} 3")
        lc.close()
        fc.close()

        time.sleep(0.2)
        with open(log_path, "rb") as f:
            log = f.read().decode(errors="replace")
        errors = [line for line in log.splitlines() if "level=error" in line]
        unexpected = [line for line in errors if "cmd LATENCY LATEST" not in line]
        check(unexpected == [], "the exporter logs no error but LATENCY LATEST's: %r" % unexpected)
        check(len(errors) <= 1, "LATENCY LATEST's warning is logged once (%d)" % len(errors))
    finally:
        if exp is not None and exp.poll() is None:
            exp.terminate()
            exp.wait(timeout=10)
        cl.cleanup()


if __name__ == "__main__":
    run_main(main)
