"""Lab networking: the private bridge, one network namespace + veth per host, no route out.

Names (all ours, recognised by prefix when clearing leftovers):
    bridge  jbbr0 (10.201.0.1/24, fixed MAC)       shared by every lab on this machine
    netns   jb-<labid>-<host>                       /run/netns/<name>
    veth    jb<labid>-<last octet>  (<= 15 chars)   host side on the bridge; `eth0` inside the netns
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

BRIDGE = "jbbr0"
BRIDGE_IP = "10.201.0.1"
BRIDGE_MAC = "02:00:0a:c9:00:01"
PREFIXLEN = 24
SUBNET = "10.201.0"
POOL = range(10, 251)  # host IPs 10.201.0.10 .. 10.201.0.250
NETNS_PREFIX = "jb-"
VETH_RE = re.compile(r"^jb([0-9a-f]{6})-\d{1,3}$")
NETNS_RE = re.compile(r"^jb-([0-9a-f]{6})-[a-z0-9]+$")


class NetError(RuntimeError):
    """An `ip` command failed."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS`; return the result. Raise NetError if it fails and `check`."""
    res = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise NetError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res


def mac_for(addr: str) -> str:
    """Given a lab IP 10.201.0.X, return its fixed MAC 02:00:0a:c9:00:XX (no stale ARP, test-hosts §5.6)."""
    return f"02:00:0a:c9:00:{int(addr.rsplit('.', 1)[1]):02x}"


def netns_name(lab_id: str, host: str) -> str:
    """Return the netns (and nspawn machine) name of `host` in lab `lab_id`."""
    return f"{NETNS_PREFIX}{lab_id}-{host}"


def veth_name(lab_id: str, addr: str) -> str:
    """Return the host-side veth name for the host with IP `addr` in lab `lab_id` (<= 15 chars)."""
    name = f"jb{lab_id}-{addr.rsplit('.', 1)[1]}"
    assert len(name) <= 15, name
    return name


def link_exists(name: str) -> bool:
    """Return True if a network interface `name` exists in the host namespace."""
    return Path("/sys/class/net", name).exists()


def ensure_bridge() -> None:
    """Create the lab bridge with its fixed MAC and address if missing (idempotent)."""
    if not link_exists(BRIDGE):
        ip("link", "add", BRIDGE, "address", BRIDGE_MAC, "type", "bridge")
    addrs = ip("-o", "-4", "addr", "show", "dev", BRIDGE).stdout
    if f"{BRIDGE_IP}/{PREFIXLEN}" not in addrs:
        ip("addr", "add", f"{BRIDGE_IP}/{PREFIXLEN}", "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")


def remove_bridge() -> None:
    """Delete the lab bridge if it exists."""
    if link_exists(BRIDGE):
        ip("link", "del", BRIDGE, check=False)


def create_host_net(netns: str, veth: str, addr: str) -> None:
    """Create netns `netns` with `eth0` = `addr`/24 (fixed MAC) whose peer `veth` sits on the bridge.

    No default route is added: the host can reach only 10.201.0.0/24. Raise NetError on failure.
    """
    ip("netns", "add", netns)
    ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns, "address", mac_for(addr))
    ip("link", "set", veth, "master", BRIDGE, "up")
    ip("-n", netns, "link", "set", "lo", "up")
    ip("-n", netns, "addr", "add", f"{addr}/{PREFIXLEN}", "dev", "eth0")
    ip("-n", netns, "link", "set", "eth0", "up")


def remove_host_net(netns: str, veth: str, addr: str | None) -> None:
    """Delete `veth`, netns `netns` and the bridge's neighbour entry for `addr`; ignore what is gone."""
    if link_exists(veth):
        ip("link", "del", veth, check=False)
    if Path("/run/netns", netns).exists():
        ip("netns", "del", netns, check=False)
    if addr and link_exists(BRIDGE):
        ip("neigh", "flush", "dev", BRIDGE, "to", addr, check=False)


def list_netns() -> list[str]:
    """Return the names of all named network namespaces (/run/netns)."""
    d = Path("/run/netns")
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def list_links() -> list[str]:
    """Return the names of all interfaces in the host namespace."""
    return sorted(p.name for p in Path("/sys/class/net").iterdir())
