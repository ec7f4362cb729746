"""apiprobe: the API's certificate checked against the controller CA, through a real SSH connection
(tests/host/local_sshd.py) to a real TLS server on 127.0.0.1 that records the SNI it was sent."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from jujubackup import apiprobe
from jujubackup.errors import EXIT_VERIFY, VerifyError
from jujubackup.host.ssh import SSHHost
from tests.host.local_sshd import LocalSSHD, local_sshd
from tests.host.test_host_ssh import target_for
from tests.lab.provision import _make_certs

pytestmark = pytest.mark.host  # root: a loopback sshd, mounts or root-owned files (no lab)


@dataclass
class TLSServer:
    """A TLS listener on 127.0.0.1 serving one certificate; `names` records each hello's SNI."""

    port: int
    ca: str
    leaf: str
    names: list[str | None] = field(default_factory=list)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSSHD]:
    with local_sshd(tmp_path_factory.mktemp("sshd") / "server") as server:
        yield server


@pytest.fixture
def host(sshd: LocalSSHD) -> Iterator[SSHHost]:
    with SSHHost.connect(target_for(sshd)) as connected:
        yield connected


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSServer]:
    ca, _, cert, key = _make_certs("c0ffee00-0000-4000-8000-000000000000", ["10.201.0.77"])
    work = tmp_path_factory.mktemp("api")
    (work / "leaf.pem").write_text(cert + key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(work / "leaf.pem"))
    listener = socket.create_server(("127.0.0.1", 0))
    server = TLSServer(listener.getsockname()[1], ca, cert)
    context.sni_callback = lambda _sock, name, _ctx: server.names.append(name)  # type: ignore[assignment]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(2)
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server
    listener.close()


def test_the_served_certificate_chains_to_the_ca_and_no_sni_is_sent(host: SSHHost, api: TLSServer) -> None:
    before = len(api.names)
    cert = apiprobe.probe_api(host, "127.0.0.1", api.port, api.ca)
    assert cert.der == ssl.PEM_cert_to_DER_cert(api.leaf)
    assert "10.201.0.77" in cert.ip_names and "juju-apiserver" in cert.dns_names
    assert cert.names_address  # 127.0.0.1 is among the lab certificate's names
    assert api.names[before:] == [None]  # as a client dialling an IP: no server name sent
    assert cert.as_dict()["chains-to-ca"] is True
    assert "juju-generated CA" in cert.issuer


def test_a_certificate_of_another_ca_is_refused(host: SSHHost, api: TLSServer) -> None:
    other_ca = _make_certs("0ther000-0000-4000-8000-000000000000", ["10.201.0.77"])[0]
    with pytest.raises(VerifyError) as err:
        apiprobe.probe_api(host, "127.0.0.1", api.port, other_ca)
    assert err.value.exit_code == EXIT_VERIFY
    assert "does not chain to the controller CA" in err.value.message


def test_nothing_listening_is_a_verify_failure_naming_the_address(host: SSHHost) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(VerifyError) as err:
        apiprobe.probe_api(host, "127.0.0.1", port, _make_certs("x", [])[0], timeout=5)
    assert f"127.0.0.1:{port} does not answer" in err.value.message


def test_the_ca_comes_from_agent_conf(tmp_path: Path) -> None:
    ca = _make_certs("c0ffee00-0000-4000-8000-000000000000", [])[0]
    indented = "".join(f"  {line}\n" for line in ca.strip().splitlines())
    text = f"# format 2.0\ntag: machine-0\ncacert: |\n{indented}apiport: 17070\n"
    assert apiprobe.ca_from_agent_conf(text).strip() == ca.strip()
    with pytest.raises(VerifyError, match="no cacert"):
        apiprobe.ca_from_agent_conf("tag: machine-0\n")
