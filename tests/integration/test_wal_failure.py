"""A WAL write that fails (EIO from the disk) stops the node at once: a clear log line and exit
status 3, so a supervisor restarts it and recovery decides what is on disk. Before, the node
logged "write failed; this node stops acknowledging until restarted" and went on: a leader
kept leading and handing out tickets its followers committed, and queued every Ready forever.

The failing disk is a small loop-mounted ext4 filesystem whose loop device is shrunk under the
running node (LOOP_SET_STATUS64 with a 1 MiB size limit): every later write past the first MiB
fails with EIO, as from a dying disk. The limit is lifted afterwards, the filesystem checked and
mounted again, and the node restarted: nothing it acknowledged is lost.

Single node and leader of 3. Needs root, mkfs.ext4, e2fsck; elsewhere it prints SKIP."""

import fcntl
import os
import shutil
import struct
import subprocess
import tempfile
import time

from harness import Client, Cluster, Node, check, run_main, wait_for  # noqa: F401 (re-exported)

EXIT_WAL_FAILED = 3
LOOP_SET_STATUS64, LOOP_GET_STATUS64 = 0x4C04, 0x4C05


def sh(*cmd):
    return subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=120)


def can_run():
    if os.geteuid() != 0:
        return "needs root to mount a loop disk"
    for tool in ("mkfs.ext4", "e2fsck", "mount", "umount"):
        if shutil.which(tool) is None:
            return "needs %s (tools/install-deps.sh)" % tool
    return None


class LoopDisk:
    """A small ext4 filesystem on a loop device, mounted at `mnt`."""

    def __init__(self, image, mnt, mib):
        self.image, self.mnt, self.mib = image, mnt, mib
        self.mounted = False

    def create(self):
        with open(self.image, "wb") as f:
            f.truncate(self.mib << 20)
        r = sh("mkfs.ext4", "-q", "-F", "-m", "0", self.image)
        check(r.returncode == 0, "mkfs.ext4: " + r.stdout.strip())
        os.makedirs(self.mnt, exist_ok=True)
        self.mount()
        return self

    def mount(self):
        r = sh("mount", "-o", "loop", self.image, self.mnt)
        check(r.returncode == 0, "mount the loop disk: " + r.stdout.strip())
        self.mounted = True

    def device(self):
        return sh("findmnt", "-n", "-o", "SOURCE", self.mnt).stdout.strip()

    def set_limit(self, limit):
        """Shrinks (or with 0 restores) what the loop device lets through; writes past the
        limit fail with EIO. The backing image keeps every byte."""
        fd = os.open(self.device(), os.O_RDONLY)
        try:
            info = bytearray(232)  # struct loop_info64
            fcntl.ioctl(fd, LOOP_GET_STATUS64, info)
            struct.pack_into("Q", info, 32, limit)  # lo_sizelimit
            fcntl.ioctl(fd, LOOP_SET_STATUS64, bytes(info))
        finally:
            os.close(fd)

    def umount(self):
        if self.mounted:
            if sh("umount", self.mnt).returncode != 0:
                sh("umount", "-l", self.mnt)
            self.mounted = False

    def repair(self):
        """After the failure: full size again, fsck (the journal was aborted), mount."""
        self.set_limit(0)
        self.umount()
        r = sh("e2fsck", "-f", "-y", self.image)
        check(r.returncode in (0, 1), "e2fsck repairs the disk (status %d)" % r.returncode)
        self.mount()


def pipeline_until_error(port, seconds):
    """TICKETs until the connection fails or `seconds` pass; returns (max acked, error)."""
    top, end = 0, time.time() + seconds
    try:
        c = Client(port, timeout=3)
        while time.time() < end:
            top = max(top, max(c.tickets(20)))
    except Exception as e:  # noqa: BLE001 - the node went away under us
        return top, e
    return top, None


def fail_the_disk(node, disk, name):
    """Load, then the disk fails: the node must exit 3 with the log line."""
    spare = os.path.join(node.dir, str(node.id), "wal", "wal.spare")
    check(wait_for(lambda: os.path.exists(spare), 10), "%s: its next WAL segment is ready" % name)
    top, _ = pipeline_until_error(node.port, 1.0)
    check(top > 0, "%s: serves tickets" % name)
    disk.set_limit(1 << 20)
    print("%s: the disk now fails every write past its first MiB" % name, flush=True)
    top2, err = pipeline_until_error(node.port, 15)
    try:
        status = node.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        status = None
    check(status == EXIT_WAL_FAILED, "%s: stops with exit status %d after the write error "
          "(got %s; before: it kept running)" % (name, EXIT_WAL_FAILED, status))
    log = node.log()
    check("wal: write failed" in log and "stopping now" in log,
          "%s: the log says the WAL write failed and the node stops" % name)
    check(err is not None, "%s: its clients see the connection end (%s)" % (name, err))
    return max(top, top2)


def single_node(binary):
    base = tempfile.mkdtemp(prefix="ticketd-walfail-")
    disk = LoopDisk(os.path.join(base, "disk.img"), os.path.join(base, "1"), 64)
    node = Node(binary, dir=base, threads=2)
    node.own_dir = False
    try:
        disk.create()
        node.start()
        top = fail_the_disk(node, disk, "single node")
        disk.repair()
        node.start()
        nxt = Client(node.port).tickets(1)[0]
        check(nxt > top, "single node: after recovery nothing acknowledged was lost (max acked "
              "%d, next %d)" % (top, nxt))
        check(node.terminate() == 0, "single node: stops cleanly")
    finally:
        node.kill9()
        disk.umount()
        shutil.rmtree(base, ignore_errors=True)


def leader_of_three(binary):
    cl = Cluster(binary, 3)
    disk = LoopDisk(os.path.join(cl.dir, "disk1.img"), os.path.join(cl.dir, "1"), 64)
    try:
        disk.create()
        cl.start()
        one = cl.nodes[1]
        leader = cl.leader()
        if leader is not one:
            check(Client(leader.port).call("RAFT.TRANSFERLEADER", "1") == "OK", "move leadership")
            check(wait_for(lambda: cl.leader(timeout=1) is one, 10), "node 1 leads")
        top = fail_the_disk(one, disk, "leader of 3")
        new = cl.leader(timeout=15)
        check(new is not None and new is not one, "another node leads")
        nxt = Client(new.port).tickets(5)
        check(nxt[0] > top, "leader of 3: no acknowledged ticket is handed out again (max acked "
              "%d by the failed leader, next %d)" % (top, nxt[0]))
        disk.repair()
        one.start()
        last = Client(new.port).tickets(5)[-1]
        check(wait_for(lambda: int(cl.stats(one)["last_ticket"]) >= last, 15),
              "node 1 recovers and catches up after a restart")
    finally:
        cl.cleanup()
        disk.umount()
        shutil.rmtree(cl.dir, ignore_errors=True)


def main(args):
    why = can_run()
    if why:
        print("SKIP: " + why)
        return
    single_node(args.binary)
    leader_of_three(args.binary)


if __name__ == "__main__":
    run_main(main)
