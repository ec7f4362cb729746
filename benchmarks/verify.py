"""Local verify benchmark: seconds per GiB of `archive.verify_archive`, old code vs new, same run.

    .venv/bin/python -m benchmarks.verify [--size 1GiB] [--runs 2] [--old-rev REV] [--keep DIR] [--json]

Builds in a tmp dir a lab-like juju-backup archive of about `--size` UNCOMPRESSED bytes: a `logs`
DB of ~200-500-byte documents (the bulk), a small `juju` DB, an oplog, a root.tar holding a
100 MiB tools binary of random bytes, metadata.json and manifest.json; gzip level 6 (pigz when
present, as `create` does on the controller). Then times, round robin, median of `--runs`:

  baseline   `gzip -dc ARCHIVE | sha256sum` (one inflate + one hash, C tools)
  old        verify_archive of jujubackup/archive.py at `--old-rev` (loaded from git)
  new        verify_archive of the working tree

and prints seconds, and seconds per GiB of COMPRESSED archive (what upload/restore stream).
Never used by tests (no timings in tests).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import bson

from jujubackup import archive

REPO = Path(__file__).resolve().parents[1]
MODEL_UUID = "b3c0ffee-0000-4000-8000-000000000001"
GIB = 1 << 30
LEVELS = ("INFO", "DEBUG", "WARNING", "ERROR")
MODULES = ("juju.worker.uniter", "juju.apiserver", "juju.state.txn", "juju.worker.dependency")


def parse_size(text: str) -> int:
    """Given '1GiB', '300MiB' or a byte count, return bytes."""
    units = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}
    low = text.lower()
    for suffix, mult in units.items():
        if low.endswith(suffix):
            return int(float(low[: -len(suffix)]) * mult)
    return int(low)


def log_docs_pool(n: int, seed: int = 1) -> list[bytes]:
    """Return `n` distinct encoded juju log documents (~200-500 bytes, realistic compressibility)."""
    rnd = random.Random(seed)
    words = [rnd.randbytes(rnd.randint(3, 9)).hex() for _ in range(5000)]
    out = []
    for i in range(n):
        msg = " ".join(rnd.choice(words) for _ in range(rnd.randint(8, 40)))
        doc = {
            "_id": bson.ObjectId(),
            "t": rnd.randint(1_600_000_000_000_000_000, 1_800_000_000_000_000_000),
            "n": f"machine-{rnd.randint(0, 9)}",
            "r": "2.9.42",
            "m": rnd.choice(MODULES),
            "l": f"{rnd.choice(('uniter.go', 'txn.go', 'worker.go'))}:{rnd.randint(1, 999)}",
            "v": rnd.randint(1, 5),
            "x": msg,
            "c": {"lvl": rnd.choice(LEVELS), "seq": i, "tags": [rnd.choice(words) for _ in range(3)]},
        }
        out.append(bson.encode(doc))
    return out


def write_logs_bson(path: Path, size: int) -> int:
    """Write about `size` bytes of log documents to `path`; return the document count."""
    pool = log_docs_pool(20_000)
    count = 0
    written = 0
    with path.open("wb") as f:
        while written < size:
            block = b"".join(pool)
            f.write(block)
            written += len(block)
            count += len(pool)
            random.Random(count).shuffle(pool)
    return count


def build_archive(work: Path, size: int) -> Path:
    """Build the staging dir juju-backup/ under `work` and the archive `work/backup.tar.gz`."""
    top = work / "juju-backup"
    (top / "dump" / "logs").mkdir(parents=True)
    (top / "dump" / "juju").mkdir(parents=True)
    tools = 100 << 20
    write_logs_bson(top / "dump" / "logs" / "logs.bson", max(size - tools - (8 << 20), 1 << 20))
    (top / "dump" / "logs" / "logs.metadata.json").write_text('{"options":{},"indexes":[]}')
    rnd = random.Random(2)
    juju_docs = [
        bson.encode(
            {
                "_id": f"{MODEL_UUID}:{i}",
                "machineid": str(i),
                "jobs": [2, 1] if i < 3 else [1],
                "model-uuid": MODEL_UUID,
                "blob": rnd.randbytes(2000).hex(),
            }
        )
        for i in range(2000)
    ]
    (top / "dump" / "juju" / "machines.bson").write_bytes(b"".join(juju_docs))
    (top / "dump" / "juju" / "machines.metadata.json").write_text('{"options":{},"indexes":[]}')
    (top / "dump" / "oplog.bson").write_bytes(
        b"".join(bson.encode({"ts": i, "op": "n"}) for i in range(1000))
    )
    root = io.BytesIO()
    with tarfile.open(fileobj=root, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in (
            ("var/lib/juju/agents/machine-0/agent.conf", b"tag: machine-0\n"),
            ("var/lib/juju/tools/2.9.42-focal-amd64/jujud", os.urandom(tools)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (top / "root.tar").write_bytes(root.getvalue())
    meta = {
        "ID": f"20261126-060000.{MODEL_UUID}",
        "FormatVersion": 1,
        "Checksum": "",
        "ChecksumFormat": "",
        "Size": 0,
        "Stored": "0001-01-01T00:00:00Z",
        "Started": "2026-11-26T06:00:01Z",
        "Finished": "2026-11-26T06:00:09Z",
        "Notes": "bench",
        "ModelUUID": MODEL_UUID,
        "Machine": "0",
        "Hostname": "ctl0",
        "Version": "2.9.42",
        "Series": "focal",
        "ControllerUUID": "8a293c6a-855b-47fd-8201-affdf29c9605",
        "HANodes": 1,
        "ControllerMachineID": "0",
        "ControllerMachineInstanceID": "ctl0",
    }
    (top / "metadata.json").write_text(json.dumps(meta))
    manifest = archive.build_manifest(
        archive.manifest_entries_for_dir(top), tool_version="bench", consistency="online-oplog"
    )
    (top / "manifest.json").write_text(json.dumps(manifest))
    out = work / "backup.tar.gz"
    gz = "pigz" if shutil.which("pigz") else "gzip"
    with out.open("wb") as f:
        proc = subprocess.Popen(["tar", "-C", str(work), "-cf", "-", "juju-backup"], stdout=subprocess.PIPE)
        subprocess.run([gz, "-6", "-c"], stdin=proc.stdout, stdout=f, check=True)
        assert proc.stdout is not None
        proc.stdout.close()
        if proc.wait() != 0:
            raise SystemExit("tar failed")
    shutil.rmtree(top)
    return out


def load_old(rev: str) -> ModuleType:
    """Return jujubackup/archive.py as of git `rev`, loaded as a separate module."""
    src = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:jujubackup/archive.py"], capture_output=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "archive_old.py"
    path.write_bytes(src)
    spec = importlib.util.spec_from_file_location("archive_old", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["archive_old"] = mod
    spec.loader.exec_module(mod)
    return mod


def cpu_seconds() -> float:
    """Return user+sys CPU seconds of this process and its waited-for children (pool workers too)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def time_baseline(path: Path) -> tuple[float, float]:
    """Return (wall, CPU) seconds of `gzip -dc ARCHIVE | sha256sum`."""
    cpu, start = cpu_seconds(), time.perf_counter()
    subprocess.run(f"gzip -dc '{path}' | sha256sum > /dev/null", shell=True, check=True)
    return time.perf_counter() - start, cpu_seconds() - cpu


def time_verify(mod: Any, path: Path, sha256: str) -> tuple[float, float]:
    """Return (wall, CPU) seconds of `mod.verify_archive`; exit if the archive does not verify."""
    cpu, start = cpu_seconds(), time.perf_counter()
    report = mod.verify_archive(path, expected_sha256=sha256)
    elapsed = time.perf_counter() - start, cpu_seconds() - cpu
    if not report.ok:
        raise SystemExit(f"{mod.__name__}: archive did not verify: {[c.message for c in report.failures]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1GiB", help="uncompressed archive size (default 1GiB)")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--old-rev", default="f3cd827", help="git revision of the old archive.py")
    ap.add_argument("--archive", type=Path, help="reuse this archive instead of building one")
    ap.add_argument("--keep", type=Path, help="build the archive in this dir and keep it")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    tmp = None
    if args.archive:
        path = args.archive
    else:
        work = args.keep or Path(tmp := tempfile.mkdtemp(prefix="verify-bench-"))
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        path = build_archive(work, parse_size(args.size))
        print(f"built {path} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    try:
        size = path.stat().st_size
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        old = load_old(args.old_rev)
        times: dict[str, list[float]] = {"baseline": [], "old": [], "new": []}
        cpus: dict[str, list[float]] = {"baseline": [], "old": [], "new": []}
        for _ in range(args.runs):
            for key, run in (
                ("baseline", lambda: time_baseline(path)),
                ("old", lambda: time_verify(old, path, sha)),
                ("new", lambda: time_verify(archive, path, sha)),
            ):
                wall, cpu = run()
                times[key].append(wall)
                cpus[key].append(cpu)
        result = {
            "archive_bytes": size,
            "load": os.getloadavg()[0],
            **{
                k: {
                    "seconds": statistics.median(v),
                    "s_per_gib": statistics.median(v) * GIB / size,
                    "runs": v,
                    "cpu_seconds": statistics.median(cpus[k]),
                    "cpu_s_per_gib": statistics.median(cpus[k]) * GIB / size,
                }
                for k, v in times.items()
            },
        }
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print(f"archive {size / GIB:.3f} GiB compressed, load {result['load']:.1f}")
            for k in times:
                r = result[k]
                print(
                    f"{k:9s} wall {r['seconds']:7.2f} s {r['s_per_gib']:6.2f} s/GiB   "
                    f"CPU {r['cpu_seconds']:7.2f} s {r['cpu_s_per_gib']:6.2f} s/GiB   runs {v_fmt(r['runs'])}"
                )
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def v_fmt(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    raise SystemExit(main())
