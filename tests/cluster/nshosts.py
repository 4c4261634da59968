"""Hosts made on this machine for tests that cross a network: each host is its own network, PID,
mount and UTS namespace, with its own address, hostname, /tmp, /dev/shm and home (an overlay on
/root), and optionally an sshd.

The hosts sit on one bridge that lives in a network namespace of its own: nothing is added to
the machine's own network, and the addresses (198.18.0.0/24, the range set aside for network
tests) exist only inside these namespaces, so no packet can leave them. Killing a host's first
process ends every process of that host (the kernel empties its PID namespace), as pulling a
machine's plug would. Needs root, iproute2, util-linux and, for sshd, openssh-server.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SUBNET = "198.18.0"
SSHD = "/usr/sbin/sshd"


def missing_tools() -> str | None:
    """Why hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "unshare", "nsenter", SSHD, "ssh", "rsync", "ssh-keygen"):
        if not shutil.which(tool):
            return f"{tool} is not installed (apt-get install iproute2 openssh-server rsync)"
    probe = subprocess.run(["unshare", "--net", "--mount", "--pid", "--fork", "true"],
                           capture_output=True, text=True)
    if probe.returncode:
        return f"namespaces are not available: {probe.stderr.strip()}"
    return None


@dataclass
class Host:
    name: str
    ip: str
    folder: Path
    netns: str
    process: subprocess.Popen
    init_pid: int = 0

    def _enter(self) -> list[str]:
        return ["nsenter", "-t", str(self.init_pid), "--net", "--mount", "--uts", "--pid", "--"]

    def run(self, command: str, *, env: dict[str, str] | None = None, cwd: str | Path = "/",
            timeout: float = 300, check: bool = True, input: str | None = None,
            ) -> subprocess.CompletedProcess:
        """Run `command` with bash on this host, as root logged in there would (HOME=/root)."""
        full = self._enter() + ["bash", "-c", f"cd {shlex.quote(str(cwd))} && {command}"]
        result = subprocess.run(full, env=_env(env), capture_output=True, text=True,
                                timeout=timeout, input=input)
        if check and result.returncode:
            raise AssertionError(f"on {self.name}: `{command}` exited {result.returncode}\n"
                                 f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n"
                                 f"{result.stderr[-6000:]}")
        return result

    def start(self, command: str, log: Path, *, env: dict[str, str] | None = None,
              cwd: str | Path = "/") -> subprocess.Popen:
        """Start `command` on this host in the background, its input held open as a terminal
        left open would be; it ends with the host."""
        full = self._enter() + ["bash", "-c", f"cd {shlex.quote(str(cwd))} && exec {command}"]
        return subprocess.Popen(full, env=_env(env), stdin=subprocess.PIPE, stdout=log.open("w"),
                                stderr=subprocess.STDOUT, start_new_session=True)

    def write(self, path: str, text: str, mode: str = "600") -> None:
        """Write a file on this host (in its home, say), parents made."""
        self.run(f"install -D -m {mode} /dev/stdin {path}", input=text)

    def processes(self) -> list[str]:
        """The command lines of every process on this host but its init and sshd."""
        out = self.run("for p in /proc/[0-9]*; do [ \"${p#/proc/}\" = 1 ] && continue; "
                       "tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done", check=False).stdout
        return [line.strip() for line in out.splitlines()
                if line.strip() and not line.startswith((SSHD, f"sshd: {SSHD}", "sleep infinity",
                                                         "bash -c cd /", "for p in", "tr "))]

    def kill(self) -> None:
        """Pull the plug: every process of the host ends at once."""
        if self.init_pid and self.process.poll() is None:
            os.kill(self.init_pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    # This interpreter's environment first: `ray`, `python` and `mlflow` as the laptop has them.
    env.update(HOME="/root", PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
               **(extra or {}))
    return env


_INIT = r"""
set -euo pipefail
hostname {name}
mount -t tmpfs tmpfs {mnt}
mkdir -p {mnt}/root/u {mnt}/root/w {mnt}/tmp/u {mnt}/tmp/w
# Home and /tmp read through to the machine's (the interpreter, the project) and write to the
# host's own layer.
mount -t overlay overlay -o lowerdir=/root,upperdir={mnt}/root/u,workdir={mnt}/root/w /root
mount -t overlay overlay -o lowerdir=/tmp,upperdir={mnt}/tmp/u,workdir={mnt}/tmp/w /tmp
mount -t tmpfs tmpfs /dev/shm
ip link set lo up
{sshd}
touch {folder}/ready
while true; do sleep infinity & wait $! || true; done
"""


class Network:
    """A bridge and the hosts on it; `close()` ends every host and removes every namespace."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.tag = f"sr{os.getpid() % 100000}"
        self.bridge = f"{self.tag}-br"
        self.hosts: dict[str, Host] = {}
        self.key = folder / "id_ed25519"
        _sh(f"ip netns add {self.bridge}")
        _sh(f"ip -n {self.bridge} link add br0 type bridge && ip -n {self.bridge} link set br0 up")
        _sh(f"ssh-keygen -q -t ed25519 -N '' -f {self.key} -C searcher-test")
        _sh(f"ssh-keygen -q -t ed25519 -N '' -f {folder}/ssh_host_key -C host")
        shutil.copy(f"{self.key}.pub", folder / "authorized_keys")
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation folder

    def add(self, name: str, sshd: bool = True) -> Host:
        index = 10 + len(self.hosts)
        ip = f"{SUBNET}.{index}"
        folder = self.folder / name
        (folder / "mnt").mkdir(parents=True)
        netns = f"{self.tag}-{name}"
        inside, outside = f"v{index}", f"{self.tag}b{index}"
        _sh(f"ip netns add {netns}")
        _sh(f"ip link add {inside} netns {netns} type veth peer name {outside} netns {self.bridge}")
        _sh(f"ip -n {self.bridge} link set {outside} master br0 up")
        _sh(f"ip -n {netns} addr add {ip}/24 dev {inside} && ip -n {netns} link set {inside} up")
        daemon = ""
        if sshd:
            (folder / "sshd_config").write_text(
                f"ListenAddress {ip}\nHostKey {self.folder}/ssh_host_key\nPidFile none\n"
                f"UsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                f"KbdInteractiveAuthentication no\nStrictModes no\n"
                f"AuthorizedKeysFile {self.folder}/authorized_keys\n"
                f"AllowTcpForwarding yes\nMaxStartups 100\nMaxSessions 100\n")
            daemon = f"{SSHD} -D -e -f {folder}/sshd_config 2> {folder}/sshd.log &"
        (folder / "init.sh").write_text(_INIT.format(name=name, mnt=folder / "mnt", folder=folder,
                                                     sshd=daemon))
        process = subprocess.Popen(
            ["ip", "netns", "exec", netns, "unshare", "--pid", "--mount", "--uts", "--fork",
             "--mount-proc", "--propagation", "private", "bash", str(folder / "init.sh")],
            stdout=(folder / "init.log").open("w"), stderr=subprocess.STDOUT)
        host = Host(name, ip, folder, netns, process)
        self.hosts[name] = host
        deadline = time.monotonic() + 30
        while not (folder / "ready").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"host {name} did not start: {(folder / 'init.log').read_text()}")
            time.sleep(0.05)
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        host.init_pid = int(children[0])
        return host

    def close(self) -> None:
        for host in self.hosts.values():
            try:
                host.kill()
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.bridge], capture_output=True)


def _sh(command: str) -> None:
    result = subprocess.run(command, shell=True, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"`{command}` failed: {result.stderr.strip()}")


if __name__ == "__main__":  # python tests/cluster/nshosts.py: make two hosts and ssh from one to the other
    import tempfile
    net = Network(Path(tempfile.mkdtemp(dir="/var/tmp", prefix="nshosts-")))
    try:
        a, b = net.add("a"), net.add("b")
        print(a.run(f"ssh -i {net.key} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                    f"root@{b.ip} 'hostname; hostname -I'").stdout, file=sys.stderr)
    finally:
        net.close()
