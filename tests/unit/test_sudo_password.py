"""sudo with a password (issue 15): where the password comes from (file 0600, environment, terminal)
and the handshake on a channel (host/sudo.py) against a scripted sudo: answered once, the command
released only after the ready marker, a wrong password refused at once, nothing of it in argv."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jujubackup import cli, sudopassword
from jujubackup.errors import EXIT_CONNECT, EXIT_REFUSED, ConnectError, RefusedError, UsageError
from jujubackup.host.sudo import SudoAuth, SudoPasswordError, answer
from jujubackup.settings import ConnectionSettings
from jujubackup.sudopassword import SudoPassword


class ScriptedSudo:
    """A channel running `sudo -S -p PROMPT -- sh -c 'printf READY >&2; exec CMD'`: prompts (unless
    `asks` is False), checks the line written to stdin, prompts again after a wrong one (up to
    `tries`), then exits 1; after a right one prints the marker and `early` on stderr and every
    later byte written is the command's stdin."""

    def __init__(self, auth: SudoAuth, password: str, *, asks: bool = True, tries: int = 3,
                 early: bytes = b"") -> None:
        self.auth = auth
        self.password = password
        self.tries = tries
        self.early = early
        self.stderr = b""
        self.exited = False
        self.password_lines: list[bytes] = []
        self.command_stdin = b""
        self.released = False
        self.timeout: float | None = None
        if asks:
            self.stderr += auth.prompt.encode()
        else:
            self._release()

    def _release(self) -> None:
        self.released = True
        self.stderr += (self.auth.ready + "\n").encode() + self.early

    def recv_stderr(self, nbytes: int) -> bytes:
        if self.stderr:
            data, self.stderr = self.stderr[:nbytes], self.stderr[nbytes:]
            return data
        if self.exited:
            return b""
        raise TimeoutError

    def recv_stderr_ready(self) -> bool:
        return bool(self.stderr)

    def exit_status_ready(self) -> bool:
        return self.exited

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def sendall(self, data: bytes) -> None:
        if self.released:
            self.command_stdin += data
            return
        self.password_lines.append(data)
        if data == (self.password + "\n").encode():
            self._release()
            return
        self.tries -= 1
        if self.tries:
            self.stderr += b"Sorry, try again.\n" + self.auth.prompt.encode()
        else:
            self.stderr += b"sudo: 1 incorrect password attempt\n"
            self.exited = True


def test_the_prompt_is_answered_once_and_the_command_released_after_the_marker() -> None:
    auth = SudoAuth("s3cret pass")
    chan = ScriptedSudo(auth, "s3cret pass", early=b"the command's first stderr\n")
    early = answer(chan, auth, "operator@ctl0", timeout=5)
    assert chan.password_lines == [b"s3cret pass\n"]
    assert early == b"the command's first stderr\n"
    assert chan.command_stdin == b"" and chan.timeout is None


def test_no_prompt_means_no_password_is_written() -> None:
    """NOPASSWD or a cached timestamp: the password must not become the script's first line."""
    auth = SudoAuth("s3cret")
    chan = ScriptedSudo(auth, "s3cret", asks=False)
    assert answer(chan, auth, "operator@ctl0", timeout=5) == b""
    assert chan.password_lines == []


def test_a_wrong_password_is_refused_at_the_second_prompt() -> None:
    auth = SudoAuth("wrong")
    chan = ScriptedSudo(auth, "right")
    with pytest.raises(SudoPasswordError) as caught:
        answer(chan, auth, "operator@ctl0", timeout=5)
    assert chan.password_lines == [b"wrong\n"]  # not tried again: sudo would log every try
    assert not chan.released
    err = caught.value
    assert err.exit_code == EXIT_CONNECT
    assert err.message == "sudo refused the password for operator@ctl0 (nothing was run)"
    assert "wrong" not in err.message + (err.hint or "")


def test_sudo_exiting_after_one_wrong_try_is_a_refusal_too() -> None:
    auth = SudoAuth("wrong")
    chan = ScriptedSudo(auth, "right", tries=1)
    with pytest.raises(SudoPasswordError):
        answer(chan, auth, "operator@ctl0", timeout=5)


def test_sudo_refusing_before_any_prompt_says_why() -> None:
    auth = SudoAuth("pw")
    chan = ScriptedSudo(auth, "pw", asks=False)
    chan.released, chan.exited = False, True
    chan.stderr = b"operator is not in the sudoers file.  This incident will be reported.\n"
    with pytest.raises(ConnectError) as caught:
        answer(chan, auth, "operator@ctl0", timeout=5)
    assert not isinstance(caught.value, SudoPasswordError)
    assert "not in the sudoers file" in caught.value.message


def test_the_command_line_holds_the_nonces_never_the_password() -> None:
    auth = SudoAuth("p4ss-word")
    line = auth.command("bash -s")
    assert "p4ss-word" not in line and "p4ss-word" not in repr(auth)
    assert line.startswith(f"sudo -S -p {auth.prompt} -- sh -c ")
    assert auth.ready in line and line.endswith("exec bash -s'")
    assert SudoAuth("x").prompt != auth.prompt


def password_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "pw"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_file_wins_over_the_environment_which_is_emptied(tmp_path: Path) -> None:
    env = {sudopassword.ENV: "from-env", "OTHER": "x"}
    given = sudopassword.from_options(password_file(tmp_path, "from-file\nignored\n"), env, interactive=False)
    assert given.given and given.get("u@h") == "from-file"
    assert env == {"OTHER": "x"}
    env = {sudopassword.ENV: "from-env"}
    assert sudopassword.from_options(None, env, interactive=False).get("u@h") == "from-env"
    assert env == {}
    assert "from" not in repr(given)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_file_group_or_others_can_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    with pytest.raises(RefusedError) as caught:
        sudopassword.read_file(password_file(tmp_path, "pw\n", mode))
    assert caught.value.exit_code == EXIT_REFUSED and caught.value.hint == f"chmod 600 {tmp_path / 'pw'}"


@pytest.mark.parametrize("text", ["", "\n", "a\0b"])
def test_an_unusable_password_is_a_usage_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(UsageError):
        sudopassword.read_file(password_file(tmp_path, text))


def test_the_terminal_is_asked_once_for_every_host() -> None:
    asked: list[str] = []

    def ask(who: str) -> str:
        asked.append(who)
        return "typed\n"

    password = SudoPassword(ask=ask)
    assert not password.given and password.can_ask
    assert password.get("operator@ctl0") == "typed"
    assert password.get("operator@ctl1") == "typed"
    assert asked == ["operator@ctl0"]


def test_without_a_terminal_nothing_can_be_asked() -> None:
    password = sudopassword.from_options(None, {}, interactive=False)
    assert not password.can_ask
    with pytest.raises(ConnectError) as caught:
        password.get("operator@ctl0")
    assert "--sudo-password-file" in (caught.value.hint or "")


def test_the_cli_refuses_a_loose_file_before_connecting(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    loose = password_file(tmp_path, "pw\n", 0o644)
    code = cli.main(["--sudo-password-file", str(loose), "-H", "ctl0", "status"],
                    make_connector=lambda settings: pytest.fail("must not connect"))
    assert code == EXIT_REFUSED
    assert f"sudo password file {loose} must be mode 0600 (it is 0644" in capsys.readouterr().err


def test_the_cli_hands_the_password_to_the_connector_and_takes_it_out_of_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(sudopassword.ENV, "env-pw")
    seen: list[ConnectionSettings] = []

    def connector(settings: ConnectionSettings) -> object:
        seen.append(settings)
        raise ConnectError("stop here")

    cli.main(["-H", "ctl0", "status"], make_connector=connector)  # type: ignore[arg-type]
    assert sudopassword.ENV not in os.environ
    assert seen and seen[0].sudo_password is not None and seen[0].sudo_password.get("x") == "env-pw"
    assert "env-pw" not in repr(seen[0])
