"""Resolve ConnectionSettings into SSH targets and connected Hosts (issue 3, "Connecting").

Sources, in order of precedence: what `-H [user@]host[:port]` says, then the ssh config (`-F`, default
~/.ssh/config, resolved by `ssh -G` when the OpenSSH client is installed: host/sshresolve.py;
HostName, User, Port, IdentityFile, UserKnownHostsFile, ProxyJump, StrictHostKeyChecking accept-new;
a ProxyCommand is refused), then defaults.
`-c NAME` adds the api-endpoint hosts of a controller from the Juju client's controllers.yaml (user
ubuntu, key $JUJU_DATA/ssh/juju_id_rsa). Several hosts: the first that connects and is accepted wins;
an unreachable or unhealthy host falls over to the next, but a CHANGED (or revoked) host key aborts
at once (exit 3, possible man-in-the-middle), exactly as with a single host.

Host values are untrusted text (a controllers.yaml endpoint comes from whoever wrote that file) and
reach the ssh config's `Match exec … %h`, which runs a shell: `parse_host` accepts only a host name
(letters, digits, `.`, `-`, `_`) or an IP literal, an optional user of the same kind and a port,
before any config lookup (exit 2 otherwise).
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from jujubackup.errors import ConnectError, JujuBackupError, NotFoundError, UsageError
from jujubackup.host.base import Connector, Host
from jujubackup.host.ssh import HostKeyChangedError, SSHHost
from jujubackup.host.sshresolve import lookup
from jujubackup.host.sudo import SudoPasswordError
from jujubackup.host.target import SSHTarget
from jujubackup.settings import ConnectionSettings
from jujubackup.ui import UI

MAX_JUMPS = 5
SYSTEM_KNOWN_HOSTS = Path("/etc/ssh/ssh_known_hosts")

@dataclass(frozen=True)
class HostSpec:
    """One parsed `[user@]host[:port]` value (user/port None when not given)."""

    host: str
    user: str | None = None
    port: int | None = None


_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?:\.(?!-)[A-Za-z0-9_-]{1,63})*\.?", re.ASCII)
"""A host name or ssh config alias: dot-separated labels of letters, digits, `-` and `_`, none
starting with `-` (no shell, glob or option characters; an IPv4 address is one too)."""
_USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", re.ASCII)
HOST_HINT = "use [user@]host[:port]: a host name or ssh config alias (letters, digits, '.', '-', '_'), " \
    "an IPv4 address or an IPv6 address in brackets, a port 1-65535"


def parse_host(value: str) -> HostSpec:
    """Given `[user@]host[:port]` (IPv6 as `[addr]:port` or bare; an `ssh://` prefix as ProxyJump
    allows), return its parts. Raise UsageError (exit 2) unless the host is a host name or an IP
    literal (no zone id), the user a plain user name and the port in 1..65535."""
    text = value.removeprefix("ssh://")
    user, at, rest = text.rpartition("@")
    port: str | None = None
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        if tail.startswith(":"):
            port = tail[1:]
        elif tail:
            host = ""
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    else:
        host = rest
    problem = _host_problem(host, user if at else None, port)
    if problem:
        raise UsageError(f"bad host {value!r}: {problem}", hint=HOST_HINT)
    return HostSpec(host, user or None, int(port) if port else None)


def _host_problem(host: str, user: str | None, port: str | None) -> str | None:
    """Return why the parts of a host value are unsafe or malformed, or None if they are fine."""
    if not host:
        return "no host name"
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return "not a host name or an IP address"
        if "%" in host:
            return "an IPv6 zone id is not accepted"
    elif _HOST_NAME.fullmatch(host) is None or len(host) > 253:
        return "not a host name or an IP address"
    if user is not None and _USER_NAME.fullmatch(user) is None:
        return "not a user name"
    if port is not None and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        return "not a port number"
    return None


def juju_data(env: Mapping[str, str] | None = None) -> Path:
    """Return the Juju client's data dir: $JUJU_DATA, else ~/.local/share/juju."""
    env = os.environ if env is None else env
    value = env.get("JUJU_DATA")
    return Path(value).expanduser() if value else Path.home() / ".local/share/juju"


def controller_hosts(name: str, data_dir: Path) -> tuple[str, ...]:
    """Given a controller name and the Juju data dir, return the hosts of its api-endpoints, in order.

    Raise NotFoundError if controllers.yaml or the controller is missing, UsageError if unreadable
    or an endpoint is not `host:port` with a host name or IP address (parse_host).
    """
    from ruamel.yaml import YAML  # only -c NAME reads YAML: not loaded by every run
    from ruamel.yaml.error import YAMLError

    path = data_dir / "controllers.yaml"
    try:
        doc = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as err:
        raise NotFoundError(f"no Juju client data at {path}", hint="set JUJU_DATA or use -H") from err
    except (OSError, YAMLError, ValueError) as err:
        raise UsageError(f"cannot read {path}: {err}", hint=f"fix {path}, or connect with -H HOST") from err
    malformed = UsageError(f"{path} is not a Juju controllers.yaml (wrong structure)",
                           hint=f"fix {path}, or connect with -H HOST")
    if not isinstance(doc, dict):
        raise malformed
    controllers = doc.get("controllers")
    if not isinstance(controllers or {}, dict):
        raise malformed
    controllers = controllers or {}
    if name not in controllers:
        known = ", ".join(sorted(str(c) for c in controllers)) or "none"
        raise NotFoundError(f"controller {name!r} is not in {path} (known: {known})")
    entry = controllers[name]
    if not isinstance(entry, dict) or not isinstance(entry.get("api-endpoints") or [], list):
        raise malformed
    hosts: list[str] = []
    for endpoint in entry.get("api-endpoints") or []:
        try:
            host = parse_host(str(endpoint)).host
        except UsageError as err:
            raise UsageError(f"controller {name!r} in {path} has a bad api-endpoint: {err.message}",
                             hint=f"fix {path}, or connect with -H HOST") from err
        if host not in hosts:
            hosts.append(host)
    if not hosts:
        raise NotFoundError(f"controller {name!r} in {path} has no api-endpoints")
    return tuple(hosts)


def resolve_target(settings: ConnectionSettings, value: str, *, default_user: str | None = None,
                   extra_identity: tuple[Path, ...] = (), extra_known: tuple[Path, ...] = (),
                   depth: int = 0) -> SSHTarget:
    """Given settings and one `[user@]host[:port]` or alias, return the fully resolved SSHTarget.

    Raise UsageError for a bad value or a ProxyJump chain deeper than MAX_JUMPS.
    """
    if depth > MAX_JUMPS:
        raise UsageError(f"ProxyJump chain for {value} is longer than {MAX_JUMPS} hops")
    spec = parse_host(value)
    entry = lookup(settings.ssh_config, spec.host, spec.user or settings.user, spec.port,
                   exact_user=default_user is not None)
    if entry.proxy_command:
        raise UsageError(
            f"the ssh config gives {spec.host} a ProxyCommand, which jujubackup does not run",
            hint="use ProxyJump for this host (a `Host` block of its own), or pass -F with another config",
        )
    identity = ((settings.identity,) if settings.identity else ()) + entry.identity_files + extra_identity
    if settings.known_hosts:
        known: tuple[Path, ...] = (settings.known_hosts,)
    elif entry.known_hosts:
        known = entry.known_hosts
    else:
        known = (Path.home() / ".ssh/known_hosts", *extra_known, SYSTEM_KNOWN_HOSTS)
    jump = None
    if entry.proxy_jump:
        hops = [h.strip() for h in entry.proxy_jump.split(",") if h.strip()]
        for hop in hops:
            hop_target = resolve_target(settings, hop, depth=depth + 1)
            jump = _with_jump(hop_target, jump)
    return SSHTarget(
        name=spec.host,
        hostname=entry.hostname or spec.host,
        port=spec.port or entry.port or 22,
        user=spec.user or settings.user or entry.user or default_user or getpass.getuser(),
        identity_files=tuple(dict.fromkeys(identity)),
        known_hosts=known,
        accept_new_host_key=settings.accept_new_host_key or entry.accept_new,
        connect_timeout=settings.connect_timeout,
        keepalive=settings.keepalive,
        jump=jump,
        stream_via=settings.stream_via,
        ciphers=entry.ciphers,
    )


def _with_jump(target: SSHTarget, jump: SSHTarget | None) -> SSHTarget:
    """Return target reached through `jump` (the previous hop), keeping its own jump if it had one."""
    if jump is None or target.jump is not None:
        return target
    return SSHTarget(**{**target.__dict__, "jump": jump})


def resolve_targets(settings: ConnectionSettings, env: Mapping[str, str] | None = None) -> list[SSHTarget]:
    """Given settings, return every target to try, in order: the -H hosts, then -c's endpoints.

    Raise UsageError if there is none, NotFoundError for an unknown controller.
    """
    targets = [resolve_target(settings, value) for value in settings.hosts]
    if settings.controller:
        data = juju_data(env)
        key = data / "ssh" / "juju_id_rsa"
        for host in controller_hosts(settings.controller, data):
            targets.append(resolve_target(
                settings, host, default_user="ubuntu",
                extra_identity=(key,) if key.is_file() else (),
                extra_known=(data / "ssh" / "known_hosts",),
            ))
    if not targets:
        raise UsageError(
            "no host to connect to",
            hint="give -H [user@]host[:port] (repeat for HA) or -c CONTROLLER",
        )
    return targets


class SSHConnector:
    """The Connector over OpenSSH-compatible SSH (SSHHost): targets resolved once from the settings
    (ssh config, controllers.yaml), each connect a fresh SSHHost."""

    def __init__(self, settings: ConnectionSettings, env: Mapping[str, str] | None = None) -> None:
        self._settings = settings
        self._env = env
        self._targets: list[SSHTarget] | None = None

    @property
    def settings(self) -> ConnectionSettings:
        return self._settings

    def with_settings(self, settings: ConnectionSettings) -> Connector:
        return SSHConnector(settings, self._env)

    def targets(self) -> list[SSHTarget]:
        """Return resolve_targets(settings), resolved on first use and kept for this run."""
        if self._targets is None:
            self._targets = resolve_targets(self._settings, self._env)
        return list(self._targets)

    def target(self, value: str) -> SSHTarget:
        return resolve_target(self._settings, value)

    def machine_target(self, address: str) -> SSHTarget:
        """Resolve `address` as a Juju machine: default user ubuntu, $JUJU_DATA/ssh/juju_id_rsa
        (when it exists) after -i and the ssh config's keys, $JUJU_DATA/ssh/known_hosts among the
        default known_hosts files."""
        key = juju_data(self._env) / "ssh" / "juju_id_rsa"
        return resolve_target(self._settings, address, default_user="ubuntu",
                              extra_identity=(key,) if key.is_file() else (),
                              extra_known=(juju_data(self._env) / "ssh" / "known_hosts",))

    def connect(self, target: SSHTarget) -> Host:
        return SSHHost.connect(target, self._settings.sudo_password)


def connect_one(connector: Connector, target: str | SSHTarget, ui: UI | None = None) -> Host:
    """Given a connector and one host value (or a resolved target), return a connected
    Host; its notices (skipped known_hosts lines) are warned about on `ui` when given.

    Raise ConnectError (exit 3) if it cannot connect, UsageError for a bad value.
    """
    resolved = target if isinstance(target, SSHTarget) else connector.target(target)
    host = connector.connect(resolved)
    if ui is not None:
        warn_notices(ui, host)
    return host


def warn_notices(ui: UI, host: Host, shown: set[str] | None = None) -> None:
    """Warn about each of the host's notices (an SSHHost's skipped known_hosts lines) not in `shown`
    (then add them there)."""
    notices: tuple[str, ...] = getattr(host, "notices", ())
    for notice in notices:
        if shown is None or notice not in shown:
            ui.warn(notice)
        if shown is not None:
            shown.add(notice)


def connect_each(
    targets: Sequence[SSHTarget], ui: UI | None = None, connector: Connector | None = None
) -> Iterator[tuple[SSHTarget, Host | None, JujuBackupError | None]]:
    """Given targets, connect to each in turn: yield (target, host, None) for one that connects (the
    caller closes it), (target, None, error) for one that does not. Raise HostKeyChangedError
    (exit 3) at once: a changed or revoked host key is never skipped, whatever targets remain; so is
    SudoPasswordError (the same wrong password would be tried on each).
    With `ui`, each distinct host notice is warned about once. `connector` connects (default: SSH)."""
    shown: set[str] = set()
    for target in targets:
        try:
            host = connector.connect(target) if connector is not None else SSHHost.connect(target)
        except (HostKeyChangedError, SudoPasswordError):
            raise
        except JujuBackupError as err:
            yield target, None, err
            continue
        if ui is not None:
            warn_notices(ui, host, shown)
        yield target, host, None


def connect_first(
    connector: Connector, ui: UI, accept: Callable[[Host], bool] = lambda host: True
) -> Host:
    """Connect to the connector's hosts in order; return the first that connects and `accept`s.

    `accept(host)` may return False or raise a JujuBackupError to skip a host (e.g. not a healthy
    controller). Say which host was used (ui.info). With one host its own error is raised; with
    several, raise ConnectError (exit 3) listing why each was skipped. A changed host key is never
    skipped: its HostKeyChangedError (exit 3) is raised at once, whatever hosts remain.
    """
    targets = connector.targets()
    failures: list[tuple[str, JujuBackupError]] = []
    for target, host, error in connect_each(targets, ui, connector):
        if host is None:
            assert error is not None
            failures.append((target.name, error))
            if len(targets) > 1:
                ui.warn(f"{target.display}: {error.message}")
            continue
        try:
            if accept(host):
                if len(targets) > 1 or connector.settings.controller:
                    ui.info(f"using {target.display} ({target.hostname})")
                else:
                    ui.debug(f"connected to {target.display}")
                return host
            reason: JujuBackupError = ConnectError(f"{target.name} is not a healthy controller")
        except JujuBackupError as err:
            reason = err
        host.close()
        failures.append((target.name, reason))
        if len(targets) > 1:
            ui.warn(f"{target.display}: skipped: {reason.message}")
    if len(failures) == 1:
        raise failures[0][1]
    detail = "; ".join(f"{name}: {err.message}" for name, err in failures)
    if all(isinstance(err, NotFoundError) for _, err in failures):
        raise NotFoundError(
            f"not found on any of the {len(targets)} controllers ({detail})",
            hint="each controller keeps its own catalog: `jujubackup -H HOST list` shows one",
        )
    hints = {err.hint for _, err in failures if err.hint}
    raise ConnectError(
        f"none of {len(targets)} hosts could be used ({detail})",
        hint=hints.pop() if len(hints) == 1 else "check each host with `jujubackup -H HOST status`",
    )
