"""An exec request sshd refuses on a live connection (OpenSSH session.c answers "exec" with failure
when its pipe or fork fails) is sent once more; a second refusal, or a connection that dropped, is a
ConnectError (exit 3). The server here is paramiko's own, over a socketpair: the refusal is a real
SSH_MSG_CHANNEL_FAILURE on the wire, not a mocked exception."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import paramiko
import pytest

from jujubackup.errors import EXIT_CONNECT, ConnectError
from jujubackup.host import ssh
from jujubackup.host.channel import ExecRefused, start_command
from jujubackup.host.target import SSHTarget

HOST_KEY = paramiko.RSAKey.generate(1024)


@dataclass
class Refusing(paramiko.ServerInterface):
    """Accepts any session; refuses the first `refusals` exec requests, then runs none but answers
    success and exits 0 at once."""

    refusals: int
    commands: list[str] = field(default_factory=list)
    transport: paramiko.Transport | None = None

    def check_auth_none(self, username: str) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def get_allowed_auths(self, username: str) -> str:
        return "none"

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.commands.append(command.decode())
        if len(self.commands) <= self.refusals:
            return False
        threading.Timer(0.05, lambda: (channel.send_exit_status(0), channel.close())).start()
        return True


class Running(Refusing):
    """Starts every command and never ends it."""

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.commands.append(command.decode())
        return True


@contextmanager
def connected(
    refusals: int, interface: Refusing | None = None
) -> Iterator[tuple[paramiko.Transport, Refusing]]:
    """A client transport authenticated to an in-process paramiko server that refuses `refusals`
    exec requests (or the given server interface)."""
    near, far = socket.socketpair()
    server = paramiko.Transport(far)
    server.add_server_key(HOST_KEY)
    interface = interface or Refusing(refusals)
    interface.transport = server
    server.start_server(event=threading.Event(), server=interface)  # returns at once
    client = paramiko.Transport(near)
    client.start_client(timeout=10)
    client.auth_none("root")
    try:
        yield client, interface
    finally:
        client.close()
        server.close()


class _Client:
    def __init__(self, transport: paramiko.Transport) -> None:
        self.transport = transport

    def get_transport(self) -> paramiko.Transport:
        return self.transport


def host_over(transport: paramiko.Transport) -> ssh.SSHHost:
    """An SSHHost whose connection is `transport` (only what _exec reads is set)."""
    host = ssh.SSHHost.__new__(ssh.SSHHost)
    host.target = SSHTarget(name="ctl0", hostname="10.201.0.10")
    host._client = _Client(transport)  # type: ignore[assignment]
    return host


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh, "EXEC_RETRY_PAUSE", 0)


def test_a_refused_exec_is_exec_refused_and_the_connection_stays_up() -> None:
    with connected(refusals=1) as (transport, server):
        with pytest.raises(ExecRefused):
            start_command(transport, "bash -s", timeout=5)
        assert transport.is_active()
        chan = start_command(transport, "bash -s", timeout=5)
        assert chan.recv_exit_status() == 0
        assert server.commands == ["bash -s", "bash -s"]


def test_one_refusal_is_retried_and_the_command_runs_once() -> None:
    with connected(refusals=1) as (transport, server):
        chan = host_over(transport)._exec("bash -s")
        assert chan.recv_exit_status() == 0
        assert server.commands == ["bash -s", "bash -s"]  # refused, then started: one run


def test_two_refusals_are_a_connect_error_naming_sshd() -> None:
    with connected(refusals=2) as (transport, server):
        with pytest.raises(ConnectError) as caught:
            host_over(transport)._exec("bash -s")
        assert caught.value.exit_code == EXIT_CONNECT
        assert "sshd on ctl0 refused `bash` 2 times on a live connection" in str(caught.value)
        assert "journal" in (caught.value.hint or "")
        assert len(server.commands) == 2


def test_a_dropped_connection_is_not_retried() -> None:
    with connected(refusals=0) as (transport, server):
        transport.close()
        with pytest.raises(ConnectError) as caught:
            host_over(transport)._exec("bash -s")
        assert "connection to ctl0 is closed" in str(caught.value)
        assert server.commands == []


def test_a_connection_the_server_closes_mid_command_says_so() -> None:
    with connected(0, Running(0)) as (transport, server):
        host = host_over(transport)
        chan = host._exec("bash -s")
        assert server.transport is not None
        threading.Timer(0.1, server.transport.close).start()
        with pytest.raises(ConnectError) as caught:
            host._communicate(chan, b"", 10, "probe")
        assert str(caught.value).startswith(
            "connection to ctl0 lost while probe: the server closed the connection"
        )


def test_a_connection_closed_here_mid_command_says_so() -> None:
    with connected(0, Running(0)) as (transport, _server):
        host = host_over(transport)
        chan = host._exec("bash -s")
        threading.Timer(0.1, transport.close).start()
        with pytest.raises(ConnectError) as caught:
            host._communicate(chan, b"", 10, "probe")
        assert "lost while probe: the connection was closed on this side" in str(caught.value)


def test_an_exec_on_a_connection_the_server_closed_says_both() -> None:
    with connected(0, Running(0)) as (transport, server):
        assert server.transport is not None
        server.transport.close()
        while transport.is_active():
            threading.Event().wait(0.01)
        lost = host_over(transport)._lost("starting `bash`", paramiko.SSHException("Channel closed."))
        assert str(lost).startswith(
            "connection to ctl0 lost while starting `bash`: Channel closed.; the server closed the connection"
        )
