"""Read what the workload agent stand-ins report (tests/lab/standins/agent.py) from a lab host."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.lab.lab import LabHost

STATUS_DIR = "var/lib/juju-lab/agents"


def agent_tags(host: LabHost) -> list[str]:
    """Return the agent tags of a workload host (its dirs under /var/lib/juju/agents)."""
    return sorted(p.name for p in (host.root / "var/lib/juju/agents").iterdir() if p.is_dir())


def agent_status(host: LabHost, tag: str) -> dict[str, Any]:
    """Return the last status the agent `tag` on `host` wrote ({} if none yet)."""
    try:
        return dict(json.loads((host.root / STATUS_DIR / f"{tag}.json").read_text()))
    except (OSError, ValueError):
        return {}


def wait_agents(host: LabHost, want: str, address: str | None = None, timeout: float = 60,
                since: float | None = None) -> dict[str, Any]:
    """Wait until every agent of `host` reports state `want` (and, if given, `address` host:port;
    if `since` (time.monotonic()) is given, a status written after it); return {tag: status}.
    Raise AssertionError with the statuses when `timeout` passes."""
    wall = None if since is None else time.time() - (time.monotonic() - since)
    deadline = time.monotonic() + timeout
    while True:
        found = {tag: agent_status(host, tag) for tag in agent_tags(host)}
        if all(s.get("state") == want and (address is None or s.get("address") == address)
               and (wall is None or float(s.get("updated") or 0) >= wall) for s in found.values()):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{host.name}: agents not {want} {address or ''}: {found}")
        time.sleep(0.2)


def wait_agent(host: LabHost, tag: str, want: str, timeout: float = 30) -> dict[str, Any]:
    """Wait until agent `tag` on `host` reports state `want`; return its status. Raise
    AssertionError with the last status when `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        status = agent_status(host, tag)
        if status.get("state") == want:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{host.name}: {tag} not {want}: {status}")
        time.sleep(0.2)
