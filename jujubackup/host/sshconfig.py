"""The options jujubackup takes from an ssh config (ConfigEntry), and the fallback reader used when
no OpenSSH client is installed (host/sshresolve.py asks `ssh -G` otherwise).

Read OpenSSH client config files with paramiko.SSHConfig; `Include` (which paramiko does not
support) is expanded here first, as ssh(1) does: in place, globs allowed, paths relative to ~/.ssh.

`Match exec CMD` runs CMD through a shell during the lookup. paramiko (config.py `_does_match`:
`invoke.run(self._tokenize(…, "match-exec", param))`) substitutes `%h`, `%n`, `%r`, … into it as raw
text, so a host value `h$(cmd)` would run `cmd` on this workstation, and invoke feeds the command
this process's stdin (ssh(1) gives it /dev/null: readconf.c execute_in_shell). connect.parse_host
refuses such host values before any lookup; in addition :class:`QuotingSSHConfig` runs `Match exec`
itself: every token shell-quoted (a host name is left as it is by shlex.quote, so the command is the
one ssh(1) would run), `$SHELL -c` with stdin and stdout on /dev/null, stderr passed through.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import paramiko

from jujubackup.errors import UsageError


@dataclass(frozen=True)
class ConfigEntry:
    """The options of one `Host` lookup that jujubackup honours (None when the config does not say)."""

    hostname: str | None = None
    user: str | None = None
    port: int | None = None
    identity_files: tuple[Path, ...] = ()
    known_hosts: tuple[Path, ...] = ()
    proxy_jump: str | None = None
    proxy_command: str | None = None
    accept_new: bool = False
    """StrictHostKeyChecking accept-new (only that value: `no` is never honoured, a changed or unknown
    key stays refused)."""
    ciphers: tuple[str, ...] = ()
    """The Ciphers the config chooses, in its order, as `ssh -G` resolved them (`+`/`-`/`^` applied);
    () when it sets none, or when there is no `ssh` client (only the OpenSSH streams use them)."""


def lookup_file(config_path: Path | None, alias: str) -> ConfigEntry:
    """Given an ssh config file (None or missing: no config) and a host alias, return its options as
    paramiko reads them (with `Include` expanded here): the fallback when there is no `ssh` client.

    Raise UsageError if the file exists but cannot be parsed.
    """
    if config_path is None or not config_path.is_file():
        return ConfigEntry()
    try:
        text = expand_includes(config_path)
        _refuse_unquotable_exec(text, config_path)
        config = QuotingSSHConfig.from_text(text)
        found = config.lookup(alias)
    except (OSError, ValueError, paramiko.SSHException) as err:
        raise UsageError(f"cannot read ssh config {config_path}: {err}") from err
    port = found.get("port")
    proxy = found.get("proxyjump")
    command = found.get("proxycommand")
    return ConfigEntry(
        hostname=found.get("hostname") if found.get("hostname") != alias else None,
        user=found.get("user"),
        port=int(port) if port else None,
        identity_files=tuple(Path(p).expanduser() for p in found.get("identityfile", []) or []),
        known_hosts=tuple(
            Path(p).expanduser() for p in str(found.get("userknownhostsfile", "")).split() if p
        ),
        proxy_jump=None if proxy in (None, "none") else str(proxy),
        proxy_command=None if command in (None, "none") else str(command),
        accept_new=str(found.get("stricthostkeychecking", "")).lower() == "accept-new",
    )


_EXEC_TOKEN = re.compile(r"%[%CdhLlnpru]")
"""The tokens paramiko substitutes in `Match exec` (TOKENS_BY_CONFIG_KEY["match-exec"]) and `%%`."""
_MATCH_EXEC = re.compile(r"^\s*match\s.*\bexec\b", re.IGNORECASE | re.MULTILINE)


class QuotingSSHConfig(paramiko.SSHConfig):
    """paramiko.SSHConfig whose `Match exec` commands get every token (`%h`, `%n`, `%r`, …)
    shell-quoted, in one pass (ssh(1)'s percent_expand is one pass too; paramiko's own replaces
    token after token, so a value holding `%d` would be expanded again), and run as ssh(1) runs
    them (stdin and stdout /dev/null). Other criteria and keys as paramiko."""

    def _does_match(self, match_list: list[dict[str, Any]], target_hostname: str, canonical: bool,
                    final: bool, options: Any) -> Any:
        """paramiko's `Match` evaluation one criterion at a time (in order, the first failing one
        ends it), `exec` ones by :meth:`_exec_passes`. Return True (`all`), False, or the list of
        matched criteria, as paramiko's does."""
        does_match = cast(Any, super())._does_match
        matched: list[dict[str, Any]] = []
        for candidate in match_list:
            if candidate["type"] == "exec":
                if self._exec_passes(options, target_hostname, candidate["param"]) == candidate["negate"]:
                    return False
                matched.append(candidate)
                continue
            result = does_match([candidate], target_hostname, canonical, final, options)
            if result is True or not result:
                return result
            matched.extend(result)
        return matched

    def _exec_passes(self, options: Any, target_hostname: str, command: str) -> bool:
        """Run one `Match exec` command (tokens quoted) as ssh(1) does; return True if it exits 0."""
        text = self._tokenize(options, target_hostname, "match-exec", command)
        shell = os.environ.get("SHELL") or "/bin/sh"
        done = subprocess.run([shell, "-c", text], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              check=False)
        return done.returncode == 0

    def _tokenize(self, config: Any, target_hostname: str, key: str, value: str) -> Any:
        tokenize = cast(Any, super())._tokenize
        if key != "match-exec":
            return tokenize(config, target_hostname, key, value)

        def quoted(match: re.Match[str]) -> str:
            token = match.group()
            return "%" if token == "%%" else shlex.quote(str(tokenize(config, target_hostname, key, token)))

        return _EXEC_TOKEN.sub(quoted, value)


def _refuse_unquotable_exec(text: str, path: Path) -> None:
    """Raise UsageError if the config has `Match … exec` and this paramiko has no `_does_match` and
    `_tokenize` for QuotingSSHConfig to override (its own would run tokens unquoted)."""
    overridable = all(hasattr(paramiko.SSHConfig, name) for name in ("_does_match", "_tokenize"))
    if not overridable and _MATCH_EXEC.search(text):
        raise UsageError(
            f"ssh config {path} uses `Match exec`, which this paramiko cannot run safely",
            hint="remove the `Match exec` block or pass -F with a config without it",
        )


MAX_INCLUDE_DEPTH = 16  # as ssh(1)
_INCLUDE = re.compile(r"^\s*include(?:\s*=\s*|\s+)(.+?)\s*$", re.IGNORECASE)


def expand_includes(path: Path, depth: int = 0) -> str:
    """Given an ssh config file, return its text with every `Include` line replaced by the files it
    names (each path may be a glob, `~` is expanded, a relative path is under ~/.ssh; matches in
    lexical order; a pattern matching nothing is skipped). Raise ValueError past MAX_INCLUDE_DEPTH
    nested includes, OSError if a file cannot be read."""
    if depth > MAX_INCLUDE_DEPTH:
        raise ValueError(f"Include nested more than {MAX_INCLUDE_DEPTH} deep at {path}")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _INCLUDE.match(line)
        if not match:
            out.append(line)
            continue
        for pattern in match[1].split():
            pattern = str(Path(pattern.strip('"')).expanduser())
            if not Path(pattern).is_absolute():
                pattern = str(Path.home() / ".ssh" / pattern)
            for name in sorted(glob.glob(pattern)):
                if Path(name).is_file():
                    out.append(expand_includes(Path(name), depth + 1))
    return "\n".join(out) + "\n"
