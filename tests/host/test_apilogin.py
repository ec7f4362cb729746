"""apilogin: Admin.Login v3 over a websocket over TLS, through a real SSH connection
(tests/host/local_sshd.py) to the lab's API stand-in server side (tests/lab/standins/api.py) on
127.0.0.1, its credential check replaced by a fixed tag/password/nonce."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from jujubackup import apilogin
from jujubackup.errors import VerifyError
from jujubackup.host.ssh import SSHHost
from tests.host.local_sshd import LocalSSHD, local_sshd
from tests.host.test_host_ssh import target_for
from tests.lab.provision import _make_certs
from tests.lab.standins import api as standin

pytestmark = pytest.mark.host  # root: a loopback sshd, mounts or root-owned files (no lab)

MODEL = "c0ffee00-0000-4000-8000-000000000000"
GOOD = {"auth-tag": "machine-0", "credentials": "s3cret-pw", "nonce": "user-admin:bootstrap"}


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSSHD]:
    with local_sshd(tmp_path_factory.mktemp("sshd") / "server") as server:
        yield server


@pytest.fixture
def host(sshd: LocalSSHD) -> Iterator[SSHHost]:
    with SSHHost.connect(target_for(sshd)) as connected:
        yield connected


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """The stand-in API server (its protocol code), accepting only GOOD for model MODEL."""
    ca, _, cert, key = _make_certs("c0ffee00-1111-4000-8000-000000000000", ["127.0.0.1"])
    work = tmp_path_factory.mktemp("api")
    (work / "leaf.pem").write_text(cert + key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(work / "leaf.pem"))
    listener = socket.create_server(("127.0.0.1", 0))

    def check(conf: dict[str, Any], model_uuid: str, params: dict[str, Any]) -> tuple[str, str] | None:
        if model_uuid != MODEL:
            return (f'unknown model: "{model_uuid}" (model not found)', "model not found")
        if params != GOOD:
            return ("invalid entity name or password (unauthorized access)", "unauthorized access")
        return None

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(5)
                    standin.serve(
                        tls,
                        standin.read_http_head(tls),
                        {"controller": "controller-x"},
                        lambda *a: None,
                        "2.9.42",
                    )
            except (OSError, ssl.SSLError, standin.WSClosed):
                conn.close()

    original = standin.check_login
    standin.check_login = check  # type: ignore[assignment]
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], ca
    standin.check_login = original  # type: ignore[assignment]
    listener.close()


def test_the_machine_logs_in_with_its_credentials(host: SSHHost, api: tuple[int, str]) -> None:
    port, ca = api
    result = apilogin.login(
        host, "127.0.0.1", port, ca, MODEL, "machine-0", "s3cret-pw", "user-admin:bootstrap"
    )
    assert result == apilogin.LoginResult(f"model-{MODEL}", "controller-x", "2.9.42")


def test_a_wrong_password_or_model_is_refused_without_showing_the_password(
    host: SSHHost, api: tuple[int, str]
) -> None:
    port, ca = api
    with pytest.raises(VerifyError, match="refused machine-0's login: invalid entity name") as err:
        apilogin.login(host, "127.0.0.1", port, ca, MODEL, "machine-0", "wrong-pw", "user-admin:bootstrap")
    assert "wrong-pw" not in err.value.message
    with pytest.raises(VerifyError, match="model not found"):
        apilogin.login(host, "127.0.0.1", port, ca, MODEL.replace("c0", "d0"), "machine-0", "s3cret-pw", "n")


def test_another_ca_is_refused(host: SSHHost, api: tuple[int, str]) -> None:
    port, _ = api
    other_ca = _make_certs("d0d0d0d0-0000-4000-8000-000000000000", ["127.0.0.1"])[0]
    with pytest.raises(VerifyError, match="does not chain to the controller CA"):
        apilogin.login(host, "127.0.0.1", port, other_ca, MODEL, "machine-0", "s3cret-pw", "n")
