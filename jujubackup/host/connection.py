"""Open one SSH connection as a `fabric.Connection` (the seam's only fabric import), checked as
OpenSSH checks it.

fabric 3.2.3 does three things here that we must not keep (fabric/connection.py, Connection.__init__
and open): it sets paramiko's AutoAddPolicy (any host key trusted), it loads ~/.ssh/config and
/etc/ssh/ssh_config itself (our targets are already resolved by connect.py, with parse_host before
any config lookup), and it casts connect_timeout to int (0.5 s would become "no timeout"). So:

* the Config is lazy with an empty SSHConfig: no fabric/invoke or ssh config file is read;
* before `open()` the client gets the pinned known_hosts (knownhosts.install, @revoked and
  @cert-authority understood) and `_HostKeyPolicy`: unknown keys are refused (exit 3) unless the
  target says `accept_new_host_key`, then recorded; a changed key is HostKeyChangedError, a revoked
  one HostKeyRevokedError (both exit 3, never a reason to fall over to another host);
* the timeout is set back to the target's float after construction;
* a ProxyJump hop is the caller's: it opens direct-tcpip on the jump host's Connection with a
  timeout (fabric's open_gateway has none) and passes the channel as `sock`.

Per connection (never a process-wide paramiko class attribute): the ssh config's Ciphers when it
chooses some (as `ssh -G` resolved them), else AES-GCM preferred; paramiko's own
client-initiated rekey pushed out of reach on this transport's packetizer (paramiko#822: it kills
long exec streams; the server still rekeys), keepalives.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fabric
import paramiko

from jujubackup.errors import ConnectError
from jujubackup.host import knownhosts
from jujubackup.host.target import SSHTarget

PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
REKEY_LIMIT = 2**40
"""Bytes and packets after which paramiko would start a rekey itself: out of reach (paramiko#822)."""
CONNECT_HINT = "check that sshd runs on the host and the port is right"


def cipher_order(host: str, chosen: tuple[str, ...], available: tuple[str, ...]) -> tuple[str, ...]:
    """Given the Ciphers the operator's ssh config chose for `host` (empty: none) and the ones
    paramiko offers,
    return the ciphers this connection offers, in order: the config's that paramiko has, in the
    config's order (as OpenSSH offers only those); without a choice every available one, AES-GCM
    first. Raise ConnectError (exit 3) when paramiko has none of the chosen ones: OpenSSH would find
    no matching cipher either, and connecting with one the operator excluded is not ours to do."""
    if chosen:
        usable = tuple(c for c in chosen if c in available)
        if not usable:
            raise ConnectError(
                f"none of the Ciphers your ssh config chooses for {host} ({','.join(chosen)}) is one "
                "paramiko can use for the control connection",
                hint=f"add one of {','.join(available)} to that host's Ciphers in your ssh config")
        return usable
    first = tuple(c for c in PREFERRED_CIPHERS if c in available)
    return first + tuple(c for c in available if c not in first)


def _transport_factory(target: SSHTarget) -> Callable[..., paramiko.Transport]:
    """Return a factory of Transports that offer `cipher_order(…)` for the target and leave
    rekeying to the server (its own packetizer's limits, before the handshake starts). Raise
    ConnectError as cipher_order does."""
    # what Transport.get_security_options().ciphers lists before a transport exists
    available = tuple(paramiko.Transport._preferred_ciphers)  # type: ignore[attr-defined]
    order = cipher_order(target.name, target.ciphers, available)

    def factory(sock: Any, **kwargs: Any) -> paramiko.Transport:
        transport = paramiko.Transport(sock, **kwargs)
        transport.get_security_options().ciphers = order
        packetizer = transport.packetizer
        packetizer.REKEY_BYTES = REKEY_LIMIT  # an instance value: this connection only
        packetizer.REKEY_PACKETS = REKEY_LIMIT
        return transport

    return factory


class _UnknownHostKey(paramiko.SSHException):
    """The server's host key is in no known_hosts file."""


class HostKeyChangedError(ConnectError):
    """The server's host key differs from the one known_hosts has (possible MITM): exit 3, and
    never a reason to fall over to another host."""


class HostKeyRevokedError(HostKeyChangedError):
    """The server's host key is named by a `@revoked` known_hosts line: exit 3, never skipped."""


class _RevokedHostKey(paramiko.SSHException):
    """The server offered a key a `@revoked` line names (raised by the policy, before auth)."""

    def __init__(self, key: paramiko.PKey, path: Path) -> None:
        super().__init__(f"{key.get_name()} {fingerprint(key)}")
        self.key = key
        self.path = path


def fingerprint(key: paramiko.PKey) -> str:
    """Given a public key, return its OpenSSH fingerprint `SHA256:<base64 without padding>`."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def host_port(hostname: str, port: int) -> str:
    """Return HOST:PORT (IPv6 addresses in brackets)."""
    return f"[{hostname}]:{port}" if ":" in hostname else f"{hostname}:{port}"


def _os_error_text(err: OSError) -> str:
    """Return the reasons of a socket error on one line (each address's, for paramiko's
    NoValidConnectionsError, whose own text is "[Errno None] Unable to connect to port …")."""
    errors = getattr(err, "errors", None)
    if isinstance(errors, dict) and errors:
        return "; ".join(sorted({e.strerror or str(e) or type(e).__name__ for e in errors.values()}))
    return err.strerror or str(err) or type(err).__name__


def _all_refused(err: OSError) -> bool:
    """Return True if `err` says every address refused the connection (paramiko's
    NoValidConnectionsError carries one error per address; a plain socket error is itself)."""
    errors = getattr(err, "errors", None)
    if isinstance(errors, dict) and errors:
        return all(isinstance(e, ConnectionRefusedError) for e in errors.values())
    return isinstance(err, ConnectionRefusedError)


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown and revoked keys, or (accept_new) append unknown ones to `record_to` like
    OpenSSH's accept-new. (A revoked key is never among the known ones: knownhosts.load drops it,
    so paramiko asks here, before authenticating.)"""

    def __init__(self, accept_new: bool, record_to: Path | None, known: knownhosts.KnownHosts) -> None:
        self.accept_new = accept_new
        self.record_to = record_to
        self.known = known

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        revoked_in = self.known.revoked_in(key)
        if revoked_in is not None:
            raise _RevokedHostKey(key, revoked_in)
        if not self.accept_new:
            raise _UnknownHostKey(f"{key.get_name()} {fingerprint(key)}")
        client.get_host_keys().add(hostname, key.get_name(), key)
        if self.record_to is not None:
            self.record_to.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with self.record_to.open("a", encoding="ascii") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            self.record_to.chmod(0o600)


def load_known_hosts(target: SSHTarget) -> knownhosts.KnownHosts:
    """Return what the target's known_hosts files say for it. Raise ConnectError if one exists but
    cannot be read."""
    try:
        return knownhosts.load(target.known_hosts, (target.key_name, target.hostname))
    except OSError as err:
        raise ConnectError(f"cannot read known_hosts file {err.filename or ''}: {err.strerror or err}",
                           hint="check the --known-hosts file (or UserKnownHostsFile) and its permissions"
                           ) from err


def _record_to(target: SSHTarget) -> Path | None:
    return target.known_hosts[0] if target.known_hosts else None


def _connection(target: SSHTarget, sock: Any, known: knownhosts.KnownHosts) -> fabric.Connection:
    """Return an unopened fabric.Connection for the resolved target: no config file read, our host
    key checks instead of AutoAddPolicy, the float timeout kept."""
    keys = [str(p) for p in target.identity_files]
    connect_kwargs: dict[str, Any] = {
        "key_filename": keys,
        "look_for_keys": not keys,
        "allow_agent": not keys,
        "banner_timeout": target.connect_timeout,
        "auth_timeout": target.connect_timeout,
        "channel_timeout": target.connect_timeout,
        "transport_factory": _transport_factory(target),
    }
    if sock is not None:
        connect_kwargs["sock"] = sock
    config = fabric.Config(lazy=True, ssh_config=paramiko.SSHConfig())
    conn = fabric.Connection(target.hostname, user=target.user, port=target.port, config=config,
                             gateway=False, forward_agent=False, connect_kwargs=connect_kwargs)
    conn.connect_timeout = target.connect_timeout  # fabric casts it to int: 0.5 would mean none
    client: paramiko.SSHClient = conn.client
    known.install(client.get_host_keys())
    client.set_missing_host_key_policy(
        _HostKeyPolicy(target.accept_new_host_key, _record_to(target), known))
    return conn


def open_connection(target: SSHTarget, sock: Any = None,
                    known: knownhosts.KnownHosts | None = None) -> fabric.Connection:
    """Given a target (and an optional pre-connected channel for ProxyJump, and its known hosts
    when already loaded), return an open fabric.Connection (keepalives set).

    Raise ConnectError (exit 3) with a hint for an unknown/changed/revoked host key, refused auth,
    timeout, refused connection or an unresolvable name.
    """
    known = known if known is not None else load_known_hosts(target)
    conn = _connection(target, sock, known)
    try:
        conn.open()
    except (paramiko.SSHException, OSError, EOFError) as err:
        conn.close()
        conn.client.close()  # fabric closes only a connected client; a half-open one has a socket
        raise _connect_error(target, err, known) from err
    transport = conn.client.get_transport()
    if transport is not None and target.keepalive:
        transport.set_keepalive(target.keepalive)
    return conn


def _connect_error(target: SSHTarget, err: BaseException, known: knownhosts.KnownHosts) -> ConnectError:
    """Return the ConnectError (with its hint) that says why connecting to `target` failed."""
    if isinstance(err, _RevokedHostKey):
        return _revoked_error(target, err.key, err.path)
    if isinstance(err, _UnknownHostKey):
        return ConnectError(
            f"host key of {target.name} ({target.key_name}) is not known (fingerprint {err})",
            hint=f"add it to {_record_to(target) or '~/.ssh/known_hosts'} after checking it, or pass "
            "--accept-new-host-key to trust and record it",
        )
    if isinstance(err, paramiko.BadHostKeyException):
        return _changed_error(target, err, known)
    if isinstance(err, paramiko.AuthenticationException):
        return ConnectError(
            f"authentication as {target.user} on {target.name} failed: {err}",
            hint="check -i/--identity (or IdentityFile in the ssh config) and that the key is in the "
            f"user's authorized_keys; try `ssh -v {target.user}@{target.hostname}`",
        )
    if isinstance(err, TimeoutError):
        return ConnectError(
            f"connecting to {target.display} timed out after {target.connect_timeout:g}s",
            hint="check the address and that the host is up; raise --connect-timeout for slow links",
        )
    if isinstance(err, socket.gaierror):
        return ConnectError(f"cannot resolve {target.hostname}: {err.strerror}",
                            hint="check the -H value or HostName in the ssh config")
    if isinstance(err, OSError) and _all_refused(err):
        alias = f" ({target.name})" if target.name != target.hostname else ""
        return ConnectError(f"connection refused by {host_port(target.hostname, target.port)}{alias}",
                            hint=CONNECT_HINT)
    text = _os_error_text(err) if isinstance(err, OSError) else str(err) or type(err).__name__
    return ConnectError(f"cannot connect to {target.display}: {text}", hint=CONNECT_HINT)


def _changed_error(target: SSHTarget, err: paramiko.BadHostKeyException,
                   known: knownhosts.KnownHosts) -> HostKeyChangedError:
    """Return the error for a key that differs from known_hosts' (revoked if a line revokes it)."""
    revoked_in = known.revoked_in(err.key)
    if revoked_in is not None:
        return _revoked_error(target, err.key, revoked_in)
    where = f" -f {_record_to(target)}" if _record_to(target) else ""
    return HostKeyChangedError(
        f"HOST KEY OF {target.name} ({target.key_name}) HAS CHANGED (possible man-in-the-middle): "
        f"got {err.key.get_name()} {fingerprint(err.key)}, known_hosts has "
        f"{err.expected_key.get_name()} {fingerprint(err.expected_key)}",
        hint=f"check the host's key out of band; if the change is expected run "
        f"`ssh-keygen{where} -R {shlex.quote(target.key_name)}` and connect again with --accept-new-host-key",
    )


def _revoked_error(target: SSHTarget, key: paramiko.PKey, path: Path) -> HostKeyRevokedError:
    return HostKeyRevokedError(
        f"HOST KEY OF {target.name} ({target.key_name}) IS REVOKED: {key.get_name()} {fingerprint(key)} "
        f"is named by a @revoked line in {path}",
        hint="the host's key was withdrawn (compromised or replaced): check the host out of band; "
        "connect only once it has a new key you have checked",
    )
