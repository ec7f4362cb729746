"""sudo with a password (issue 15): a login user whose sudo asks for a password (`jbops ALL=(ALL)
ALL`, added to ctl0 by the lab) can create, status, info, verify, list, download, upload, remove and
prune, and restore, repoint and drill onto a spare where it has the same rule, through the CLI with the
password from --sudo-password-file or $JUJUBACKUP_SUDO_PASSWORD, or typed once on a terminal; a
wrong one exits 3 with one line and changes nothing; the password is in no process's argv (host and
containers: /proc is shared downwards) and in no output."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jujubackup.errors import EXIT_CONNECT
from tests.integration.test_repoint import assert_repointed, confs
from tests.lab.lab import Lab

pytestmark = pytest.mark.lab

JUJUBACKUP = str(Path(sys.executable).parent / "jujubackup")
USER = "jbops"


class ArgvWatch:
    """Reads every process's /proc/PID/cmdline over and over while the CLI runs; `seen` lists the
    pids whose argv held the secret, `sudo_seen` those that ran `sudo -S -p <our prompt>` (in a
    container: proof that the watch sees the remote side)."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.seen: list[str] = []
        self.sudo_seen: set[str] = set()
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    argv = Path(entry.path, "cmdline").read_bytes()
                except OSError:
                    continue
                if self.secret in argv:
                    self.seen.append(entry.name)
                if argv.startswith(b"sudo\0-S\0-p\0jujubackup-sudo-"):
                    self.sudo_seen.add(entry.name)
            self.scans += 1


def jb(lab: Lab, *args: str, password_file: Path | None = None, env_password: str | None = None,
       ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "JUJUBACKUP_SUDO_PASSWORD"}
    if env_password is not None:
        env["JUJUBACKUP_SUDO_PASSWORD"] = env_password
    pw_args = ["--sudo-password-file", str(password_file)] if password_file else []
    return subprocess.run([JUJUBACKUP, "-F", str(lab.ssh_config), "-H", f"{USER}@ctl0", *pw_args, *args],
                          capture_output=True, text=True, timeout=600, check=False, env=env,
                          stdin=subprocess.DEVNULL)


def secret_file(tmp_path: Path, name: str, value: str) -> Path:
    path = tmp_path / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def sudo_lab(lab_session: None) -> Iterator[tuple[Lab, str]]:
    lab = Lab.create(controllers=1)
    try:
        password = lab.host("ctl0").add_password_sudo_user(USER)
        yield lab, password
    finally:
        lab.teardown()


def backup_ids(lab: Lab, password_file: Path) -> list[str]:
    done = jb(lab, "list", "--format", "json", password_file=password_file)
    assert done.returncode == 0, done.stderr
    return sorted(str(b["ID"]) for b in json.loads(done.stdout))


def test_the_rule_needs_a_password(sudo_lab: tuple[Lab, str]) -> None:
    lab, _password = sudo_lab
    done = lab.host("ctl0").ssh("sudo -n true", user=USER)
    assert done.returncode != 0 and "password is required" in done.stderr


def test_verbs_through_a_password_sudo_and_the_password_is_in_no_argv_or_output(
    sudo_lab: tuple[Lab, str], tmp_path: Path
) -> None:
    lab, password = sudo_lab
    good = secret_file(tmp_path, "pw", password)
    outputs: list[str] = []
    with ArgvWatch(password.encode()) as watch:
        created = jb(lab, "create", "through a password sudo", password_file=good)
        outputs += [created.stdout, created.stderr]
        assert created.returncode == 0, created.stderr
        backup_id = created.stdout.strip().splitlines()[-1]
        for verb in (["status"], ["info", backup_id], ["verify", backup_id]):
            done = jb(lab, *verb, password_file=good)
            outputs += [done.stdout, done.stderr]
            assert done.returncode == 0, (verb, done.stderr)
        listed = jb(lab, "list", "--format", "json", env_password=password)
        outputs += [listed.stdout, listed.stderr]
        assert listed.returncode == 0, listed.stderr
        assert backup_id in [b["ID"] for b in json.loads(listed.stdout)]
        copy = tmp_path / "copy"
        downloaded = jb(lab, "download", backup_id, "--dir", str(copy), password_file=good)
        outputs += [downloaded.stdout, downloaded.stderr]
        assert downloaded.returncode == 0, downloaded.stderr
        archive = copy / f"{backup_id}.tar.gz"
        stored = lab.host("ctl0").root / "var/lib/juju/backups" / f"{backup_id}.tar.gz"
        assert archive.read_bytes() == stored.read_bytes()
        uploaded = jb(lab, "upload", "--force", str(archive), password_file=good)
        outputs += [uploaded.stdout, uploaded.stderr]
        assert uploaded.returncode == 0, uploaded.stderr
        removed = jb(lab, "remove", "--yes", backup_id, password_file=good)
        outputs += [removed.stdout, removed.stderr]
        assert removed.returncode == 0, removed.stderr
        assert not stored.exists()
    assert watch.scans > 10 and watch.sudo_seen
    assert watch.seen == []
    assert not any(password in text for text in outputs)


def test_a_wrong_password_is_exit_3_one_line_and_changes_nothing(
    sudo_lab: tuple[Lab, str], tmp_path: Path
) -> None:
    lab, password = sudo_lab
    good = secret_file(tmp_path, "pw", password)
    before = backup_ids(lab, good)
    wrong = secret_file(tmp_path, "wrong", "not-" + password)
    done = jb(lab, "create", "must not happen", password_file=wrong)
    assert done.returncode == EXIT_CONNECT, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == f"error: sudo refused the password for {USER}@ctl0 (nothing was run)", done.stderr
    assert len(lines) == 2 and lines[1].startswith("hint: check the password given"), done.stderr
    assert password not in done.stderr + done.stdout
    assert backup_ids(lab, good) == before


def test_without_a_password_the_error_says_how_to_give_one(sudo_lab: tuple[Lab, str]) -> None:
    lab, _password = sudo_lab
    done = jb(lab, "list")
    assert done.returncode == EXIT_CONNECT, done.stderr
    assert f"sudo requires a password on ctl0 (user {USER})" in done.stderr
    assert "--sudo-password-file" in done.stderr


def test_a_password_file_others_can_read_is_refused(sudo_lab: tuple[Lab, str], tmp_path: Path) -> None:
    lab, password = sudo_lab
    loose = secret_file(tmp_path, "loose", password)
    loose.chmod(0o640)
    done = jb(lab, "list", password_file=loose)
    assert done.returncode == 6, done.stderr
    assert "must be mode 0600 (it is 0640" in done.stderr


def test_on_a_terminal_the_password_is_asked_once_with_no_echo(sudo_lab: tuple[Lab, str]) -> None:
    """No file, no variable, stdin a terminal: `sudo -n` says a password is required, the CLI asks
    on the terminal (getpass: echo off), and the verb runs."""
    lab, password = sudo_lab
    env = {k: v for k, v in os.environ.items() if k != "JUJUBACKUP_SUDO_PASSWORD"}
    argv = [JUJUBACKUP, "-F", str(lab.ssh_config), "-H", f"{USER}@ctl0", "list", "--format", "json"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        os.execve(JUJUBACKUP, argv, env)
    seen = b""
    prompt = f"[jujubackup] sudo password for {USER}@ctl0: ".encode()
    try:
        while prompt not in seen:
            chunk = _read(fd)
            assert chunk, seen
            seen += chunk
        os.write(fd, (password + "\n").encode())
        while chunk := _read(fd):
            seen += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert seen.count(prompt) == 1
    assert password.encode() not in seen  # not echoed
    assert b'"ID"' in seen or b"[]" in seen


def _read(fd: int) -> bytes:
    """Read what the pty has (b"" once the child closed it), waiting at most 120 s."""
    ready, _, _ = select.select([fd], [], [], 120)
    if not ready:
        return b""
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the child exited and the pty closed
        return b""


def test_prune_through_a_password_sudo(sudo_lab: tuple[Lab, str], tmp_path: Path) -> None:
    """prune lists, verifies the newest backup and removes the rest on the controller, each step as
    root through the login user's password sudo."""
    lab, password = sudo_lab
    good = secret_file(tmp_path, "pw", password)
    made = []
    for note in ("older", "newer"):
        created = jb(lab, "create", note, password_file=good)
        assert created.returncode == 0, created.stderr
        made.append(created.stdout.strip().splitlines()[-1])
    backups = lab.host("ctl0").root / "var/lib/juju/backups"
    with ArgvWatch(password.encode()) as watch:
        pruned = jb(lab, "prune", "--keep-last", "1", "--yes", password_file=good)
    assert pruned.returncode == 0, pruned.stderr
    assert watch.seen == [] and watch.sudo_seen
    assert password not in pruned.stdout + pruned.stderr
    assert backup_ids(lab, good) == [made[-1]]
    assert not (backups / f"{made[0]}.tar.gz").exists() and (backups / f"{made[1]}.tar.gz").exists()


def cli_base(lab: Lab) -> tuple[list[str], dict[str, Any]]:
    """Return the jujubackup argv prefix for `lab` and the subprocess.run options these tests use."""
    return [JUJUBACKUP, "-F", str(lab.ssh_config)], {
        "capture_output": True, "text": True, "timeout": 900, "check": False, "stdin": subprocess.DEVNULL}


def create_on_ctl0(base: list[str], run: dict[str, Any]) -> str:
    """Create a backup on ctl0 (its passwordless sudo) and return its ID; fail the test if it fails."""
    created = subprocess.run([*base, "-H", "ctl0", "create"], **run)
    assert created.returncode == 0, created.stderr
    return str(created.stdout.strip().splitlines()[-1])


def test_a_disaster_recovery_restore_and_repoint_through_a_password_sudo(
    lab_session: None, tmp_path: Path
) -> None:
    """restore --archive pushes the archive to the target (run_stream) and runs its detached steps,
    all as root through the target's password sudo; `repoint --target` then reads the restored
    controller's database through that sudo and re-points the workload machines' agents."""
    lab = Lab.create(controllers=1, spares=1, machines=2)
    try:
        ctl, spare = lab.host("ctl0"), lab.host("spare0")
        before = {h.name: confs(h) for h in lab.workloads}
        password = spare.add_password_sudo_user(USER)
        good = secret_file(tmp_path, "pw", password)
        base, run = cli_base(lab)
        backup_id = create_on_ctl0(base, run)
        archive = tmp_path / "backup.tar.gz"
        got = subprocess.run([*base, "-H", "ctl0", "download", backup_id, str(archive)], **run)  # type: ignore[call-overload]
        assert got.returncode == 0, got.stderr
        ctl.power_off()
        with ArgvWatch(password.encode()) as watch:
            restored = subprocess.run(  # type: ignore[call-overload]
                [*base, "--sudo-password-file", str(good), "restore", "--archive", str(archive),
                 "--target", f"{USER}@spare0", "--yes", "--no-repoint"], **run)
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert watch.seen == [] and watch.sudo_seen
        assert password not in restored.stdout + restored.stderr
        assert (spare.root / "var/lib/juju/agents/machine-0/agent.conf").exists()
        for h in lab.workloads:  # --no-repoint: the agents still point at the powered-off ctl0
            assert all(f"{spare.ip}:17070" not in text for text in confs(h).values())
        with ArgvWatch(password.encode()) as watch:
            repointed = subprocess.run(  # type: ignore[call-overload]
                [*base, "--sudo-password-file", str(good), "repoint", "--target", f"{USER}@spare0"],
                **run, env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")})
        assert repointed.returncode == 0, repointed.stdout + repointed.stderr
        assert watch.seen == [] and watch.sudo_seen
        assert password not in repointed.stdout + repointed.stderr
        for h in lab.workloads:
            assert_repointed(h, before[h.name], f"{spare.ip}:17070")
    finally:
        lab.teardown()


def test_a_drill_through_a_password_sudo(lab_session: None, tmp_path: Path) -> None:
    """drill pushes the archive to the throwaway target, closes its egress and restores and checks
    there, every step as root through the target's password sudo; every check passes."""
    lab = Lab.create(controllers=1, spares=1)
    try:
        password = lab.host("spare0").add_password_sudo_user(USER)
        good = secret_file(tmp_path, "pw", password)
        base, run = cli_base(lab)
        backup_id = create_on_ctl0(base, run)
        with ArgvWatch(password.encode()) as watch:
            drilled = subprocess.run(  # type: ignore[call-overload]
                [*base, "-H", "ctl0", "--sudo-password-file", str(good), "--format", "json", "drill",
                 backup_id, "--target", f"{USER}@spare0"], **run)
        assert drilled.returncode == 0, drilled.stdout + drilled.stderr
        report = json.loads(drilled.stdout)
        assert report["backup"] == backup_id and report["result"] == "passed", report
        assert report["checks"] and all(c["result"] == "passed" for c in report["checks"]), report["checks"]
        assert watch.seen == [] and watch.sudo_seen
        assert password not in drilled.stdout + drilled.stderr
    finally:
        lab.teardown()
