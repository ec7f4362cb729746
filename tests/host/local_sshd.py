"""A throwaway OpenSSH server on 127.0.0.1 for SSHHost unit tests (no lab needed, root required).

sshd runs in its own mount namespace with a private tmpfs on /run (so /run/sshd and /run/jujubackup
never touch the real host), on a free port, with fresh host keys and a fresh client key.
Stopped by its pid only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


@dataclass
class LocalSSHD:
    """A running sshd: where it listens, the client key, and a known_hosts file that pins it."""

    port: int
    key: Path
    known_hosts: Path
    host_key_pub: Path
    dir: Path
    process: subprocess.Popen[bytes]

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} " + " ".join(self.host_key_pub.read_text().split()[:2]) + "\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path, kind: str = "ed25519") -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)


@contextmanager
def local_sshd(workdir: Path) -> Iterator[LocalSSHD]:
    """Yield a LocalSSHD serving root logins with a fresh key; stop it (by pid) afterwards.

    Raise RuntimeError if not root or sshd is missing (tests needing it must fail, not skip).
    """
    if os.geteuid() != 0 or not Path(SSHD).exists():
        raise RuntimeError("the local sshd fixture needs root and /usr/sbin/sshd (package openssh-server)")
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o700)
    port = _free_port()
    _keygen(workdir / "host_ed25519")
    _keygen(workdir / "client")
    shutil.copy(workdir / "client.pub", workdir / "authorized_keys")
    (workdir / "authorized_keys").chmod(0o600)
    config = workdir / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1:{port}\nHostKey {workdir}/host_ed25519\nPidFile none\n"
        f"AuthorizedKeysFile {workdir}/authorized_keys\nStrictModes no\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nLogLevel ERROR\n"
    )
    known = workdir / "known_hosts"
    log = (workdir / "sshd.log").open("wb")
    inner = (
        f"mount -t tmpfs -o mode=755 tmpfs /run && mkdir -m 755 /run/sshd && exec {SSHD} -D -e -f {config}"
    )
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner],
        stdout=log, stderr=subprocess.STDOUT,
    )
    server = LocalSSHD(port, workdir / "client", known, workdir / "host_ed25519.pub", workdir, proc)
    known.write_text(server.known_hosts_line())
    try:
        _wait_listening(port, proc)
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.025)
    raise RuntimeError("sshd did not start listening")
