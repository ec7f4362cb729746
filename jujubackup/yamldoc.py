"""Operator-written YAML files (the fleet config of `run`, a `--store-config` file): loaded as
ruamel round-trip documents so that a schema error can name the FILE:LINE of the key it is about."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jujubackup.errors import NotFoundError, UsageError


def load_roundtrip(path: Path, what: str) -> Any:
    """Given a YAML file and what it is ("config file", "store config"), return its round-trip
    document (dicts/lists carry their line numbers). Raise NotFoundError (exit 5) for a missing
    file, UsageError (exit 2) for one that cannot be read or is not YAML (with the line when known)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise NotFoundError(f"{what} {path} not found") from err
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read {what} {path}: {err}") from err
    try:
        return YAML(typ="rt", pure=True).load(text)
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UsageError(f"{path}{where}: not valid YAML: {problem}",
                         hint="fix the file's YAML syntax") from err


def line_of(doc: Any, keys: tuple[Any, ...]) -> int:
    """Given a round-trip document and a key path (the YAML's own keys and list indexes), return the
    1-based line of the deepest key of the path that exists (1 when none does)."""
    line = 1
    node = doc
    for key in keys:
        lc = getattr(node, "lc", None)
        if isinstance(node, dict) and key in node:
            if lc is not None:
                line = lc.key(key)[0] + 1
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            if lc is not None:
                line = lc.item(key)[0] + 1
            node = node[key]
        else:
            break
    return line
