"""The lab's controller certificate (the juju-db server.pem and the API's) names what a real Juju
controller's does: the real Juju 2.8 archive's /var/lib/juju/server.pem (tests/paths.py VALID_28)
names DNS anything, juju-apiserver, juju-mongodb, localhost and the IPs of the machine's addresses,
loopback included (127.0.0.1, ::1): juju/juju worker/certupdater/certupdater.go adds every machine
address but "localhost", and the machiner reports every interface address but link-local ones
(worker/machiner setMachineAddresses). Juju's own mongo clients verify the name juju-mongodb against
the controller CA (juju/juju mongo/open.go DialInfo: tlsConfig.ServerName = "juju-mongodb")."""

from __future__ import annotations

import io
import ipaddress
import tarfile

from cryptography import x509

from tests.lab.provision import _make_certs
from tests.paths import VALID_28

MACHINE_IP = "10.201.0.77"


def sans(pem: bytes) -> tuple[set[str], set[str]]:
    cert = x509.load_pem_x509_certificate(pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(names.get_values_for_type(x509.DNSName)), {
        str(i) for i in names.get_values_for_type(x509.IPAddress)
    }


def real_28_server_pem() -> bytes:
    with tarfile.open(VALID_28) as outer:
        root = outer.extractfile("juju-backup/root.tar")
        assert root is not None
        with tarfile.open(fileobj=io.BytesIO(root.read())) as inner:
            member = inner.extractfile("var/lib/juju/server.pem")
            assert member is not None
            return member.read()


def test_the_lab_certificate_names_what_the_real_juju_28_certificate_names() -> None:
    real_dns, real_ips = sans(real_28_server_pem())
    _, _, cert, _ = _make_certs("c0ffee00-0000-4000-8000-000000000000", [MACHINE_IP])
    lab_dns, lab_ips = sans(cert.encode())
    assert lab_dns == real_dns == {"anything", "juju-apiserver", "juju-mongodb", "localhost"}
    loopback = {i for i in real_ips if ipaddress.ip_address(i).is_loopback}
    assert loopback == {"127.0.0.1", "::1"}
    assert lab_ips == loopback | {MACHINE_IP}
    assert len(real_ips - loopback) == 1  # the machine's one address
