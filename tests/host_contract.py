"""The Host contract, as cases any Host must pass: tests/unit/test_host_contract.py runs them on the
FakeHost (always), tests/host/test_host_contract_ssh.py on a real SSHHost (root: a loopback sshd).

Each case gets the host, `allow(script)` (the fake runs only scripts it was told about; a no-op for
a real host) and a Scratch dir both the test and the host see: the same path for the fake and the
loopback sshd (this machine), a dir under a lab host's root for tests/integration/test_host_contract_lab.py.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from jujubackup.errors import NotFoundError, RemoteStepError
from jujubackup.host.base import Host

Allow = Callable[[str], None]


@dataclass(frozen=True)
class Scratch:
    """A directory as this test sees it (`local`) and as the host sees it (`remote`)."""

    local: Path
    remote: str

    def __call__(self, name: str) -> tuple[Path, str]:
        """Return the (local, remote) paths of `name` in it."""
        return self.local / name, f"{self.remote}/{name}"

    @classmethod
    def same(cls, path: Path) -> Scratch:
        """A scratch dir the host sees at the same path (the fake, a loopback host)."""
        return cls(path, str(path))


Case = Callable[[Host, Allow, Scratch], None]


def run_returns_stdout_and_its_json(host: Host, allow: Allow, scratch: Scratch) -> None:
    allow("hello")
    result = host.run("hello", 'echo "progress" >&2\necho \'{"ok": true, "n": 2}\'')
    assert result.returncode == 0 and result.script == "hello"
    assert result.json() == {"ok": True, "n": 2}
    assert "progress" in result.stderr


def a_failing_script_is_a_remote_step_error_with_its_stderr_tail(
    host: Host, allow: Allow, scratch: Scratch
) -> None:
    allow("fails")
    with pytest.raises(RemoteStepError) as caught:
        host.run("fails", "echo first >&2\necho 'the last words' >&2\nexit 7")
    err = caught.value
    assert (err.script, err.returncode, err.exit_code) == ("fails", 7, 4)
    assert err.stderr_tail.strip().endswith("the last words") and host.name in err.message
    unchecked = host.run("fails", "echo out; exit 3", check=False)
    assert (unchecked.returncode, unchecked.stdout) == (3, "out\n")


def stdin_follows_the_script(host: Host, allow: Allow, scratch: Scratch) -> None:
    allow("cat-stdin")
    result = host.run("cat-stdin", "read -r line; echo \"got:$line\"; cat", stdin=b"one\ntwo\n")
    assert result.stdout == "got:one\ntwo\n"


def run_stream_feeds_the_source_to_the_script(host: Host, allow: Allow, scratch: Scratch) -> None:
    allow("count")
    data = bytes(range(256)) * 1000
    seen: list[int] = []
    result = host.run_stream("count", "wc -c", io.BytesIO(data), progress=seen.append)
    assert int(result.stdout.strip()) == len(data) and sum(seen) >= len(data)  # SSHHost counts the script too


def put_then_get_round_trips_with_offsets_mode_and_sha256(host: Host, allow: Allow, scratch: Scratch) -> None:
    path, remote = scratch("file.bin")
    data = b"0123456789" * 1000
    digests: list[str] = []
    assert host.put(io.BytesIO(data), remote, mode=0o640, on_sha256=digests.append) == len(data)
    assert path.read_bytes() == data and oct(path.stat().st_mode & 0o777) == "0o640"
    assert digests == [hashlib.sha256(data).hexdigest()]
    host.put(io.BytesIO(b"tail"), remote, offset=5)  # truncated to 5 bytes, then appended
    assert path.read_bytes() == b"01234tail"
    sink = io.BytesIO()
    assert host.get(remote, sink, offset=2) == 7 and sink.getvalue() == b"234tail"


def put_past_the_end_is_refused(host: Host, allow: Allow, scratch: Scratch) -> None:
    path, remote = scratch("short.bin")
    path.write_bytes(b"abc")
    with pytest.raises(RemoteStepError) as caught:
        host.put(io.BytesIO(b"x"), remote, offset=10)
    assert "fewer than offset 10" in caught.value.stderr_tail
    assert path.read_bytes() == b"abc"


def get_of_a_missing_file_is_not_found(host: Host, allow: Allow, scratch: Scratch) -> None:
    with pytest.raises(NotFoundError):
        host.get(scratch("missing")[1], io.BytesIO())


CASES: list[Case] = [
    run_returns_stdout_and_its_json,
    a_failing_script_is_a_remote_step_error_with_its_stderr_tail,
    stdin_follows_the_script,
    run_stream_feeds_the_source_to_the_script,
    put_then_get_round_trips_with_offsets_mode_and_sha256,
    put_past_the_end_is_refused,
    get_of_a_missing_file_is_not_found,
]
