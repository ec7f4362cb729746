"""Resolve an ssh config alias the way OpenSSH resolves it: by asking the `ssh` client (`ssh -G`).

`ssh -G` evaluates everything ssh(1) would (`Include`, `Match host/user/exec/…`, %-tokens, the
first-obtained-value rule, /etc/ssh/ssh_config when no `-F` is given) and prints the result, with a
default for every key it was not given. So each alias is resolved twice, against the operator's
config and against none (`-F /dev/null`), and only the keys that differ count as set by the config.
So a `Port 22` or a `HostName` equal to the alias reads as no such line (same outcome). A `User`
naming the local user would too, and that matters where the default user is not the local one (-c:
`ubuntu`): there `user_line` asks a third time with a sentinel `User` after the config.

Which config file ssh reads: with `-F FILE`, FILE only (a missing FILE: none); without, ssh(1) reads
~/.ssh/config of the passwd entry and /etc/ssh/ssh_config. When $HOME is not the passwd home (sudo -E,
tests), `-F $HOME/.ssh/config` is passed (the system file is then not read, as with any -F), so the
config is the one jujubackup's other `~` paths (known_hosts) use.

Security (issue 11): OpenSSH substitutes %h/%n/%r into `Match exec` unquoted. What reaches those
tokens from outside the operator's own config (a -H value, a controllers.yaml endpoint) has been
checked by connect.parse_host (a host name or IP literal, a plain user name) before any lookup, and
the alias is passed after `--`. ssh gets stdin /dev/null (as it gives `Match exec` commands).
"""

from __future__ import annotations

import functools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from jujubackup.errors import UsageError
from jujubackup.host.sshconfig import ConfigEntry, lookup_file

SSH_G_TIMEOUT = 60.0
"""Seconds `ssh -G` may take (a `Match exec` command runs inside it)."""
_KEYS = frozenset({"hostname", "user", "port", "identityfile", "userknownhostsfile", "proxyjump",
                   "proxycommand", "stricthostkeychecking", "ciphers"})


def lookup(config_path: Path | None, alias: str, user: str | None = None,
           port: int | None = None, *, exact_user: bool = False) -> ConfigEntry:
    """Given the -F file (None: the default ~/.ssh/config), an alias checked by connect.parse_host
    and the user/port the operator gave, return the options the config sets for it: through `ssh -G`
    when the OpenSSH client is installed (Include, Match and tokens as ssh(1) resolves them), else
    host/sshconfig.py's paramiko-based reading of the file. `exact_user`: tell a `User` line naming
    the local user from no `User` line (one more `ssh -G`; see `user_line`).

    Raise UsageError if the config cannot be read or parsed.
    """
    binary = ssh_binary()
    if binary is None:
        return lookup_file(config_path or Path.home() / ".ssh" / "config", alias)
    return resolve(binary, config_path, alias, user, port, exact_user=exact_user)


def ssh_binary() -> str | None:
    """Return the path of the OpenSSH client on PATH, or None."""
    return shutil.which("ssh")


def passwd_home() -> Path | None:
    """Return the home dir of this process's user in the passwd database (where ssh(1) looks), or
    None when the user has no entry."""
    try:
        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        return None


def config_args(config_path: Path | None) -> list[str]:
    """Given the operator's -F file (None: the default), return the `-F` arguments for ssh -G (see
    the module docstring)."""
    if config_path is not None:
        return ["-F", str(config_path) if config_path.is_file() else "/dev/null"]
    home = Path.home()
    if passwd_home() == home:
        return []
    own = home / ".ssh" / "config"
    return ["-F", str(own) if own.is_file() else "/dev/null"]


def ssh_g(binary: str, args: list[str], alias: str) -> dict[str, list[str]]:
    """Run `ssh -G ARGS -- alias`; return its keys (lowercase) and their values (several for a key
    printed on several lines, e.g. identityfile). Raise UsageError when ssh refuses the config."""
    argv = [binary, "-G", "-T", *args, "--", alias]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False,
                              timeout=SSH_G_TIMEOUT)
    except subprocess.TimeoutExpired as err:
        raise UsageError(f"`ssh -G {alias}` did not finish within {SSH_G_TIMEOUT:g}s",
                         hint="check the `Match exec` commands of your ssh config") from err
    except OSError as err:
        raise UsageError(f"cannot run {binary}: {err.strerror or err}") from err
    if done.returncode != 0:
        lines = [line for line in done.stderr.decode(errors="replace").splitlines() if line.strip()]
        why = "; ".join(lines[-3:]) if lines else f"ssh -G exited {done.returncode}"
        raise UsageError(f"cannot read the ssh config for {alias}: {why}",
                         hint=f"check it with `ssh -G {alias}`, or pass -F with another config")
    found: dict[str, list[str]] = {}
    for line in done.stdout.decode(errors="replace").splitlines():
        key, _, value = line.strip().partition(" ")
        if key.lower() in _KEYS:
            found.setdefault(key.lower(), []).append(value.strip())
    return found


def resolve(binary: str, config_path: Path | None, alias: str, user: str | None = None,
            port: int | None = None, *, exact_user: bool = False) -> ConfigEntry:
    """Given the ssh binary, the -F file (None: default), an alias already checked by parse_host and
    the user/port the operator gave (so `Match user` and %r see them), return what the config sets
    for it (keys that differ from ssh's own defaults). Raise UsageError when ssh refuses the config
    or an IdentityFile uses a %-token ssh would not expand here."""
    given = [*(["-l", user] if user else []), *(["-p", str(port)] if port else [])]
    mine = ssh_g(binary, [*config_args(config_path), *given], alias)
    default = {**defaults(binary, user, port, os.environ.get("HOME")), "hostname": [alias.lower()]}

    def changed(key: str) -> list[str] | None:
        value = mine.get(key)
        return value if value and value != default.get(key) else None

    hostname = changed("hostname")
    user_set = changed("user")
    if exact_user and user_set is None and not user:
        user_set = user_line(binary, config_path, alias, port)
    port_set = changed("port")
    final_host = (hostname or mine.get("hostname") or [alias])[0]
    final_user = (user_set or mine.get("user") or [""])[0]
    final_port = (port_set or mine.get("port") or ["22"])[0]
    tokens = _tokens(alias, final_host, final_user, final_port)
    proxy_jump = (changed("proxyjump") or ["none"])[0]
    proxy_command = (changed("proxycommand") or ["none"])[0]
    strict = (mine.get("stricthostkeychecking") or [""])[0].lower()
    return ConfigEntry(
        hostname=hostname[0] if hostname else None,
        user=user_set[0] if user_set else None,
        port=int(port_set[0]) if port_set else None,
        identity_files=tuple(Path(expand_tokens(p, tokens)).expanduser()
                             for p in changed("identityfile") or []),
        known_hosts=tuple(Path(p) for v in changed("userknownhostsfile") or [] for p in v.split()),
        proxy_jump=None if proxy_jump == "none" else proxy_jump,
        proxy_command=None if proxy_command == "none" else proxy_command,
        accept_new=strict == "accept-new",
        ciphers=tuple(c for v in changed("ciphers") or [] for c in v.split(",") if c),
    )


@functools.lru_cache(maxsize=16)
def defaults(binary: str, user: str | None, port: int | None, home: str | None) -> dict[str, list[str]]:
    """Return what `ssh -G -F /dev/null` prints with this -l/-p (and $HOME, which its `~` paths
    follow): ssh's own defaults, asked once per process (repoint resolves every machine). Of the
    keys taken, only `hostname` depends on the alias (the alias lowercased, as ssh(1) prints it):
    the caller sets it."""
    given = [*(["-l", user] if user else []), *(["-p", str(port)] if port else [])]
    return ssh_g(binary, ["-F", "/dev/null", *given], "jujubackup-defaults")


_NO_USER = "jujubackup-no-user-line"


def user_line(binary: str, config_path: Path | None, alias: str, port: int | None) -> list[str] | None:
    """Return [the User the config gives alias] or None when it gives none: ssh -G over a config that
    Includes the operator's one, then says `Host *` / `User <sentinel>` (ssh(1) keeps the first value
    obtained, so the sentinel shows only when no line before it set User)."""
    args = config_args(config_path)
    if args:
        included = [args[1]]
    else:
        home = passwd_home() or Path.home()
        included = [str(home / ".ssh" / "config"), "/etc/ssh/ssh_config"]
    with tempfile.TemporaryDirectory(prefix="jujubackup-sshg-") as tmp:
        wrapper = Path(tmp) / "config"
        lines = [f'Include "{path}"' for path in included if path != "/dev/null" and Path(path).is_file()]
        wrapper.write_text("\n".join([*lines, "Host *", f"  User {_NO_USER}", ""]), encoding="utf-8")
        found = ssh_g(binary, ["-F", str(wrapper), *(["-p", str(port)] if port else [])], alias)
    value = (found.get("user") or [_NO_USER])[0]
    return None if value == _NO_USER else [value]


def _tokens(alias: str, hostname: str, user: str, port: str) -> dict[str, str]:
    """The %-tokens ssh(1) expands in IdentityFile (ssh_config(5) TOKENS), for one resolved host."""
    home = str(passwd_home() or Path.home())
    local = os.uname().nodename
    try:
        local_user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        local_user = str(os.getuid())
    return {"%": "%", "d": home, "h": hostname, "i": str(os.getuid()), "L": local.split(".")[0],
            "l": local, "n": alias, "p": port, "r": user, "u": local_user}


_TOKEN = re.compile(r"%(.)")


def expand_tokens(value: str, tokens: dict[str, str]) -> str:
    """Given an IdentityFile value and the token values, return it with every `%x` replaced in one
    pass. Raise UsageError for a token not in `tokens` (ssh -G of OpenSSH 9.2 leaves IdentityFile
    unexpanded; a token we cannot expand would name the wrong key)."""

    def one(match: re.Match[str]) -> str:
        if match[1] not in tokens:
            raise UsageError(f"IdentityFile {value!r}: %{match[1]} is not supported by jujubackup",
                             hint="use a path without that token, or pass -i FILE")
        return tokens[match[1]]

    return _TOKEN.sub(one, value)
