"""A follower whose disk is full when the leader sends it a snapshot must neither crash nor
acknowledge anything it could not store: it keeps retrying, and installs the snapshot and
catches up once space returns (found by tools/chaos: the follower aborted with "check
failed: st.is_ok() (write .../snapshot.tmp: No space left on device)").

Node 3's data directory is a small loop-mounted ext4 filesystem that the test fills. Needs
root (mount) and mkfs.ext4; elsewhere it prints SKIP and passes."""

import os
import shutil
import signal
import subprocess
import time

from harness import Client, Cluster, check, run_main, wait_for


def sh(*cmd):
    return subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=60)


def fill(path):
    """Takes every free block of the filesystem holding `path`; returns the filler's path."""
    filler = os.path.join(path, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        st = os.statvfs(path)
        want, done = st.f_bavail * st.f_frsize, 0
        while want >= 4096:
            try:
                os.posix_fallocate(fd, done, want)
                done += want
            except OSError:
                done = os.fstat(fd).st_size
                want //= 2
        block = b"\0" * 4096
        while True:
            try:
                os.write(fd, block)
            except OSError:
                break
    finally:
        os.close(fd)
    return filler


def main(args):
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        print("SKIP: needs root and mkfs.ext4 (tools/install-deps.sh) to mount a small disk")
        return
    cl = Cluster(args.binary, 3)
    mnt = os.path.join(cl.dir, "3")
    image = os.path.join(cl.dir, "disk3.img")
    mounted = False
    try:
        # 96 MiB: room for the node's two 16 MiB WAL segments and its snapshot, little more.
        with open(image, "wb") as f:
            f.truncate(96 << 20)
        r = sh("mkfs.ext4", "-q", "-F", "-m", "0", image)
        check(r.returncode == 0, "mkfs.ext4: " + r.stdout.strip())
        os.makedirs(mnt)
        r = sh("mount", "-o", "loop", image, mnt)
        check(r.returncode == 0, "mount the small disk: " + r.stdout.strip())
        mounted = True

        cl.start()
        lagger = cl.nodes[3]
        leader = cl.leader()
        if leader is lagger:
            check(Client(leader.port).call("RAFT.TRANSFERLEADER", "1") == "OK", "move leadership")
            check(wait_for(lambda: cl.leader(timeout=1) not in (None, lagger), 10),
                  "leadership left node 3")
            leader = cl.leader()
        c = Client(leader.port)
        c.tickets(100)
        check(wait_for(lambda: int(cl.stats(lagger)["last_ticket"]) >= 100, 10),
              "node 3 follows")

        # With its next WAL segment ready, the node has nothing of its own to free when the
        # disk fills (a spare it fails to create is deleted, which would give space back).
        spare = os.path.join(mnt, "wal", "wal.spare")
        check(wait_for(lambda: os.path.exists(spare), 10), "node 3's spare segment is ready")
        # Node 3 sleeps while the leader's log moves past a snapshot: it will need the snapshot.
        os.kill(lagger.proc.pid, signal.SIGSTOP)
        for _ in range(20):
            c.tickets(50)
        check(c.call("RAFT.SNAPSHOT") == "OK", "RAFT.SNAPSHOT on the leader")
        c.tickets(50)
        filler = fill(mnt)
        free_kib = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize >> 10
        print("node 3's disk filled: %d KiB left" % free_kib, flush=True)
        os.kill(lagger.proc.pid, signal.SIGCONT)

        # It cannot store the snapshot: it says so, keeps running, and is not caught up.
        said = lambda: "cannot save the installed snapshot" in lagger.log()
        wait_for(lambda: said() or lagger.proc.poll() is not None, 15)
        check(lagger.proc.poll() is None, "node 3 survives the failed snapshot save")
        check(said(), "node 3 reports that it cannot save the snapshot")
        top = c.tickets(20)[-1]
        time.sleep(1.5)  # several retries (one per tick)
        check(lagger.proc.poll() is None, "node 3 is still running with a full disk")
        check(int(cl.stats(lagger)["last_ticket"]) < top,
              "node 3 has not applied what it could not store")
        check(c.tickets(10)[0] > top, "the other two nodes keep serving")

        # Space returns: it installs the snapshot and catches up.
        os.unlink(filler)
        top = c.tickets(10)[-1]
        check(wait_for(lambda: int(cl.stats(lagger)["last_ticket"]) >= top, 15),
              "node 3 caught up once space returned")
        log = lagger.log()
        check("storage writable again" in log and "installed snapshot" in log,
              "node 3 says storage is writable again and installed the snapshot")
        check(lagger.proc.poll() is None, "node 3 never exited")
        check(lagger.terminate() == 0, "node 3 stops cleanly")
    finally:
        cl.cleanup()  # kills the nodes first (rmtree below the mount may fail: ignored)
        if mounted:
            if sh("umount", mnt).returncode != 0:
                sh("umount", "-l", mnt)
        shutil.rmtree(cl.dir, ignore_errors=True)


run_main(main)
