"""Provision lab hosts as real Juju controllers / spare machines (test code).

LAB-INFRA calls, before booting each container:

    cluster = new_cluster(profile, controllers=[HostSpec, ...], db_size=0)   # once per lab
    provision_host(root, host, cluster)                                       # per host

`root` is the host's overlay merged dir (we write as root).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class HostSpec:
    """One lab host: name (ctl0/spare0), lab IP, role, Juju machine id (controllers only), profile."""

    name: str
    ip: str
    role: Literal["controller", "spare"]
    machine_id: str | None
    profile: str


@dataclass
class Cluster:
    """Shared identity of one lab's controller (same CA/uuids on every HA member)."""

    profile: str
    controllers: list[HostSpec]
    db_size: int = 0
    controller_uuid: str = ""
    model_uuid: str = ""
    default_model_uuid: str = ""
    passwords: dict[str, str] = field(default_factory=dict)


def new_cluster(profile: str, controllers: list[HostSpec], db_size: int = 0) -> Cluster:
    """Given a profile and the controller hosts, return the shared cluster identity."""
    raise NotImplementedError


def provision_host(root: Path, host: HostSpec, cluster: Cluster) -> None:
    """Given a host's root dir, write the controller or spare layout for the profile."""
    raise NotImplementedError
