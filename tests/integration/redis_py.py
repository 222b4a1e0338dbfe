"""redis-py (Debian's python3-redis, installed by tools/install-deps.sh) for the tests that
drive ticketd with a real client library. Debian installs it for /usr/bin/python3; a python3
of another installation (pyenv) is pointed at that copy. Missing, it fails the test with a
clear message (never a skip: the test must run)."""

import subprocess
import sys


def import_redis():
    try:
        import redis  # noqa: F401
    except ImportError:
        sys.path.append("/usr/lib/python3/dist-packages")
        try:
            import redis  # noqa: F401
        except ImportError:
            print("FAIL: redis-py is missing: run tools/install-deps.sh (python3-redis)", flush=True)
            sys.exit(1)
    return redis


def python_with_redis():
    """A python3 that can import redis (this one, else Debian's), for scripts run as
    subprocesses; None if there is none."""
    for exe in (sys.executable, "/usr/bin/python3"):
        if exe and subprocess.run([exe, "-c", "import redis"], capture_output=True).returncode == 0:
            return exe
    return None
