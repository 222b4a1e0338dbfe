"""Protected mode, as Redis has it: with no password for the default user a node accepts
clients only from loopback addresses; anyone else gets -DENIED (why, and how to fix it) and
the connection closes. `--protected-mode no`, or a password, opens it to the network.

The node runs inside a network namespace that this test creates, joined to the host by a
veth pair it also creates (10.215.k.0/30, a network it checks is unused), so the host is a
non-loopback client of the node; everything is removed at the end. Without the rights to
create namespaces the test prints SKIP."""

import os
import shutil
import socket
import subprocess
import tempfile
import time

from harness import Client, Node, check, free_port, run_main, wait_for

DENIED = ("DENIED ticketd is running in protected mode because protected mode is enabled and "
          "no password is set for the default user.")


def sh(*cmd, check_rc=True):
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=20)
    if check_rc and p.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), p.stderr.strip()))
    return p


class Namespace:
    """A network namespace and a veth pair to it; the host side is 10.215.k.1, the
    namespace side 10.215.k.2."""

    def __init__(self):
        tag = "%x" % (os.getpid() & 0xffff)
        self.ns = "tdpm" + tag
        self.host_if = "tdpm%sh" % tag
        self.ns_if = "tdpm%sn" % tag
        used = sh("ip", "-4", "-o", "addr").stdout
        self.net = next(("10.215.%d" % k for k in range(1, 250) if "10.215.%d." % k not in used),
                        None)
        if self.net is None:
            raise RuntimeError("no free 10.215.k.0/30 network")
        self.made = False

    def create(self):
        sh("ip", "netns", "add", self.ns)
        self.made = True
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        sh("ip", "link", "set", self.ns_if, "netns", self.ns)
        sh("ip", "addr", "add", self.net + ".1/30", "dev", self.host_if)
        sh("ip", "link", "set", self.host_if, "up")
        self.run("ip", "addr", "add", self.net + ".2/30", "dev", self.ns_if)
        self.run("ip", "link", "set", self.ns_if, "up")
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *cmd, check_rc=True):
        return sh("ip", "netns", "exec", self.ns, *cmd, check_rc=check_rc)

    def remove(self):
        sh("ip", "link", "del", self.host_if, check_rc=False)
        if self.made:
            sh("ip", "netns", "del", self.ns, check_rc=False)


def skip_reason():
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    if not shutil.which("ip"):
        return "needs iproute2"
    probe = "tdpmprobe%x" % (os.getpid() & 0xffff)
    p = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if p.returncode != 0:
        return "cannot create a network namespace (%s)" % p.stderr.strip()
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class NsNode(Node):
    """A ticketd inside the namespace, listening on every interface of the namespace (its own
    loopback and its end of the veth), nothing of the host's."""

    def __init__(self, binary, netns, dir, extra):
        super().__init__(binary, dir=dir, extra=extra, port=free_port(), rport=free_port())
        self.netns = netns
        self.own_dir = False

    def args(self):
        a = super().args()
        a[a.index("--saddr") + 1] = ":%d" % self.port
        return ["ip", "netns", "exec", self.netns.ns] + a

    def wait_ready(self, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("ticketd exited early; log:\n" + self.log())
            r = self.netns.run("redis-cli", "-p", str(self.port), "PING", check_rc=False).stdout
            if r.strip() in ("PONG", "NOAUTH Authentication required."):
                return
            time.sleep(0.05)
        raise RuntimeError("ticketd did not become ready; log:\n" + self.log())

    def inside(self, *cmd):
        """redis-cli run inside the namespace, over its loopback."""
        return self.netns.run("redis-cli", "-p", str(self.port), *cmd).stdout.strip()


def read_all(sock, timeout=5):
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def main(args):
    why = skip_reason()
    if why:
        print("SKIP: " + why)
        return
    netns = Namespace()
    tmp = tempfile.mkdtemp(prefix="ticketd-protected-")
    node = None
    try:
        netns.create()
        outside = netns.net + ".2"

        node = NsNode(args.binary, netns, tmp, []).start()
        check(node.inside("TICKET") == "1", "no password: a loopback client is served")
        s = socket.create_connection((outside, node.port), timeout=5)
        got = read_all(s)
        s.close()
        check(got.startswith("-" + DENIED) and got.endswith("\r\n") and
              "'--protected-mode no'" in got and "--requirepass-file" in got and
              got.count("\r\n") == 1,
              "a client from another address gets -DENIED, why and how to fix it (%r)" % got[:90])
        check(got.endswith("from the outside.\r\n"), "... the whole line, then the server closes")
        p = subprocess.run(["redis-cli", "-h", outside, "-p", str(node.port), "PING"],
                           capture_output=True, text=True, timeout=10)
        check("DENIED ticketd is running in protected mode" in p.stdout + p.stderr,
              "redis-cli from outside prints the DENIED error")
        # A client that sends first still gets the refusal (or a reset), never service.
        s = socket.create_connection((outside, node.port), timeout=5)
        s.sendall(Client.encode("TICKET"))
        got = read_all(s)
        s.close()
        check("+" not in got[:1] and (got == "" or got.startswith("-DENIED")),
              "a TICKET sent from outside is not served (%r)" % got[:40])
        info = node.inside("INFO", "stats")
        check("protected_mode_refused:3" in info, "INFO stats counts the refusals")
        check("protected_mode:1" in node.inside("INFO", "clients"), "INFO clients: protected_mode:1")
        node.terminate()

        node = NsNode(args.binary, netns, tmp, ["--protected-mode", "no"]).start()
        c = Client(node.port, host=outside)
        check(int(c.call("TICKET")) > 1, "--protected-mode no: a client from outside is served")
        c.close()
        # The start-up line comes right after the listeners open: wait for it (ASan is slow).
        check(wait_for(lambda: "--protected-mode no: any client" in node.log(), 5),
              "... and the log says so:\n" + node.log())
        node.terminate()

        node = NsNode(args.binary, netns, tmp, ["--requirepass", "pm-pw"]).start()
        c = Client(node.port, host=outside)
        check(str(c.call("TICKET")) == "NOAUTH Authentication required.",
              "with a password protected mode is off: outside clients must AUTH")
        check(c.call("AUTH", "pm-pw") == "OK" and int(c.call("TICKET")) > 1,
              "... and are served once logged in")
        c.close()
        node.terminate()
        node = None
    finally:
        if node:
            node.kill9()
        netns.remove()
        shutil.rmtree(tmp, ignore_errors=True)
    left = sh("ip", "netns", "list").stdout
    check(netns.ns not in left and netns.host_if not in sh("ip", "-o", "link").stdout,
          "the namespace and the veth pair are gone")


if __name__ == "__main__":
    run_main(main)
