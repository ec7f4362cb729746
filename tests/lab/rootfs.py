"""The lab's shared Debian rootfs: built once with debootstrap, cached as a .tar.zst keyed by its recipe.

Layout under CACHE_DIR (/var/cache/jujubackup-lab, never committed):
    rootfs-<hash>.tar.zst   the cache tarball (numeric owners, xattrs)
    rootfs-<hash>/          the unpacked tree, used read-only as every host's overlay lowerdir
    rootfs.lock             flock held while building/unpacking

<hash> is the sha256 of RECIPE (suite, packages, customisation script), so changing the recipe
rebuilds; the mirror comes from apt's own configuration and is not part of the hash.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CACHE_DIR = Path("/var/cache/jujubackup-lab")
SUITE = "bookworm"
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "python3-bson", "sudo",
    "iproute2", "procps", "less", "pigz", "tar", "gzip", "util-linux", "ca-certificates",
    # the drill closes a target's egress with nft (issue 16)
    "nftables",
)

# Runs inside the fresh tree with `chroot ROOT /bin/sh -c CUSTOMISE`.
CUSTOMISE = r"""
set -eu
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
mkdir -p /etc/ssh/sshd_config.d
cat > /etc/ssh/sshd_config.d/10-jujubackup-lab.conf <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
EOF
for unit in systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer apt-daily.service \
            apt-daily-upgrade.service e2scrub_all.timer e2scrub_reap.service fstrim.timer \
            man-db.timer dpkg-db-backup.timer systemd-networkd-wait-online.service \
            console-getty.service getty@.service serial-getty@.service; do
  ln -sf /dev/null "/etc/systemd/system/$unit"
done
systemctl enable ssh.service >/dev/null 2>&1 || true
id ubuntu >/dev/null 2>&1 || useradd --create-home --shell /bin/bash --user-group ubuntu
usermod -p "*" root; usermod -p "*" ubuntu
install -d -m 0700 -o root -g root /root/.ssh
install -d -m 0700 -o ubuntu -g ubuntu /home/ubuntu/.ssh
printf 'ubuntu ALL=(ALL) NOPASSWD:ALL\n' > /etc/sudoers.d/90-ubuntu
chmod 0440 /etc/sudoers.d/90-ubuntu
: > /etc/resolv.conf
printf 'localhost\n' > /etc/hostname
rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/* /var/log/*.log /tmp/* /var/tmp/*
"""

RECIPE = json.dumps({"version": 1, "suite": SUITE, "variant": "minbase", "packages": PACKAGES,
                     "customise": CUSTOMISE}, sort_keys=True)


def recipe_hash() -> str:
    """Return the sha256 hex digest of the rootfs build recipe (first 16 chars)."""
    return hashlib.sha256(RECIPE.encode()).hexdigest()[:16]


def rootfs_dir() -> Path:
    """Return the path of the unpacked rootfs for the current recipe (may not exist yet)."""
    return CACHE_DIR / f"rootfs-{recipe_hash()}"


def tarball_path() -> Path:
    """Return the path of the cache tarball for the current recipe (may not exist yet)."""
    return CACHE_DIR / f"rootfs-{recipe_hash()}.tar.zst"


def apt_mirror(etc_apt: Path = Path("/etc/apt")) -> str:
    """Given apt's config dir, return the first Debian archive URI apt uses (not -security/-updates).

    Reads deb822 /etc/apt/sources.list.d/*.sources first, then one-line sources.list(.d/*.list).
    Raise RuntimeError if no usable `deb` source is configured.
    """
    uris: list[str] = []
    for src in sorted((etc_apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", src.read_text()):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
            if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
                uris.extend(fields.get("URIs", "").split())
    lists = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*.list"))]
    for lst in lists:
        if lst.is_file():
            for line in lst.read_text().splitlines():
                m = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+", line.strip())
                if m:
                    uris.append(m.group(1))
    for uri in uris:
        if "security" not in uri and uri.startswith(("http://", "https://", "file:")):
            return uri
    raise RuntimeError("no Debian mirror found in /etc/apt/sources.list{,.d}; configure apt first")


def _lock() -> int:
    """Create CACHE_DIR and return an fd holding its exclusive build lock."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(CACHE_DIR / "rootfs.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _log(msg: str) -> None:
    print(f"lab rootfs: {msg}", file=sys.stderr, flush=True)


def _build_tree(dest: Path) -> None:
    """Given an empty dir, debootstrap and customise the rootfs into it. Raise CalledProcessError."""
    mirror = apt_mirror()
    _log(f"debootstrap {SUITE} from {mirror} (about a minute)")
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(dest), mirror],
        check=True, stdout=subprocess.DEVNULL,
    )
    subprocess.run(["chroot", str(dest), "/bin/sh", "-c", CUSTOMISE], check=True,
                   env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})


def _pack(tree: Path, tarball: Path) -> None:
    """Given a rootfs tree, write it as a zstd tarball atomically to `tarball`."""
    tmp = tarball.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "--xattrs", "--acls", "-C", str(tree), "-cf", "-", "."],
            stdout=subprocess.PIPE)
        assert tar.stdout is not None
        zst = subprocess.run(["zstd", "-q", "-T0", "-3"], stdin=tar.stdout, stdout=out, check=False)
        tar.stdout.close()
        if tar.wait() != 0 or zst.returncode != 0:
            raise RuntimeError(f"packing {tree} into {tarball} failed")
    tmp.chmod(0o600)
    tmp.rename(tarball)


def _unpack(tarball: Path, dest: Path) -> None:
    """Given a cache tarball, extract it into the empty dir `dest`. Raise RuntimeError on failure."""
    zst = subprocess.Popen(["zstd", "-q", "-dc", str(tarball)], stdout=subprocess.PIPE)
    assert zst.stdout is not None
    tar = subprocess.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls",
                          "-C", str(dest), "-xpf", "-"], stdin=zst.stdout, check=False)
    zst.stdout.close()
    if zst.wait() != 0 or tar.returncode != 0:
        raise RuntimeError(f"unpacking {tarball} failed")


def ensure_rootfs(rebuild: bool = False) -> Path:
    """Return the unpacked rootfs dir for the current recipe, building or unpacking it if needed.

    Order: reuse the unpacked dir; else unpack the cache tarball; else debootstrap, customise and
    write the tarball. Safe against concurrent callers (flock). Raise RuntimeError/CalledProcessError
    if a step fails (no half-built tree is left under the final name).
    """
    final, tarball = rootfs_dir(), tarball_path()
    if final.is_dir() and not rebuild:
        return final
    fd = _lock()
    try:
        if rebuild:
            _remove_tree(final)
            tarball.unlink(missing_ok=True)
        if final.is_dir():
            return final
        work = Path(tempfile.mkdtemp(prefix=f"{final.name}.", suffix=".partial", dir=CACHE_DIR))
        try:
            work.chmod(0o755)
            t0 = time.monotonic()
            if tarball.is_file():
                _unpack(tarball, work)
                _log(f"restored {tarball} in {time.monotonic() - t0:.1f} s")
            else:
                _build_tree(work)
                _pack(work, tarball)
                _log(f"built {tarball} in {time.monotonic() - t0:.1f} s")
            work.rename(final)
        except BaseException:
            _remove_tree(work)
            raise
        return final
    finally:
        os.close(fd)


def _remove_tree(path: Path) -> None:
    """Remove a rootfs tree (which may contain read-only dirs) if it exists."""
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():
            subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)
