"""Test hosts with systemd as PID 1, reached over SSH on loopback (issue 12).

A bootable Debian rootfs is built once with mmdebstrap and cached under build/hosts by a hash
of its recipe; each host boots it with ``systemd-nspawn -b`` on an overlayfs (the cached
rootfs stays the read-only lower layer, the host's own writes go to its upper layer, so a
host keeps its state across a reboot). The hosts share this machine's network namespace:
each gets its own sshd on a loopback port and the fleet's test key in root's
authorized_keys, so Ansible reaches them as ordinary SSH hosts. A wheelhouse of coral-lib
and its dependencies (the PostgreSQL driver included), built here with ``pip wheel``
(cached by a hash of the sources), is bind-mounted read-only at /opt/coral-wheels: the
hosts install coral offline from it.

Shortcuts a real fleet would not take, named here: no private network (loopback ports
instead of addresses), all hosts share the rootfs's SSH host keys (the client does not
check them), root logs in with a key.

    python -m tests.support.nspawn up DIR [NAME ...]    boot hosts, print the inventory path
    python -m tests.support.nspawn down DIR             stop them and remove DIR's hosts
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

from tests.support import locks

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("CORAL_HOSTS_BUILD", ROOT / "build" / "hosts"))
MIRROR = os.environ.get("CORAL_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "openssh-server",
            "iproute2", "ca-certificates", "procps")
RECIPE = ("mmdebstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
          "bookworm", "DIR", MIRROR)
WHEELS_MOUNT = "/opt/coral-wheels"
# coral-lib with the PostgreSQL driver (the colony role installs it for replicas)
WHEEL_TARGET = ".[postgresql]"
# What the hosts' systemd need not run in a container that shares this machine's network.
MASKED = ("systemd-networkd.service", "systemd-resolved.service", "getty@.service",
          "console-getty.service", "systemd-timesyncd.service", "apt-daily.timer",
          "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer")


def _key(parts: list[str]) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def rootfs(build: pathlib.Path = BUILD) -> pathlib.Path:
    """The cached bootable rootfs directory (built on first use, ~25 s)."""
    with locks.exclusive(locks.HOSTS_ROOTFS):  # parallel test workers build it once
        return _rootfs(build)


def _rootfs(build: pathlib.Path) -> pathlib.Path:
    target = build / f"rootfs-{_key(list(RECIPE) + list(MASKED))}"
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    build.mkdir(parents=True, exist_ok=True)
    argv = [str(partial) if part == "DIR" else part for part in RECIPE]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"mmdebstrap failed:\n{out.stderr[-3000:]}")
    for unit in MASKED:
        (partial / "etc/systemd/system" / unit).unlink(missing_ok=True)
        (partial / "etc/systemd/system" / unit).symlink_to("/dev/null")
    (partial / ".complete").write_text(" ".join(RECIPE) + "\n")
    partial.rename(target)
    return target


def _source_files() -> list[pathlib.Path]:
    files = [ROOT / "pyproject.toml", ROOT / "constraints.txt", ROOT / "README.md"]
    files += sorted(p for p in (ROOT / "coral_lib").rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts)
    return files


def wheelhouse(build: pathlib.Path = BUILD) -> pathlib.Path:
    """coral-lib's wheel and its dependencies' wheels, cached by a hash of the sources."""
    with locks.exclusive(locks.SOURCE_BUILD):  # `pip wheel .` builds in the checkout
        return _wheelhouse(build)


def _wheelhouse(build: pathlib.Path) -> pathlib.Path:
    digest = hashlib.sha256(WHEEL_TARGET.encode())
    for path in _source_files():
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    target = build / f"wheels-{digest.hexdigest()[:16]}"
    if (target / ".complete").exists():
        return target
    for old in build.glob("wheels-*"):  # earlier sources' wheelhouses only take space now
        shutil.rmtree(old, ignore_errors=True)
    target.mkdir(parents=True)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                          "-c", "constraints.txt", "-w", str(target), WHEEL_TARGET],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    shutil.rmtree(ROOT / "build" / "lib", ignore_errors=True)
    if out.returncode != 0:
        raise RuntimeError(f"pip wheel failed:\n{out.stderr[-3000:]}")
    (target / ".complete").write_text("")
    return target


def coral_wheel(wheels: pathlib.Path) -> str:
    """The coral-lib wheel's path as the hosts see it."""
    (wheel,) = wheels.glob("coral_lib-*.whl")
    return f"{WHEELS_MOUNT}/{wheel.name}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class Host:
    """One booted (or stopped) test host: its overlay, its sshd port, its nspawn process."""

    name: str
    dir: pathlib.Path
    ssh_port: int
    key: pathlib.Path
    lower: pathlib.Path
    binds: list[tuple[pathlib.Path, str]]
    proc: subprocess.Popen | None = None

    @property
    def merged(self) -> pathlib.Path:
        return self.dir / "merged"

    def ssh_argv(self) -> list[str]:
        return ["ssh", "-p", str(self.ssh_port), "-i", str(self.key), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "root@127.0.0.1"]

    def ssh(self, command: str, *, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a shell command on the host over SSH."""
        return subprocess.run([*self.ssh_argv(), command], capture_output=True, text=True,
                              timeout=timeout)

    def _mount(self) -> None:
        if os.path.ismount(self.merged):
            return
        for part in ("upper", "work", "merged"):
            (self.dir / part).mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={self.lower},upperdir={self.dir / 'upper'},"
                        f"workdir={self.dir / 'work'}", str(self.merged)], check=True)

    def _personalise(self) -> None:
        root = self.merged
        (root / "etc/ssh/sshd_config.d/coral-test.conf").write_text(
            f"Port {self.ssh_port}\nListenAddress 127.0.0.1\nPermitRootLogin prohibit-password\n"
            "UseDNS no\n")
        ssh_dir = root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        (ssh_dir / "authorized_keys").chmod(0o600)
        (root / "etc/hostname").write_text(self.name + "\n")

    def boot(self, *, timeout: float = 120) -> None:
        """Start the host (first boot or after a stop/reboot) and wait for its sshd."""
        self._mount()
        self._personalise()
        argv = ["systemd-nspawn", "-b", "-q", "-D", str(self.merged), "--register=no",
                "--keep-unit", f"--machine={self.name}", f"--hostname={self.name}"]
        argv += [f"--bind-ro={src}:{dst}" for src, dst in self.binds]
        log = open(self.dir / "console.log", "ab")  # noqa: SIM115 (the process keeps it)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()
        self.wait_ssh(timeout=timeout)

    def wait_ssh(self, *, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n"
                                   + self.console()[-3000:])
            try:
                if self.ssh("true", timeout=10).returncode == 0:
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.name}: no sshd on 127.0.0.1:{self.ssh_port} after "
                           f"{timeout:.0f}s:\n{self.console()[-3000:]}")

    def wait_running(self, *, timeout: float = 60) -> str:
        """systemctl is-system-running once the boot settled (running or degraded)."""
        out = self.ssh(f"timeout {int(timeout)} systemctl is-system-running --wait",
                       timeout=timeout + 10)
        return out.stdout.strip()

    def console(self) -> str:
        path = self.dir / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, *, timeout: float = 60) -> None:
        """Power the host off (SIGTERM to nspawn shuts systemd down cleanly)."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None

    def reboot(self, *, timeout: float = 120) -> int:
        """`systemctl reboot` inside; nspawn exits with 133 and is started again."""
        self.ssh("systemctl reboot", timeout=30)
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        self.boot(timeout=timeout)
        return code

    def remove(self) -> None:
        self.stop()
        if os.path.ismount(self.merged):
            subprocess.run(["umount", str(self.merged)], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclasses.dataclass
class Fleet:
    """Hosts that share a key, a wheelhouse and an inventory file."""

    dir: pathlib.Path
    hosts: dict[str, Host]
    wheels: pathlib.Path

    @property
    def key(self) -> pathlib.Path:
        return self.dir / "id_ed25519"

    def inventory(self, groups: dict[str, list[str]], *, host_vars: dict | None = None,
                  group_vars: dict | None = None) -> pathlib.Path:
        """A YAML inventory with these groups (names of hosts) and SSH settings per host."""
        ssh_args = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
        all_vars = {"ansible_user": "root", "ansible_host": "127.0.0.1",
                    "ansible_ssh_private_key_file": str(self.key),
                    "ansible_ssh_common_args": ssh_args,
                    "ansible_python_interpreter": "/usr/bin/python3", **(group_vars or {})}
        children = {group: {"hosts": {name: {} for name in names}}
                    for group, names in groups.items()}
        hosts = {name: {"ansible_port": host.ssh_port, **(host_vars or {}).get(name, {})}
                 for name, host in self.hosts.items()}
        data = {"all": {"vars": all_vars, "hosts": hosts, "children": children}}
        path = self.dir / "inventory.json"
        path.write_text(json.dumps(data, indent=2))
        return path.with_suffix(".json")

    def stop(self) -> None:
        for host in self.hosts.values():
            host.remove()


def start_fleet(directory: pathlib.Path, names: list[str], *,
                binds: list[tuple[pathlib.Path, str]] = ()) -> Fleet:
    """Build (or reuse) the rootfs and the wheelhouse, then boot these hosts."""
    directory.mkdir(parents=True, exist_ok=True)
    lower, wheels = rootfs(), wheelhouse()
    key = directory / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    mounts = [(wheels, WHEELS_MOUNT), *binds]
    hosts = {name: Host(name=name, dir=directory / name, ssh_port=free_port(), key=key,
                        lower=lower, binds=list(mounts)) for name in names}
    fleet = Fleet(dir=directory, hosts=hosts, wheels=wheels)
    try:
        for host in hosts.values():
            host._mount()
            host._personalise()
            host.boot()
    except BaseException:
        fleet.stop()
        raise
    return fleet


def _state_file(directory: pathlib.Path) -> pathlib.Path:
    return directory / "fleet.json"


def main(argv: list[str]) -> int:
    """`up DIR NAME...` boots hosts and leaves them running (molecule create);
    `down DIR` stops them (molecule destroy)."""
    verb, directory = argv[0], pathlib.Path(argv[1])
    if verb == "up":
        fleet = start_fleet(directory, argv[2:] or ["coral-1", "coral-2"])
        state = {name: {"pid": h.proc.pid, "port": h.ssh_port} for name, h in fleet.hosts.items()}
        _state_file(directory).write_text(json.dumps(state))
        print(json.dumps({"key": str(fleet.key), "wheel": coral_wheel(fleet.wheels),
                          "hosts": state}))
        return 0
    state_file = _state_file(directory)
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    for name, entry in state.items():
        try:
            os.kill(entry["pid"], signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(120):
            try:
                os.kill(entry["pid"], 0)
            except ProcessLookupError:
                break
            time.sleep(0.5)
        merged = directory / name / "merged"
        if os.path.ismount(merged):
            subprocess.run(["umount", str(merged)], check=False)
    shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
