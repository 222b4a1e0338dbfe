"""Client libraries log in as their users do: redis-py (Debian's python3-redis) and ioredis
(tests/integration/node, installed by tools/install-deps.sh with npm ci), each with the
default user's password and with an ACL user of the application role: tickets are served,
an operator command is -NOPERM, a wrong or missing password is refused."""

import json
import os
import shutil
import subprocess
import tempfile

from harness import Node, check, run_main
from redis_py import python_with_redis

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")

REDIS_PY = r'''
import json, sys
import redis
port, pw, user, upw = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
out = {"version": redis.__version__}
def attempt(key, fn):
    try:
        out[key] = {"ok": fn()}
    except redis.exceptions.RedisError as e:
        out[key] = {"err": type(e).__name__ + ": " + str(e)}
d = redis.Redis(port=port, password=pw, decode_responses=True)
attempt("default_ticket", lambda: d.execute_command("TICKET"))
attempt("default_whoami", lambda: d.execute_command("ACL", "WHOAMI"))
a = redis.Redis(port=port, username=user, password=upw, decode_responses=True)
attempt("app_tickets", lambda: a.pipeline(transaction=False).execute_command("TICKET")
        .execute_command("TICKET").execute())
attempt("app_whoami", lambda: a.execute_command("ACL", "WHOAMI"))
attempt("app_snapshot", lambda: a.execute_command("RAFT.SNAPSHOT"))
attempt("wrong", lambda: redis.Redis(port=port, password="wrong").execute_command("TICKET"))
attempt("none", lambda: redis.Redis(port=port).execute_command("TICKET"))
print(json.dumps(out))
'''


def main(args):
    tmp = tempfile.mkdtemp(prefix="ticketd-authc-")
    acl = os.path.join(tmp, "users.acl")
    with open(acl, "w") as f:
        f.write("user app on >app-pw +@application\nuser ops on >ops-pw +@operator\n")
    node = Node(args.binary, extra=["--aclfile", acl, "--requirepass", "default-pw"],
                auth="default-pw").start()
    try:
        py = python_with_redis()
        check(py is not None, "a python3 with redis-py (tools/install-deps.sh: python3-redis)")
        p = subprocess.run([py, "-c", REDIS_PY, str(node.port), "default-pw", "app", "app-pw"],
                           capture_output=True, text=True, timeout=30)
        check(p.returncode == 0, "redis-py script ran (%s)" % p.stderr[-300:])
        r = json.loads(p.stdout)
        print("redis-py", r["version"])
        check(r["default_ticket"] == {"ok": "1"}, "redis-py, password: TICKET (%r)" % r["default_ticket"])
        check(r["default_whoami"] == {"ok": "default"}, "redis-py, password: logged in as default")
        check(r["app_tickets"] == {"ok": ["2", "3"]}, "redis-py, ACL user: pipelined TICKETs")
        check(r["app_whoami"] == {"ok": "app"}, "redis-py, ACL user: logged in as app")
        check(r["app_snapshot"]["err"].startswith("NoPermissionError: User app has no permissions"),
              "redis-py, ACL user: RAFT.SNAPSHOT is NoPermissionError (%r)" % r["app_snapshot"])
        # redis-py 4.3 maps no class to WRONGPASS (as against Redis 7): a ResponseError.
        check("WRONGPASS invalid username-password pair" in r["wrong"].get("err", ""),
              "redis-py, wrong password: WRONGPASS (%r)" % r["wrong"])
        check(r["none"]["err"].startswith("AuthenticationError: Authentication required"),
              "redis-py, no password: Authentication required (%r)" % r["none"])

        check(os.path.isdir(os.path.join(NODE_DIR, "node_modules", "ioredis")),
              "ioredis is installed (tools/install-deps.sh runs npm ci in tests/integration/node)")
        p = subprocess.run(["node", os.path.join(NODE_DIR, "auth_clients.js"), str(node.port),
                            "default-pw", "app", "app-pw"], capture_output=True, text=True,
                           timeout=30, cwd=NODE_DIR)
        check(p.returncode == 0, "ioredis script ran (%s)" % p.stderr[-300:])
        r = json.loads(p.stdout)
        check(r["default_connect"] == {"ok": "ready"} and r["default_ticket"] == {"ok": "4"},
              "ioredis, password: ready, TICKET (%r %r)" % (r["default_connect"], r["default_ticket"]))
        check(r["default_whoami"] == {"ok": "default"} and r["default_snapshot"] == {"ok": "OK"},
              "ioredis, password: default may RAFT.SNAPSHOT")
        check(r["app_connect"] == {"ok": "ready"} and r["app_tickets"] == {"ok": ["5", "6", "7"]},
              "ioredis, ACL user: ready, pipelined TICKETs (%r)" % r["app_tickets"])
        check(r["app_whoami"] == {"ok": "app"}, "ioredis, ACL user: logged in as app")
        for k, cmd in (("app_removeserver", "raft.removeserver"), ("app_snapshot", "raft.snapshot")):
            check(r[k] == {"err": "NOPERM User app has no permissions to run the '%s' command" % cmd},
                  "ioredis, ACL user: %s is NOPERM (%r)" % (cmd, r[k]))
        check("err" in r["wrong_connect"] and "WRONGPASS invalid username-password pair" in
              r["wrong_error"], "ioredis, wrong password: WRONGPASS, no connection (%r, %r)" %
              (r["wrong_connect"], r["wrong_error"]))
        # Its ready check (INFO) is refused first: the connection never gets ready.
        check("NOAUTH Authentication required." in r["none_ticket"].get("err", "") + r["none_error"],
              "ioredis, no password: NOAUTH (%r, %r)" % (r["none_ticket"], r["none_error"]))
        check("Skipping the ready check" not in p.stderr + p.stdout,
              "ioredis's ready check (INFO) passes for an application user")
    finally:
        node.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
