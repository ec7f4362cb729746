"""The bash a profile's hosts run, where the lab's Debian rootfs (bash 5.2) would be kinder than the
Ubuntu release the profile stands for.

Ubuntu 16.04 (xenial: Juju 2.8's `juju-2.8` profile) ships bash 4.3.48. Before bash 4.4, `"${a[@]}"`
of an array with no elements is an unbound variable under `set -u` (bash-4.4 CHANGES, "Using ${a[@]}
or ${a[*]} with an array without any assigned elements when the nounset option is enabled no longer
throws an unbound variable error"), and 4.4's and 5.x's additions (`${x@Q}`, `mapfile -d`,
`$EPOCHREALTIME`, `wait` on a process substitution, ...) do not exist. Every remote script runs
under `set -u` with the host's `bash`, so the xenial hosts run a real 4.3.

The source is GNU bash at the commit "Bash-4.3 patch 46" (30a978b7d808c067219c95be88c4979b6a7aa251 of
the bash git mirror; xenial's 4.3-14ubuntu1 adds patches 47-48, which the lab
lacks), trimmed of its translations, manuals, examples and tests: vendor/bash-4.3.46.tar.xz.
It is built once per machine into CACHE_DIR (gcc, make, libc6-dev: Makefile deps) and copied over
/usr/bin/bash (= /bin/bash: the rootfs is merged-usr) of every host of the profile.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.lab.rootfs import CACHE_DIR

VENDOR = Path(__file__).resolve().parent / "vendor"
SOURCES = {"juju-2.8": "bash-4.3.46.tar.xz"}
"""profile -> the vendored bash source its hosts run (profiles not listed keep the rootfs's bash 5.2)."""


def source_for(profile: str) -> Path | None:
    """Given a lab profile, return the vendored bash tarball its hosts run, or None for the rootfs's."""
    name = SOURCES.get(profile)
    return VENDOR / name if name else None


def binary_for(profile: str) -> Path | None:
    """Given a lab profile, return the path of the bash binary its hosts run (building it into
    CACHE_DIR once, under a lock), or None when the profile keeps the rootfs's bash.

    Raise RuntimeError if the build fails (its log's tail in the message)."""
    source = source_for(profile)
    if source is None:
        return None
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    built = CACHE_DIR / f"bash-{digest}" / "bash"
    if built.is_file():
        return built
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(CACHE_DIR / "oldbash.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not built.is_file():
            _build(source, built)
        return built
    finally:
        os.close(fd)


def _build(source: Path, dest: Path) -> None:
    """Given a bash source tarball, configure and make bash; install the binary at `dest` atomically.
    Raise RuntimeError if a step fails."""
    print(f"lab: building {source.name} for the hosts that run it (once, ~40 s)", file=sys.stderr, flush=True)
    work = Path(tempfile.mkdtemp(prefix="oldbash.", dir=CACHE_DIR))
    try:
        subprocess.run(["tar", "-xJf", str(source), "-C", str(work)], check=True)
        (tree,) = [p for p in work.iterdir() if p.is_dir()]
        log = work / "build.log"
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
        with log.open("wb") as out:
            for argv in (["./configure", "--without-bash-malloc", "--disable-nls"],
                         ["make", f"-j{os.cpu_count() or 1}", "bash"]):
                done = subprocess.run(argv, cwd=tree, stdout=out, stderr=subprocess.STDOUT, env=env,
                                      check=False)
                if done.returncode != 0:
                    tail = log.read_text(errors="replace").splitlines()[-5:]
                    raise RuntimeError(f"building {source.name}: `{' '.join(argv)}` exited "
                                       f"{done.returncode}: {' | '.join(tail)}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".tmp")
        shutil.copy2(tree / "bash", tmp)
        tmp.chmod(0o755)
        tmp.rename(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def install(root: Path, profile: str) -> None:
    """Given a host's root dir and its profile, put the profile's bash at /usr/bin/bash (no-op for a
    profile that keeps the rootfs's). Raise RuntimeError if it cannot be built."""
    built = binary_for(profile)
    if built is None:
        return
    target = Path(root) / "usr/bin/bash"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(".bash.jujubackup-lab")
    shutil.copy2(built, tmp)
    tmp.chmod(0o755)
    tmp.rename(target)
