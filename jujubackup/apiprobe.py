"""Is the controller's API the controller's? A TLS handshake with its API port, checked against the CA.

Juju (>= 2.8) serves its API through `pki/tls.AuthoritySNITLSGetter` (juju/juju pki/tls/sni.go:
a client hello without a server name gets the `controllerip` leaf), and the certupdater makes that
leaf anew at every start, signed by the controller CA, for the machine's addresses (juju/juju
worker/certupdater/certupdater.go, `LeafRequestForGroup(pki.ControllerIPLeafGroup)...Commit()`).
jujud also rewrites /var/lib/juju/server.pem at start (cmd/jujud/agent/machine.go). So the
certificate a client gets is NOT server.pem, and pinning it would report every good restore as
failed; what holds is that it chains to the CA in agent.conf (`cacert`).

The connection goes through the Host seam (`Host.open_tcp`: an SSH direct-tcpip channel, so a jump
host between the workstation and the controller works, and the API port need not be reachable from
here); TLS runs in memory over it (ssl.MemoryBIO / SSLObject). Like OpenSSL's s_client and CPython
dialling an IP, the probe sends no SNI, so it gets what any such client gets.

Public API:
    probe_api(host, address, port, ca_pem, *, timeout) -> ApiCertificate   raise VerifyError
    ca_from_agent_conf(text) -> str                                          raise VerifyError
    ca_fingerprint(pem) -> str                                               raise VerifyError
    ApiCertificate.as_dict()
"""

from __future__ import annotations

import hashlib
import ipaddress
import ssl
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from jujubackup.errors import ConnectError, VerifyError
from jujubackup.host.base import Host, Tunnel

HANDSHAKE_TIMEOUT = 10.0
CHUNK = 65536


@dataclass(frozen=True)
class ApiCertificate:
    """What the API served, verified to chain to the CA: the leaf's DER, its SHA-256, subject and
    issuer (RFC 4514-ish text), its IP and DNS names, and whether it names `address`."""

    address: str
    port: int
    der: bytes
    sha256: str
    subject: str
    issuer: str
    ip_names: tuple[str, ...]
    dns_names: tuple[str, ...]

    @property
    def names_address(self) -> bool:
        """True when the certificate's subjectAltName holds the address it was reached at."""
        try:
            wanted = ipaddress.ip_address(self.address)
        except ValueError:
            return self.address.lower() in (n.lower() for n in self.dns_names)
        return any(_same_ip(wanted, n) for n in self.ip_names)

    def as_dict(self) -> dict[str, Any]:
        """Return plain data for the restore's report (--format json/yaml)."""
        return {
            "address": f"{self.address}:{self.port}",
            "chains-to-ca": True,
            "sha256": self.sha256,
            "subject": self.subject,
            "issuer": self.issuer,
            "ip-names": list(self.ip_names),
            "dns-names": list(self.dns_names),
            "names-address": self.names_address,
        }


def ca_from_agent_conf(text: str) -> str:
    """Given agent.conf text, return its `cacert` PEM. Raise VerifyError if there is none."""
    try:
        doc = YAML(typ="safe", pure=True).load(text)
    except YAMLError as err:
        raise VerifyError(f"agent.conf is not YAML: {err}") from err
    ca = doc.get("cacert") if isinstance(doc, dict) else None
    if not isinstance(ca, str) or "-----BEGIN CERTIFICATE-----" not in ca:
        raise VerifyError("agent.conf has no cacert", hint="is this a Juju controller's agent.conf?")
    return ca


def ca_fingerprint(pem: str) -> str:
    """Given a PEM certificate (the first one counts), return the SHA-256 of its DER bytes (hex): what
    identifies a controller CA whatever its PEM line wrapping. Raise VerifyError if it is no PEM
    certificate."""
    start = pem.find("-----BEGIN CERTIFICATE-----")
    end = pem.find("-----END CERTIFICATE-----", start)
    if start < 0 or end < 0:
        raise VerifyError("not a PEM certificate", hint="is this a Juju controller's agent.conf cacert?")
    try:
        der = ssl.PEM_cert_to_DER_cert(pem[start:end + len("-----END CERTIFICATE-----")])
    except ValueError as err:
        raise VerifyError(f"not a PEM certificate: {err}") from err
    return hashlib.sha256(der).hexdigest()


def probe_api(
    host: Host, address: str, port: int, ca_pem: str, *, timeout: float = HANDSHAKE_TIMEOUT
) -> ApiCertificate:
    """Given a connected host, the API address and port as that host reaches them, and the
    controller CA (PEM), do a TLS handshake (no SNI) with the API through the host's SSH connection
    and return the certificate it served, verified to chain to the CA.

    Raise VerifyError (exit 8) when nothing answers TLS there or the certificate does not chain to
    the CA (the message says which), ConnectError when the host's SSH connection is gone.
    """
    context = _context(ca_pem)
    try:
        tunnel = host.open_tcp(address, port, timeout=timeout)
    except ConnectError as err:
        if "connection to" in err.message and "closed" in err.message:
            raise
        raise VerifyError(
            f"the API at {_hp(address, port)} does not answer (from {host.name}): {err.message}",
            hint="is jujud running? see /var/log/juju/machine-N.log on the controller",
        ) from err
    try:
        der = _handshake(context, tunnel, timeout)
    except ssl.SSLCertVerificationError as err:
        raise VerifyError(
            f"the API at {_hp(address, port)} serves a certificate that does not chain to the "
            f"controller CA: {err.verify_message}",
            hint="the API answering there is not this controller's (or its CA changed)",
        ) from err
    except (ssl.SSLError, OSError, EOFError) as err:
        raise VerifyError(
            f"the API at {_hp(address, port)} does not answer TLS (from {host.name}): "
            f"{err or type(err).__name__}",
            hint="is jujud running? see /var/log/juju/machine-N.log on the controller",
        ) from err
    finally:
        tunnel.close()
    return describe(address, port, der)


def describe(address: str, port: int, der: bytes) -> ApiCertificate:
    """Given the DER leaf an API served at address:port, return its ApiCertificate (names only
    read: the chain was verified during the handshake). Raise VerifyError if it is not X.509."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as err:
        raise VerifyError(f"the API at {_hp(address, port)} served an unreadable certificate: {err}") from err
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ips = tuple(str(ip) for ip in sans.get_values_for_type(x509.IPAddress))
        dns = tuple(sans.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        ips, dns = (), ()
    return ApiCertificate(
        address=address,
        port=port,
        der=der,
        sha256=hashlib.sha256(der).hexdigest(),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        ip_names=ips,
        dns_names=dns,
    )


def _context(ca_pem: str) -> ssl.SSLContext:
    """Return a client context trusting only `ca_pem`, verifying the chain; no host name check (no
    SNI is sent, as a client dialling an IP; the names are reported, not required)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_verify_locations(cadata=ca_pem)
    except ssl.SSLError as err:
        raise VerifyError(f"the controller CA in agent.conf is unreadable: {err}") from err
    return context


def _handshake(context: ssl.SSLContext, tunnel: Tunnel, timeout: float) -> bytes:
    """Run a client TLS handshake over `tunnel` in memory; return the peer's DER certificate.
    Raise ssl.SSLError / OSError / EOFError as the handshake fails."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=False, server_hostname=None)
    deadline = time.monotonic() + timeout
    tunnel.settimeout(timeout)
    while not _step(tls, outgoing, tunnel):
        if time.monotonic() > deadline:
            raise TimeoutError("TLS handshake timed out")
        try:
            data = tunnel.recv(CHUNK)
        except TimeoutError as err:
            raise TimeoutError("TLS handshake timed out") from err
        if not data:
            raise EOFError("the server closed the connection during the TLS handshake")
        incoming.write(data)
    der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server sent no certificate")
    with _quiet():
        tls.unwrap()
        _flush(outgoing, tunnel)
    return der


def _step(tls: ssl.SSLObject, outgoing: ssl.MemoryBIO, tunnel: Tunnel) -> bool:
    """Advance the handshake and send what it wrote; return True when it is complete, False when
    it waits for the server's bytes."""
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        _flush(outgoing, tunnel)
        return False
    _flush(outgoing, tunnel)
    return True


class _quiet:
    """Context manager swallowing what a courtesy close_notify may raise."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], (ssl.SSLError, OSError, EOFError))  # type: ignore[arg-type]


def _flush(outgoing: ssl.MemoryBIO, tunnel: Tunnel) -> None:
    data = outgoing.read()
    if data:
        tunnel.sendall(data)


def _same_ip(wanted: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str) -> bool:
    try:
        return ipaddress.ip_address(text.strip()) == wanted
    except ValueError:
        return False


def _hp(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
