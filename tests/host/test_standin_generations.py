"""Each juju-db generation's stand-ins accept exactly the flags of their version and refuse the rest as
the real tools do (tests/lab/standins/versions.py names the mongo-tools tags and MongoDB releases read);
juju-db 4.4.30 (Juju 3.6) refuses a client without a certificate that chains to ca.crt. Run locally."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import provision

pytestmark = pytest.mark.host  # root: a loopback sshd, mounts or root-owned files (no lab)

HOST_PYTHON = "/usr/bin/python3"
PROFILES = ["juju-2.8", "juju-2.8-bionic", "juju-2.8-focal", "juju-2.9", "juju-3.6"]
VERSIONS = {  # profile -> (mongod/shell version, tools version)
    "juju-2.8": ("3.2.22", "r3.2.22"),
    "juju-2.8-bionic": ("3.6.3", "r3.6.3"),
    "juju-2.8-focal": ("4.0.9", "r4.0.9"),
    "juju-2.9": ("4.4.18", "100.6.1"),
    "juju-3.6": ("4.4.30", "100.9.4"),
}
HAS_TLS_INSECURE = {"juju-2.9", "juju-3.6"}  # mongo-tools 100.x; not r3.2.22, r3.6.3, r4.0.9
HAS_TLS_ALIASES = {"juju-2.9", "juju-3.6"}  # shell and mongod --tls*: MongoDB 4.2+


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tools:
    """One profile's stand-ins installed under a temp root."""

    def __init__(self, root: Path, profile: str) -> None:
        self.root, self.profile = root, profile
        self.spec = provision.PROFILES[profile]
        provision.install_mongo_tools(root, profile, lib_ref=str(root / provision.LIB_DIR.lstrip("/")))

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        exe = str(self.root / self.spec.tools[tool].lstrip("/"))
        return subprocess.run(
            [exe, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )


@pytest.fixture(scope="module", params=PROFILES)
def tools(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Tools:
    return Tools(tmp_path_factory.mktemp(request.param), request.param)


def test_versions(tools: Tools) -> None:
    server, tools_version = VERSIONS[tools.profile]
    assert tools.run("mongod", "--version").stdout.startswith(f"db version v{server}\n")
    assert tools.run("mongo", "--version").stdout.startswith(f"MongoDB shell version v{server}\n")
    for tool in ("mongodump", "mongorestore"):
        assert tools.run(tool, "--version").stdout.startswith(f"{tool} version: {tools_version}\n")


def test_tools_tls_insecure_only_on_100x(tools: Tools) -> None:
    port = str(_free_port())
    r = tools.run(
        "mongodump", "--host", "127.0.0.1", "--port", port, "--ssl", "--tlsInsecure", "--out", "/nonexistent"
    )
    if tools.profile in HAS_TLS_INSECURE:
        assert r.returncode == 1 and "no reachable servers" in r.stderr  # accepted; nothing listens
    else:
        assert r.returncode == 3, r.stderr
        assert 'error parsing command line options: unknown option "tlsInsecure"' in r.stderr
    # --ssl --sslAllowInvalidCertificates: every generation (hidden but kept in 100.x, options.go)
    r = tools.run(
        "mongodump",
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--ssl",
        "--sslAllowInvalidCertificates",
        "--out",
        "/x",
    )
    assert r.returncode == 1 and "no reachable servers" in r.stderr
    # --tls itself never existed in the tools (only --tlsInsecure), nor --tlsCAFile
    for flag in ("--tls", "--tlsCAFile=/x"):
        r = tools.run("mongodump", "--host", "127.0.0.1", "--port", port, flag, "--out", "/nonexistent")
        assert r.returncode == 3 and "unknown option" in r.stderr


def test_shell_tls_options_only_from_4_2(tools: Tools) -> None:
    port = str(_free_port())
    r = tools.run(
        "mongo",
        "--quiet",
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--tls",
        "--tlsAllowInvalidCertificates",
        "--eval",
        "quit()",
    )
    if tools.profile in HAS_TLS_ALIASES:
        assert "couldn't connect to server" in r.stdout  # accepted; nothing listens
    else:
        assert r.returncode == 2
        assert "Error parsing command line: unrecognised option" in r.stderr and '"tls"' in r.stderr
    r = tools.run(
        "mongo",
        "--quiet",
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--ssl",
        "--sslAllowInvalidCertificates",
        "--eval",
        "quit()",
    )
    assert r.returncode == 1 and "couldn't connect to server" in r.stdout


def test_mongod_options_per_version(tools: Tools, tmp_path: Path) -> None:
    r = tools.run("mongod", "--dbpath", str(tmp_path), "--tlsMode", "requireTLS", "--version")
    assert (r.returncode == 0) == (tools.profile in HAS_TLS_ALIASES), r.stderr
    r = tools.run("mongod", "--dbpath", str(tmp_path), "--bind_ip_all", "--version")
    assert (r.returncode == 0) == (tools.profile != "juju-2.8"), r.stderr  # --bind_ip_all: 3.6+


# --------------------------------------------------------------------------- mutual TLS (juju-db 4.4.30)


@pytest.fixture
def mutual_tls(tmp_path: Path) -> Iterator[tuple[Tools, int, Path]]:
    """A 4.4.30 stand-in mongod started as Juju 3.6 configures it (CA file, no connections without a
    certificate): (tools, port, dir holding server.pem, ca.crt and a foreign client.pem)."""
    tools = Tools(tmp_path / "root", "juju-3.6")
    cluster = provision.new_cluster(
        "juju-3.6", [provision.HostSpec("ctl0", "127.0.0.1", "controller", "0", "juju-3.6")]
    )
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "server.pem").write_text(cluster.controller_cert + cluster.controller_key)
    (certs / "ca.crt").write_text(cluster.ca_cert)
    other = provision.new_cluster(
        "juju-3.6", [provision.HostSpec("x", "127.0.0.1", "controller", "0", "juju-3.6")]
    )
    (certs / "client.pem").write_text(other.controller_cert + other.controller_key)  # another controller's CA
    (tmp_path / "db").mkdir()
    port = _free_port()
    exe = str(tools.root / tools.spec.tools["mongod"].lstrip("/"))
    proc = subprocess.Popen(
        [
            exe,
            "--dbpath",
            str(tmp_path / "db"),
            "--port",
            str(port),
            "--bind_ip",
            "127.0.0.1",
            "--tlsMode",
            "requireTLS",
            "--tlsCertificateKeyFile",
            str(certs / "server.pem"),
            "--tlsCAFile",
            str(certs / "ca.crt"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert proc.poll() is None, "mongod exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        yield tools, port, certs
    finally:
        proc.terminate()
        proc.wait(10)


PING = 'print(JSON.stringify(db.adminCommand({"ping": 1})))'


def test_4_4_30_requires_a_client_certificate_that_chains_to_ca_crt(
    mutual_tls: tuple[Tools, int, Path], tmp_path: Path
) -> None:
    tools, port, certs = mutual_tls
    conn = ["--host", "localhost", "--port", str(port)]
    # no client certificate (Juju 3.6 before #22271: --ssl --tlsInsecure): refused in the handshake
    r = tools.run("mongodump", *conn, "--ssl", "--tlsInsecure", "--out", str(tmp_path / "d1"))
    assert r.returncode == 1 and "Failed:" in r.stderr and "no reachable servers" in r.stderr
    r = tools.run("mongo", "--quiet", *conn, "--tls", "--tlsAllowInvalidCertificates", "--eval", PING)
    assert r.returncode == 1 and "couldn't connect to server" in r.stdout
    # a certificate of another CA: refused too
    r = tools.run(
        "mongodump",
        *conn,
        "--ssl",
        "--tlsInsecure",
        "--sslPEMKeyFile",
        str(certs / "client.pem"),
        "--out",
        str(tmp_path / "d2"),
    )
    assert r.returncode == 1 and "no reachable servers" in r.stderr
    # as Juju does (state/backups/db.go @07d78520; scripts/mongo-client.sh): server.pem + ca.crt
    r = tools.run(
        "mongodump",
        *conn,
        "--ssl",
        "--sslCAFile",
        str(certs / "ca.crt"),
        "--sslPEMKeyFile",
        str(certs / "server.pem"),
        "--sslPEMKeyPassword",
        "ignore",
        "--out",
        str(tmp_path / "d3"),
    )
    assert r.returncode == 0, r.stderr
    r = tools.run(
        "mongo",
        "--quiet",
        *conn,
        "--tls",
        "--tlsCAFile",
        str(certs / "ca.crt"),
        "--tlsCertificateKeyFile",
        str(certs / "server.pem"),
        "--eval",
        PING,
    )
    assert r.returncode == 0 and '"ok":1' in r.stdout.replace(" ", ""), r.stdout + r.stderr
