"""A cluster whose nodes require a password: --join logs in on the member it joins (the
default user's password, or --join-user with --join-password-file / TICKETD_JOIN_PASSWORD),
a wrong password or a user without the membership category cannot join, and redis-cli -c -a
follows -MOVED to the leader with its password."""

import os
import subprocess

from harness import Cluster, check, run_main, wait_for


def main(args):
    cl = Cluster(args.binary, 2, threads=1, auth="cluster-pw")
    pwfile = os.path.join(cl.dir, "pw")
    acl = os.path.join(cl.dir, "users.acl")
    with open(pwfile, "w") as f:
        f.write("cluster-pw\n")
    with open(acl, "w") as f:
        f.write("user app on >app-pw +@application\nuser ops on >ops-pw +@operator\n")
    opsfile = os.path.join(cl.dir, "ops-pw")
    with open(opsfile, "w") as f:
        f.write("ops-pw")
    for p in (pwfile, acl, opsfile):
        os.chmod(p, 0o600)
    cl.extra = ["--requirepass-file", pwfile, "--aclfile", acl]
    for n in cl.nodes.values():
        n.extra = list(cl.extra)
    try:
        cl.start()
        check(len(cl.config()) == 2, "node 2 joined with the default user's password")

        def refused(i, what, extra=(), env=None):
            n = cl.add_node(i, start=False)
            n.extra += list(extra)
            n.env = env
            n.start()
            check(wait_for(lambda: what in n.log(), 5),
                  "node %d's join is refused: %s" % (i, what))
            check(len(cl.config(via=cl.nodes[1])) == 2, "... and it is not a member")
            n.kill9()

        refused(3, "login as the join user refused: -WRONGPASS",
                env={"TICKETD_JOIN_PASSWORD": "wrong"})
        refused(4, "NOPERM User app has no permissions to run the 'raft.join' command",
                extra=["--join-user", "app"], env={"TICKETD_JOIN_PASSWORD": "app-pw"})
        n = cl.add_node(5, start=False)
        n.extra += ["--join-user", "ops", "--join-password-file", opsfile]
        n.start()
        cl.wait_voters(3)
        check("ops-pw" not in n.log() and "cluster-pw" not in n.log(),
              "no password in the joining node's log")

        leader = cl.leader()
        follower = [m for m in cl.alive() if m is not leader][0]
        out = subprocess.run(["redis-cli", "-c", "-p", str(follower.port), "-a", "cluster-pw",
                              "--no-auth-warning", "TICKET"], capture_output=True, text=True,
                             timeout=20).stdout.strip()
        check(out.isdigit(), "redis-cli -c -a on a follower follows -MOVED (%r)" % out)
        out = subprocess.run(["redis-cli", "-c", "-p", str(follower.port), "--user", "app",
                              "--pass", "app-pw", "--no-auth-warning", "TICKET"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
        check(out.isdigit(), "redis-cli -c --user app on a follower (%r)" % out)
    finally:
        cl.cleanup()


if __name__ == "__main__":
    run_main(main)
