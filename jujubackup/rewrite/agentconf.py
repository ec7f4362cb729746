"""agent.conf: re-address apiaddresses/stateaddresses keeping every other byte; redact; diff."""

from __future__ import annotations

import difflib
import re

from jujubackup.errors import RefusedError
from jujubackup.rewrite.layout import SECRET_KEYS, AgentConfRewrite, Change


def _format_hostport(host: str, port: str) -> str:
    """Return `host:port` as agent.conf writes it (IPv6 in brackets, quoted so YAML reads a string)."""
    if ":" in host:
        return f"'[{host}]:{port}'"
    return f"{host}:{port}"


def _split_hostport(entry: str) -> tuple[str, str]:
    """Given an agent.conf list entry (maybe quoted), return (host, port). Raise ValueError if no port."""
    value = entry.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{entry!r} is not host:port")
    return host.strip("[]"), port


def rewrite_agent_conf(text: str, new_address: str, *, label: str = "agent.conf") -> AgentConfRewrite:
    """Given agent.conf text and the new address, return the text with `apiaddresses` (and
    `stateaddresses` when present) reduced to one entry at the new address with the old first
    entry's port, every other byte unchanged, plus a unified diff (secrets redacted) and the changes.

    Raise RefusedError if there is no `apiaddresses` list or its entries have no port.
    """
    lines = text.splitlines(keepends=True)
    changes: list[Change] = []
    found = False
    for key in ("apiaddresses", "stateaddresses"):
        span = _find_list(lines, key)
        if span is None:
            continue
        found = found or key == "apiaddresses"
        start, end, old = span
        try:
            port = _split_hostport(old[0])[1]
        except (ValueError, IndexError) as err:
            raise RefusedError(
                f"{label}: cannot read the {key} entries {old!r}", "fix agent.conf by hand"
            ) from err
        new_entry = _format_hostport(new_address, port)
        lines[start:end] = _list_lines(lines[start:end], key, new_entry)
        changes.append(
            Change("agent.conf", label, key, [e.strip("'\"") for e in old], [new_entry.strip("'")])
        )
    if not found:
        raise RefusedError(f"{label} has no apiaddresses list", "is this a Juju machine agent.conf?")
    new_text = "".join(lines)
    return AgentConfRewrite(new_text, agent_conf_diff(text, new_text, label), tuple(changes))


def _find_list(lines: list[str], key: str) -> tuple[int, int, list[str]] | None:
    """Return (start, end, entries) of the top-level `key:` block list (start = the key line) or
    of an inline `key: [a, b]`; None if the key is absent."""
    for i, line in enumerate(lines):
        m = re.match(rf"^{key}:[ \t]*(.*?)\s*$", line)
        if not m:
            continue
        inline = m.group(1)
        if inline.startswith("["):
            return i, i + 1, [e.strip() for e in inline.strip("[]").split(",") if e.strip()]
        end = i + 1
        entries = []
        while end < len(lines) and (item := re.match(r"^\s*-\s+(.*?)\s*$", lines[end])):
            entries.append(item.group(1))
            end += 1
        return i, end, entries
    return None


def _list_lines(block: list[str], key: str, new_entry: str) -> list[str]:
    """Return the replacement lines for a list block: the key line kept, one entry line in the
    style (indent, line ending) of the first old entry."""
    head = block[0]
    eol = head[len(head.rstrip("\r\n")) :]
    if len(block) == 1:  # inline form
        return [f"{key}: [{new_entry}]{eol}"]
    first = block[1]
    indent = first[: len(first) - len(first.lstrip())]
    entry_eol = first[len(first.rstrip("\r\n")) :]
    return [head, f"{indent}- {new_entry}{entry_eol}"]


def redact_agent_conf(text: str) -> str:
    """Given agent.conf text, return it with secret values (keys naming a password, secret, key or
    identity, including their indented block lines) replaced by `<redacted>`; line count kept."""
    out = []
    in_block = False
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        eol = line[len(body) :]
        if in_block and (body.startswith((" ", "\t")) or not body):
            out.append(("  <redacted>" if body else "") + eol)
            continue
        in_block = False
        m = SECRET_KEYS.match(body)
        if m and not body.startswith((" ", "\t", "#")):
            in_block = m.group(3).strip() in ("|", "|-", "|+", ">", ">-")
            out.append(f"{m.group(1)}: <redacted>{eol}")
        else:
            out.append(line)
    return "".join(out)


def agent_conf_diff(old: str, new: str, label: str = "agent.conf") -> str:
    """Return a unified diff between two agent.conf texts with secrets redacted on both sides."""
    diff = difflib.unified_diff(
        redact_agent_conf(old).splitlines(keepends=True),
        redact_agent_conf(new).splitlines(keepends=True),
        fromfile=f"a/{label}",
        tofile=f"b/{label}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in diff)


