"""SSHHost against a throwaway sshd on 127.0.0.1 (tests/host/local_sshd.py): host keys, auth, run,
detached jobs with the heartbeat watchdog, and raw get/put streams."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import fabric
import pytest
from paramiko.packet import Packetizer

from jujubackup.errors import EXIT_CONNECT, EXIT_REMOTE, ConnectError, NotFoundError, RemoteStepError
from jujubackup.host.channel import wrap_script
from jujubackup.host.connection import _HostKeyPolicy
from jujubackup.host.openssh import OpenSSHStreams, Unusable
from jujubackup.host.ssh import HostKeyChangedError, SSHHost
from jujubackup.host.target import SSHTarget
from jujubackup.transfer import HashingSource
from tests.host.local_sshd import LocalSSHD, local_sshd

pytestmark = pytest.mark.host  # root: a loopback sshd, mounts or root-owned files (no lab)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSSHD]:
    with local_sshd(tmp_path_factory.mktemp("sshd") / "server") as server:
        yield server


def target_for(server: LocalSSHD, **changes: object) -> SSHTarget:
    values: dict[str, object] = {
        "name": "local", "hostname": "127.0.0.1", "port": server.port, "user": "root",
        "identity_files": (server.key,), "known_hosts": (server.known_hosts,), "connect_timeout": 5.0,
    }
    values.update(changes)
    return SSHTarget(**values)  # type: ignore[arg-type]


@pytest.fixture
def host(sshd: LocalSSHD) -> Iterator[SSHHost]:
    with SSHHost.connect(target_for(sshd)) as connected:
        yield connected


def wait_for(predicate, what: str, limit: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.2)


# -- connecting -------------------------------------------------------------------------------------

def openssh_fingerprint(pub: Path) -> str:
    """The fingerprint `ssh-keygen -l` prints for a public key file (SHA256:<base64>)."""
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)], check=True,
                         capture_output=True, text=True).stdout
    return out.split()[1]


def test_unknown_host_key_is_refused(sshd: LocalSSHD, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(ConnectError) as caught:
        SSHHost.connect(target_for(sshd, known_hosts=(empty,)))
    assert caught.value.exit_code == EXIT_CONNECT
    assert "not known" in caught.value.message
    assert f"(fingerprint ssh-ed25519 {openssh_fingerprint(sshd.host_key_pub)})" in caught.value.message
    assert "--accept-new-host-key" in (caught.value.hint or "")
    assert empty.read_text() == ""


def test_accept_new_host_key_records_it(sshd: LocalSSHD, tmp_path: Path) -> None:
    known = tmp_path / "ssh" / "known_hosts"
    with SSHHost.connect(target_for(sshd, known_hosts=(known,), accept_new_host_key=True)) as host:
        assert host.run("id", "id -u").stdout.strip() == "0"
    assert known.read_text() == sshd.known_hosts_line()
    assert known.stat().st_mode & 0o777 == 0o600
    with SSHHost.connect(target_for(sshd, known_hosts=(known,))) as host:  # now known: no flag needed
        assert host.run("true", "true").returncode == 0


def test_changed_host_key_is_refused_even_with_accept_new(sshd: LocalSSHD, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known = tmp_path / "known_hosts"
    other_key = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    known.write_text(f"[127.0.0.1]:{sshd.port} {other_key}\n")
    with pytest.raises(ConnectError) as caught:
        SSHHost.connect(target_for(sshd, known_hosts=(known,), accept_new_host_key=True))
    assert caught.value.exit_code == EXIT_CONNECT
    assert isinstance(caught.value, HostKeyChangedError)
    assert "CHANGED" in caught.value.message
    got, expected = openssh_fingerprint(sshd.host_key_pub), openssh_fingerprint(other.with_suffix(".pub"))
    assert got.startswith("SHA256:") and not got.endswith("=")
    assert f"got ssh-ed25519 {got}, known_hosts has ssh-ed25519 {expected}" in caught.value.message
    assert f"ssh-keygen -f {known} -R '[127.0.0.1]:{sshd.port}'" in (caught.value.hint or "")


def test_wrong_key_is_an_auth_failure(sshd: LocalSSHD, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(ConnectError) as caught:
        SSHHost.connect(target_for(sshd, identity_files=(stranger,)))
    assert caught.value.exit_code == EXIT_CONNECT
    assert "authentication as root" in caught.value.message


def test_refused_port_is_a_connect_error(sshd: LocalSSHD) -> None:
    with pytest.raises(ConnectError) as caught:
        SSHHost.connect(target_for(sshd, port=1))
    assert caught.value.exit_code == EXIT_CONNECT
    assert caught.value.message == "connection refused by 127.0.0.1:1 (local)"  # target name "local"
    assert caught.value.hint == "check that sshd runs on the host and the port is right"


def test_prefers_aes_gcm(host: SSHHost) -> None:
    transport = host._client.get_transport()
    assert transport is not None
    assert transport.remote_cipher == "aes128-gcm@openssh.com"


def test_the_connection_is_fabrics_with_our_settings_on_it_alone(
    sshd: LocalSSHD, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh/config").write_text("Host *\n  HostName 127.0.0.2\n  User nobody\n  IdentityFile ~/nope\n")
    monkeypatch.setenv("HOME", str(home))
    host = SSHHost.connect(target_for(sshd, connect_timeout=2.5, keepalive=7))
    try:
        assert isinstance(host._conn, fabric.Connection)
        assert host._conn.ssh_config == {"hostname": "127.0.0.1"}  # no ssh config read by fabric
        assert host._conn.connect_timeout == 2.5  # not fabric's int()
        assert isinstance(host._client._policy, _HostKeyPolicy)  # not fabric's AutoAddPolicy
        transport = host._client.get_transport()
        assert transport is not None
        packetizer = transport.packetizer
        assert (packetizer.REKEY_BYTES, packetizer.REKEY_PACKETS) == (2**40, 2**40)
        assert packetizer._Packetizer__keepalive_interval == 7  # type: ignore[attr-defined]
        # the rekey limits are this connection's, not the process's (paramiko's defaults: 2**29)
        assert (Packetizer.REKEY_BYTES, Packetizer.REKEY_PACKETS) == (2**29, 2**29)
        assert host.run("id", "id -un").stdout.strip() == "root"
    finally:
        host.close()
    assert not transport.is_active()


@pytest.mark.parametrize(("chosen", "negotiated"), [
    ((), "aes128-gcm@openssh.com"),                          # no choice: AES-GCM first
    (("chacha20-poly1305@openssh.com", "aes256-ctr"), "aes256-ctr"),  # the config's order, paramiko's
])
def test_the_control_connection_offers_the_ciphers_of_the_operator_s_config(
    sshd: LocalSSHD, chosen: tuple[str, ...], negotiated: str
) -> None:
    with SSHHost.connect(target_for(sshd, ciphers=chosen)) as host:
        transport = host._client.get_transport()
        assert transport is not None
        assert (transport.local_cipher, transport.remote_cipher) == (negotiated, negotiated)


def test_a_config_whose_ciphers_paramiko_lacks_is_refused_before_connecting(sshd: LocalSSHD) -> None:
    with pytest.raises(ConnectError) as raised:
        SSHHost.connect(target_for(sshd, name="picky", ciphers=("chacha20-poly1305@openssh.com",)))
    assert raised.value.exit_code == EXIT_CONNECT
    assert "none of the Ciphers your ssh config chooses for picky (chacha20-poly1305@openssh.com)" \
        in raised.value.message
    assert "aes128-gcm@openssh.com" in (raised.value.hint or "")


# -- run ----------------------------------------------------------------------------------------------

def test_run_returns_output_and_keeps_the_script_out_of_argv(host: SSHHost) -> None:
    text = "set -euo pipefail\ntr '\\0' ' ' </proc/$$/cmdline\necho; echo note >&2\n"
    result = host.run("argv", text)
    size = len(wrap_script(text))
    assert result.stdout.split() == [
        "bash", "--norc", "-c", "eval", '"$(head', "-c", f'{size})"', "jujubackup-argv"]
    assert result.stderr == "note\n"


def test_run_passes_stdin_after_the_script(host: SSHHost) -> None:
    script = "read -r first\necho \"first=$first\"\nwc -c\n"
    result = host.run("stdin", script, stdin=b"one\n" + b"x" * 300_000)
    assert result.stdout.split() == ["first=one", "300000"]


def test_run_failure_carries_script_rc_and_stderr(host: SSHHost) -> None:
    with pytest.raises(RemoteStepError) as caught:
        host.run("probe", "echo starting >&2\necho 'disk is on fire' >&2\nexit 5\n")
    err = caught.value
    assert (err.script, err.returncode, err.exit_code) == ("probe", 5, EXIT_REMOTE)
    assert "disk is on fire" in err.message and "probe" in err.message
    assert host.run("nocheck", "exit 2", check=False).returncode == 2


def test_large_output_does_not_deadlock(host: SSHHost) -> None:
    result = host.run("big", "head -c 5000000 /dev/zero | tr '\\0' a\nhead -c 5000000 /dev/zero >&2\n")
    assert len(result.stdout) == 5_000_000 and len(result.stderr) == 5_000_000


def test_result_json(host: SSHHost) -> None:
    assert host.run("json", "echo noise\necho '{\"a\": 1}'\n").json() == {"a": 1}


# -- detached ----------------------------------------------------------------------------------------

def test_run_detached_forwards_stderr_and_returns_stdout(host: SSHHost) -> None:
    lines: list[str] = []
    script = "echo one >&2\nsleep 0.6\necho two >&2\necho '{\"done\": true}'\n"
    result = host.run_detached("job", script, poll=0.1, on_stderr=lines.append)
    assert result.json() == {"done": True}
    assert lines == ["one", "two"]
    assert host.run("ls", "ls -A /run/jujubackup").stdout == ""


def test_run_detached_failure_is_a_remote_step_error(host: SSHHost) -> None:
    with pytest.raises(RemoteStepError) as caught:
        host.run_detached("dump", "echo 'mongodump: no reachable servers' >&2\nexit 7\n", poll=0.1)
    assert caught.value.returncode == 7
    assert "no reachable servers" in caught.value.message


def test_run_detached_timeout_aborts_the_job_and_runs_its_traps(host: SSHHost, tmp_path: Path) -> None:
    marker = tmp_path / "trap-ran"
    script = f"trap 'echo restored > {marker}' EXIT\nsleep 300\n"
    with pytest.raises(RemoteStepError) as caught:
        host.run_detached("slow", script, poll=0.1, timeout=1)
    assert "timed out" in caught.value.message
    assert marker.read_text() == "restored\n"


def test_killed_client_lets_the_watchdog_abort_the_job(
    sshd: LocalSSHD, host: SSHHost, tmp_path: Path
) -> None:
    marker = tmp_path / "trap-ran"
    started = tmp_path / "started"
    client = tmp_path / "client.py"
    client.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from jujubackup.host.ssh import SSHHost\n"
        "from jujubackup.host.target import SSHTarget\n"
        f"t = SSHTarget(name='local', hostname='127.0.0.1', port={sshd.port}, user='root',"
        f" identity_files=(Path({str(sshd.key)!r}),), known_hosts=(Path({str(sshd.known_hosts)!r}),))\n"
        f"SSHHost.connect(t).run_detached('create', \"touch {started}; trap 'echo restored > {marker}' EXIT;"
        " sleep 300\", poll=0.2, heartbeat_timeout=5)\n"
    )
    # heartbeat_timeout 5 s, not 2: under load 10 a live client's heartbeat was once late by more
    # than 2 s, the watchdog (rightly) aborted a job whose client was still there, and the
    # "not yet restored" assertion below failed. The test is about a dead client, not a slow one.
    proc = subprocess.Popen([sys.executable, str(client)], cwd=os.getcwd())
    try:
        wait_for(started.exists, "the detached job to start")
        assert not marker.exists()
    finally:
        proc.kill()
        proc.wait()
    wait_for(marker.exists, "the watchdog to TERM the job")
    assert marker.read_text() == "restored\n"
    wait_for(lambda: host.run("ls", "ls -A /run/jujubackup").stdout == "", "the state dir to be removed")


# -- streams -----------------------------------------------------------------------------------------

@pytest.fixture(params=["openssh", "paramiko"])
def streamer(sshd: LocalSSHD, request: pytest.FixtureRequest) -> Iterator[SSHHost]:
    """A host whose archive streams go through the given engine (and must: no silent fallback)."""
    with SSHHost.connect(target_for(sshd, stream_via=request.param)) as connected:
        yield connected


def test_put_get_round_trip_with_offsets(streamer: SSHHost, tmp_path: Path) -> None:
    host = streamer
    data = os.urandom(3 * 1024 * 1024 + 17)
    remote = str(tmp_path / "remote.bin")
    moved: list[int] = []
    assert host.put(io.BytesIO(data[:1_000_000]), remote, progress=moved.append) == 1_000_000
    assert host.put(io.BytesIO(data[700_000:]), remote, offset=700_000) == len(data) - 700_000
    assert Path(remote).read_bytes() == data
    assert Path(remote).stat().st_mode & 0o777 == 0o600
    assert sum(moved) == 1_000_000
    sink = io.BytesIO()
    assert host.get(remote, sink) == len(data)
    assert sink.getvalue() == data
    tail = io.BytesIO()
    host.get(remote, tail, offset=2_000_000)
    assert hashlib.sha256(tail.getvalue()).digest() == hashlib.sha256(data[2_000_000:]).digest()
    digests: list[str] = []
    host.put(io.BytesIO(data), remote, on_sha256=digests.append)
    assert digests == [hashlib.sha256(data).hexdigest()]
    assert host.streams_via.startswith(host.target.stream_via)


def test_run_stream_feeds_the_source_to_the_script_after_it(streamer: SSHHost) -> None:
    data = os.urandom(5 * 1024 * 1024 + 3)
    result = streamer.run_stream("count", "set -eu\nsha256sum | cut -d' ' -f1\n", io.BytesIO(data))
    assert result.stdout.strip() == hashlib.sha256(data).hexdigest()
    with pytest.raises(RemoteStepError) as caught:
        streamer.run_stream("fails", "head -c 10 >/dev/null; echo no >&2; exit 3\n", io.BytesIO(data))
    assert (caught.value.script, caught.value.returncode) == ("fails", 3)
    assert streamer.streams_via.startswith(streamer.target.stream_via)


def test_run_stream_of_an_open_file_hashes_what_the_script_received(
    streamer: SSHHost, tmp_path: Path
) -> None:
    data = os.urandom(6 * 1024 * 1024 + 5)
    archive = tmp_path / "archive.bin"
    archive.write_bytes(data)
    digest = hashlib.sha256()
    moved: list[int] = []
    with archive.open("rb", buffering=0) as fh:
        fh.seek(1000)
        result = streamer.run_stream(
            "count", "set -eu\nsha256sum | cut -d' ' -f1\n", HashingSource(fh, digest),
            progress=moved.append,
        )
    assert result.stdout.strip() == hashlib.sha256(data[1000:]).hexdigest()
    assert digest.hexdigest() == hashlib.sha256(data[1000:]).hexdigest()
    assert sum(moved) == len(data) - 1000
    assert streamer.streams_via.startswith(streamer.target.stream_via)


def test_put_refuses_an_offset_past_the_end(streamer: SSHHost, tmp_path: Path) -> None:
    remote = tmp_path / "short.bin"
    remote.write_bytes(b"abc")
    with pytest.raises(RemoteStepError) as caught:
        streamer.put(io.BytesIO(b"def"), str(remote), offset=10)
    assert "fewer than offset 10" in caught.value.message
    assert remote.read_bytes() == b"abc"


def test_get_missing_file_is_not_found(streamer: SSHHost, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        streamer.get(str(tmp_path / "nope"), io.BytesIO())


def test_a_failing_source_ends_the_remote_writer_and_propagates(streamer: SSHHost, tmp_path: Path) -> None:
    class Failing(io.RawIOBase):
        sent = 0

        def read(self, size: int = -1) -> bytes:
            if self.sent >= 2 << 20:
                raise ValueError("verification failed")
            self.sent += 1 << 20
            return b"x" * (1 << 20)

    remote = tmp_path / "failing.bin"
    with pytest.raises(ValueError, match="verification failed"):
        streamer.put(Failing(), str(remote))  # type: ignore[arg-type]
    assert remote.stat().st_size <= 2 << 20  # the writer has exited: the caller may remove the file


class FileSource:
    """A DirectFile source: the rest of an open file; `check` counts its calls, and raises once
    `fail_after` bytes of the file were read."""

    def __init__(self, path: Path, offset: int = 0, fail_after: int | None = None) -> None:
        self.fh = path.open("rb", buffering=0)
        self.fh.seek(offset)
        self.fail_after = fail_after
        self.checks = 0
        self.reads = 0

    def read(self, size: int = 1 << 20) -> bytes:
        self.reads += 1
        self.check()
        return self.fh.read(size)

    def check(self) -> None:
        self.checks += 1
        if self.fail_after is not None and self.fh.tell() >= self.fail_after:
            raise ValueError("verification failed")

    def direct_file(self) -> tuple[int, Callable[[], None]]:
        return self.fh.fileno(), self.check


def test_a_file_source_is_sent_whole_from_its_offset(streamer: SSHHost, tmp_path: Path) -> None:
    local = tmp_path / "local.bin"
    data = os.urandom(9 * 1024 * 1024 + 5)
    local.write_bytes(data)
    remote = str(tmp_path / "remote.bin")
    moved: list[int] = []
    digests: list[str] = []
    source = FileSource(local, offset=1000)
    sent = streamer.put(source, remote, progress=moved.append, on_sha256=digests.append,
                        size=len(data) - 1000)
    assert sent == sum(moved) == len(data) - 1000
    assert Path(remote).read_bytes() == data[1000:]
    assert digests == [hashlib.sha256(data[1000:]).hexdigest()]
    # OpenSSH reads the file itself; paramiko reads it chunk by chunk
    assert (source.reads == 0) == (streamer.streams_via == "openssh")


def test_a_file_source_whose_check_fails_stops_the_send(streamer: SSHHost, tmp_path: Path) -> None:
    local = tmp_path / "local.bin"
    local.write_bytes(os.urandom(256 * 1024 * 1024))
    remote = tmp_path / "remote.bin"
    source = FileSource(local, fail_after=8 << 20)
    with pytest.raises(ValueError, match="verification failed"):
        streamer.put(source, str(remote), size=256 * 1024 * 1024)
    assert source.checks >= 1
    assert remote.stat().st_size < 256 * 1024 * 1024
    assert not _ssh_children()  # the stream's ssh client was stopped


def _ssh_children() -> list[int]:
    """Pids of this process's `ssh` children (the OpenSSH stream client)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            comm = (proc / "comm").read_text().strip()
        except (OSError, IndexError):
            continue
        if comm == "ssh" and int(fields[1]) == os.getpid():
            found.append(int(proc.name))
    return found


def test_openssh_killed_mid_get_is_exit_3_and_keeps_what_arrived(sshd: LocalSSHD, tmp_path: Path) -> None:
    streamer = SSHHost.connect(target_for(sshd, stream_via="openssh"))
    remote = tmp_path / "big.bin"
    remote.write_bytes(os.urandom(32 * 1024 * 1024))
    sink = io.BytesIO()

    def cut(_: int) -> None:
        for pid in _ssh_children():  # our own child: the stream's ssh client
            os.kill(pid, 9)

    with pytest.raises(ConnectError) as caught:
        streamer.get(str(remote), sink, progress=cut)
    assert caught.value.exit_code == EXIT_CONNECT
    assert "lost while downloading" in caught.value.message
    assert 0 < len(sink.getvalue()) < 32 * 1024 * 1024
    assert remote.read_bytes().startswith(sink.getvalue())
    streamer.close()


def test_openssh_talks_only_to_the_key_paramiko_verified(sshd: LocalSSHD, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    key_type, key_b64 = other.with_suffix(".pub").read_text().split()[:2]
    streams = OpenSSHStreams.start(target_for(sshd), key_type, key_b64)
    try:
        with pytest.raises(Unusable, match=r"(?i)host key verification failed"):
            streams.get("cat /etc/hostname", io.BytesIO(), None, 10)
    finally:
        streams.close()


def test_auto_falls_back_to_paramiko_when_ssh_cannot_log_in(
    sshd: LocalSSHD, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bin" / "ssh"
    fake.parent.mkdir()
    # given a file, it reads some of it first, as a real ssh may before the remote command starts
    fake.write_text("#!/bin/sh\nif [ -f /dev/stdin ]; then head -c 65536 >/dev/null; fi\n"
                    "echo 'root@127.0.0.1: Permission denied (publickey).' >&2\nexit 255\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    data = os.urandom(3 << 20)
    remote = str(tmp_path / "fallback.bin")
    with SSHHost.connect(target_for(sshd)) as host:
        assert host.put(io.BytesIO(data), remote) == len(data)  # nothing was read before the fallback
        assert host.streams_via == "paramiko (root@127.0.0.1: Permission denied (publickey).)"
        sink = io.BytesIO()
        host.get(remote, sink)
        assert sink.getvalue() == data
        local = tmp_path / "local.bin"
        local.write_bytes(data)
        assert host.put(FileSource(local, offset=5), remote) == len(data) - 5  # the offset was put back
        assert Path(remote).read_bytes() == data[5:]
    required = target_for(sshd, stream_via="openssh")
    with SSHHost.connect(required) as host, pytest.raises(ConnectError) as caught:
        host.get(remote, io.BytesIO())
    assert "cannot stream through OpenSSH" in caught.value.message
    assert "--transfer paramiko" in (caught.value.hint or "")


def test_proxy_jump_reaches_the_target_through_the_jump_host(sshd: LocalSSHD) -> None:
    jump = target_for(sshd, name="bastion")
    with SSHHost.connect(target_for(sshd, name="behind", jump=jump)) as host:
        assert host.run("id", "id -u").stdout.strip() == "0"
        assert host.name == "behind"


def test_dropped_connection_while_polling_is_exit_3_and_the_job_aborts(
    sshd: LocalSSHD, tmp_path: Path
) -> None:
    marker, started = tmp_path / "trap-ran", tmp_path / "started"
    script = f"touch {started}\ntrap 'echo restored > {marker}' EXIT\nsleep 300\n"
    errors: list[BaseException] = []
    dropping = SSHHost.connect(target_for(sshd))

    def job() -> None:
        try:
            dropping.run_detached("create", script, poll=0.2, heartbeat_timeout=2)
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=job)
    thread.start()
    wait_for(started.exists, "the detached job to start")
    transport = dropping._client.get_transport()
    assert transport is not None
    transport.sock.close()  # the network goes away under the poller
    thread.join(60)
    assert len(errors) == 1 and isinstance(errors[0], ConnectError), errors
    assert errors[0].exit_code == EXIT_CONNECT
    assert "the remote job will abort itself" in errors[0].message
    wait_for(marker.exists, "the watchdog to TERM the job")
    dropping.close()


def test_connection_lost_mid_get_is_exit_3_and_keeps_what_arrived(sshd: LocalSSHD, tmp_path: Path) -> None:
    remote = tmp_path / "big.bin"
    remote.write_bytes(os.urandom(8 * 1024 * 1024))
    host = SSHHost.connect(target_for(sshd, stream_via="paramiko"))
    transport = host._client.get_transport()
    assert transport is not None
    sink = io.BytesIO()
    with pytest.raises(ConnectError) as caught:
        host.get(str(remote), sink, progress=lambda n: transport.sock.close())
    assert caught.value.exit_code == EXIT_CONNECT
    assert "lost while downloading" in caught.value.message
    assert 0 < len(sink.getvalue()) < 8 * 1024 * 1024
    assert remote.read_bytes().startswith(sink.getvalue())
    host.close()
