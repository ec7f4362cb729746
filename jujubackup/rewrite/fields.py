"""Field helpers: address lists re-addressed keeping loopback entries, setting one field with a change
record."""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Mapping
from typing import Any

from jujubackup.rewrite.layout import Change, Doc


def _addresstype(address: str) -> str:
    """Return Juju's addresstype for an address: ipv4, ipv6 or hostname."""
    try:
        return "ipv6" if ipaddress.ip_address(address).version == 6 else "ipv4"
    except ValueError:
        return "hostname"


def _is_local(entry: Any) -> bool:
    """Return True for a loopback / machine-local address entry (kept as it is)."""
    if not isinstance(entry, dict):
        return False
    if entry.get("networkscope") == "local-machine":
        return True
    try:
        return ipaddress.ip_address(str(entry.get("value", ""))).is_loopback
    except ValueError:
        return False


def _new_entry(template: Mapping[str, Any] | None, address: str, defaults: Mapping[str, Any]) -> Doc:
    """Return a copy of an address/hostport subdocument (or `defaults`) pointing at `address`."""
    entry: Doc = copy.deepcopy(dict(template)) if template else dict(defaults)
    entry["value"] = address
    entry["addresstype"] = _addresstype(address)
    return entry


def readdress_list(entries: list[Any] | None, address: str, origin: str) -> list[Any]:
    """Given an `addresses`/`machineaddresses` list, return it with the loopback entries kept in
    place and every other entry replaced by a single entry for `address` (a copy of the first one)."""
    entries = list(entries or [])
    others = [e for e in entries if not _is_local(e)]
    defaults = {"networkscope": "local-cloud", "origin": origin}
    new = _new_entry(others[0] if others else None, address, defaults)
    out: list[Any] = []
    placed = False
    for e in entries:
        if _is_local(e):
            out.append(e)
        elif not placed:
            out.append(new)
            placed = True
    return out if placed else [new, *out]


def _set(doc: Doc, path: str, new: Any, changes: list[Change], collection: str) -> None:
    """Set dotted `path` in doc to `new` (creating subdocuments) and record a Change if it differs."""
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    old = node.get(last)
    if last in node and old == new and type(old) is type(new):
        return
    node[last] = new
    changes.append(Change(collection, doc.get("_id"), path, old, new))


def _set_present(doc: Doc, key: str, new: Any, changes: list[Change], collection: str) -> None:
    """Set a top-level key only if the document already has it."""
    if key in doc:
        _set(doc, key, new, changes, collection)


