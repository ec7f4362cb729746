"""Transfer benchmark (issue 4): jujubackup download/upload of a 1 GiB archive against OpenSSH.

    sudo .venv/bin/python -m benchmarks.transfer [--sizes 256MiB,1GiB,4GiB] [--runs 3] [--stream-runs 10]
                                                 [--rss-size 2GiB] [--out DIR]

Boots a lab controller (or uses `--ssh-config FILE --host NAME`), builds a valid juju-backup archive
of `--size` with an incompressible member, uploads it once, then measures in the same run, round
robin, median of `--runs`:

  download   `jujubackup download ID FILE` (connect, probe, catalog, stream + SHA-256 + fsync, rename)
             vs `ssh -F cfg host cat STORED > FILE`
  upload     `jujubackup upload --force FILE` (local verify, stream, remote SHA-256, register), and the
             stream part alone (SSHHost.put), vs `ssh -F cfg host 'cat > TMP' < FILE`; and the upload
             of a downloaded copy that `jujubackup verify` passed (not verified again: the host's
             SHA-256 of what it received must be the verified one)
  stream     SSHHost.get of the stored file into a hashing file sink (the download's data path)

Both `ssh` baselines are also timed with `-c aes128-gcm@openssh.com` (rows "vs ssh -c aes128-gcm"),
the cipher jujubackup's own streams prefer: the issue's goal rows compare with the default `ssh`
(chacha20-poly1305, ~3x the client CPU per byte on AES-NI), and the GCM rows show how much of the
ratio comes from the cipher alone. Besides the ratio of the medians, each row has the best round's
ratio (ours against the baseline in the same round).

Every timed command also records the CPU seconds of each participant (the command with its
children, `ssh` and the verifying process, via the wrapper's wait4; the lab host's cgroup cpu.stat)
and how busy the whole machine was (/proc/stat), and the lab host's idle use before the runs: what
limits a ratio, measured (e.g. both CPUs saturated).

then the peak RSS (wait4 ru_maxrss of the jujubackup process, read by benchmarks.common's small
wrapper: a child's ru_maxrss counts the forking process's RSS) downloading and uploading an archive
of `--rss-size`, and `--stream-runs` back-to-back 1 GiB downloads counting failures (paramiko#822).
Goals (issue 18): download >= 0.9x of OpenSSH, upload of a never-verified archive >= 0.8x, of one
`verify` passed >= 0.9x; peak RSS < 150 MiB for 2 GiB; no failure in 10 runs. With several sizes,
each is measured in the same lab (stream failures on the first size, RSS of `--rss-size` once at the
end); `--out` writes the rows `python -m benchmarks.report` reads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bson

from benchmarks.common import (
    RESULTS,
    byte_compile,
    cgroup_cpu_seconds,
    machine_cpu,
    parse_size,
    parse_sizes,
    read_cpu_seconds,
    read_rss_kib,
    rss_wrapped,
    save,
    warm_free_memory,
)
from jujubackup import profiles

JUJUBACKUP = str(Path(sys.executable).parent / "jujubackup")
MODEL_UUID = "b3c0ffee-0000-4000-8000-000000000001"
BACKUPS = "/var/lib/juju/backups"
GCM = "aes128-gcm@openssh.com"
STREAM_CHILD = """
import hashlib, sys, resource
from pathlib import Path
from jujubackup.connect import SSHConnector, connect_one
from jujubackup.settings import ConnectionSettings
from jujubackup.transfer import HashingSink, Throttle, open_private
cfg, host, mode, remote, local = sys.argv[1:6]
h = connect_one(SSHConnector(ConnectionSettings(ssh_config=Path(cfg))), host)
if mode == "get":
    with open_private(Path(local), append=False, readable=True) as fh:  # as download opens its .part
        h.get(remote, HashingSink(fh, hashlib.sha256(), Throttle(None)))
else:
    with open(local, "rb") as fh:
        h.put(fh, remote)
h.close()
"""


@dataclass
class Timed:
    """One timed command: wall seconds, exit code, peak RSS KiB, and the CPU seconds each participant
    used meanwhile: the command with its children (`ssh`, the verifying child), the lab host (its
    cgroup: sshd, the remote writer, its hashing) and the whole machine (busy out of available:
    both CPUs saturated reads 1.0; other work on the machine counts too)."""

    seconds: float
    returncode: int
    rss_kib: int
    client_cpu: float = 0.0
    host_cpu: float = 0.0
    machine_busy: float = 0.0


def timed(argv: list[str], host_cgroups: list[str] | None = None, **kwargs: Any) -> Timed:
    """Run argv after writing back every dirty page (untimed); return its Timed (host CPU from
    `host_cgroups`, 0.0 without).

    Without the `sync`, each command paid for the writeback of what the commands before it wrote:
    a round writes ~7 GiB here, the lab's disks share this machine's page cache (dirty_background
    10 %), and the command after two 1 GiB `ssh 'cat > file'` baselines (the never-verified upload)
    ran its `ssh` at ~10 % CPU for 16 s where the next upload took 5 s (ps, session 9). Then a
    pool of backed free memory (common.warm_free_memory): `ssh 'cat > file'` truncates its last
    copy just before writing the next, and this VM charges ~2.5 s per GiB to whoever first writes
    memory that has been free for a while."""
    os.sync()
    warm_free_memory()
    with tempfile.NamedTemporaryFile(prefix="rss.") as rss_file:
        host0 = cgroup_cpu_seconds(host_cgroups or [])
        busy0, total0 = machine_cpu()
        start = time.monotonic()
        proc = subprocess.Popen(rss_wrapped(argv, Path(rss_file.name)), **kwargs)
        returncode = proc.wait()
        elapsed = time.monotonic() - start
        busy1, total1 = machine_cpu()
        host1 = cgroup_cpu_seconds(host_cgroups or [])
        return Timed(elapsed, returncode, read_rss_kib(Path(rss_file.name)),
                     read_cpu_seconds(Path(rss_file.name)), host1 - host0,
                     round(min(1.0, (busy1 - busy0) / max(total1 - total0, 1e-9)), 3))


def idle_cpu(host_cgroups: list[str], seconds: float = 10.0) -> dict[str, float]:
    """Return what the lab host and the machine use with nothing timed running, over `seconds`:
    the host's CPU seconds per second (its daemons: juju-db, the stand-in agents) and the machine's
    busy fraction (other labs, CI)."""
    host0, (busy0, total0) = cgroup_cpu_seconds(host_cgroups), machine_cpu()
    time.sleep(seconds)
    host1, (busy1, total1) = cgroup_cpu_seconds(host_cgroups), machine_cpu()
    return {"host_cpu_per_s": round((host1 - host0) / seconds, 3),
            "machine_busy": round((busy1 - busy0) / max(total1 - total0, 1e-9), 3)}


def build_archive(path: Path, size: int, backup_id: str) -> None:
    """Write a valid Juju-layout archive whose root.tar holds `size` random bytes (pigz -1)."""
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        top = Path(tmp) / "juju-backup"
        (top / "dump" / "juju").mkdir(parents=True)
        meta = {"ID": backup_id, "FormatVersion": 1, "Started": "2026-11-26T06:00:00Z",
                "ModelUUID": MODEL_UUID, "Machine": "0", "Hostname": "bench", "Version": "2.9.42",
                "Series": "focal", "HANodes": 1}
        (top / "metadata.json").write_text(json.dumps(meta))
        (top / "dump" / "juju" / "machines.bson").write_bytes(bson.encode({"_id": "bench"}))
        # the big member is a state path root.tar may hold (archive.ROOT_STATE_PATTERNS): jujud
        tools = Path(tmp) / "root" / "var/lib/juju/tools/2.9.42-focal-amd64"
        tools.mkdir(parents=True)
        subprocess.run(f"head -c {size} /dev/urandom > {tools}/jujud", shell=True, check=True)
        with tarfile.open(top / "root.tar", "w") as tar:
            tar.add(Path(tmp) / "root" / "var", arcname="var")
        (tools / "jujud").unlink()
        subprocess.run(f"tar -C {tmp} -cf - juju-backup | pigz -1 > {path}", shell=True, check=True)


class Bench:
    def __init__(self, ssh_config: Path, host: str, work: Path,
                 host_cgroups: list[str] | None = None) -> None:
        self.cfg = ssh_config
        self.host = host
        self.work = work
        self.host_cgroups = host_cgroups or []

    def jb(self, *args: str) -> Timed:
        return timed([JUJUBACKUP, "-q", "-F", str(self.cfg), "-H", self.host, *args], self.host_cgroups,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ssh(self, command: str, stdin: Path | None = None, stdout: Path | None = None,
            cipher: str | None = None) -> Timed:
        chosen = ["-c", cipher] if cipher else []
        with open(stdin or os.devnull, "rb") as src, open(stdout or os.devnull, "wb") as dst:
            done = timed(["ssh", "-F", str(self.cfg), *chosen, self.host, command], self.host_cgroups,
                         stdin=src, stdout=dst)
        if done.returncode != 0:
            raise RuntimeError(f"ssh {command} failed: {done.returncode}")
        return done

    def stream(self, mode: str, remote: str, local: Path) -> Timed:
        return timed([sys.executable, "-c", STREAM_CHILD, str(self.cfg), self.host, mode, remote, str(local)],
                     self.host_cgroups)

    def download(self, backup_id: str, dest: Path) -> Timed:
        for p in (dest, dest.with_name(dest.name + ".part"), dest.with_name(dest.name[:-7] + ".json")):
            p.unlink(missing_ok=True)
        return self.jb("download", backup_id, str(dest))


def median_rate(size: int, seconds: list[float]) -> float:
    return size / statistics.median(seconds) / 1e6


def run(bench: Bench, size: int, runs: int, stream_runs: int, rss_size: int) -> dict[str, Any]:
    work = bench.work
    backup_id = f"20261126-060000.{MODEL_UUID}"
    archive = work / "bench.tar.gz"
    build_archive(archive, size, backup_id)
    asize = archive.stat().st_size
    rc = bench.jb("upload", "--force", str(archive)).returncode
    if rc != 0:
        raise RuntimeError(f"initial upload failed (exit {rc}); is the host a provisioned controller?")
    stored = f"{BACKUPS}/{backup_id}.tar.gz"
    # the operator's usual path: download, `verify` once, upload to other controllers (untimed set-up)
    verified = work / "verified.tar.gz"
    rc = bench.download(backup_id, verified).returncode
    rc2 = timed([JUJUBACKUP, "-q", "verify", str(verified)], stdout=subprocess.DEVNULL).returncode
    if rc or rc2:
        raise RuntimeError(f"download/verify of the verified copy failed (exit {rc}/{rc2})")
    idle = idle_cpu(bench.host_cgroups) if bench.host_cgroups else None
    load_before = os.getloadavg()
    keys = ("ssh_down", "ssh_down_gcm", "jb_down", "stream_get", "ssh_up", "ssh_up_gcm", "jb_up",
            "jb_up_verified", "stream_put")
    done: dict[str, list[Timed]] = {k: [] for k in keys}
    rss: dict[str, int] = {}

    def record(key: str, took: Timed, what: str) -> None:
        assert took.returncode == 0, f"{what} exit {took.returncode}"
        done[key].append(took)

    for _ in range(runs):
        record("ssh_down", bench.ssh(f"cat {stored}", stdout=work / "ssh.bin"), "ssh cat")
        record("ssh_down_gcm", bench.ssh(f"cat {stored}", stdout=work / "ssh.bin", cipher=GCM), "ssh cat")
        record("jb_down", bench.download(backup_id, work / "dl.tar.gz"), "download")
        rss["download_1g"] = max(rss.get("download_1g", 0), done["jb_down"][-1].rss_kib)
        record("stream_get", bench.stream("get", stored, work / "stream.bin"), "stream get")
        record("ssh_up", bench.ssh("cat > /var/tmp/bench-up.bin", stdin=archive), "ssh cat >")
        record("ssh_up_gcm", bench.ssh("cat > /var/tmp/bench-up.bin", stdin=archive, cipher=GCM), "ssh cat >")
        record("jb_up", bench.jb("upload", "--force", str(archive)), "upload")
        rss["upload_1g"] = max(rss.get("upload_1g", 0), done["jb_up"][-1].rss_kib)
        record("jb_up_verified", bench.jb("upload", "--force", str(verified)), "upload of the verified copy")
        record("stream_put", bench.stream("put", "/var/tmp/bench-put.bin", archive), "stream put")
    verify = timed([JUJUBACKUP, "-q", "verify", str(archive)], bench.host_cgroups, stdout=subprocess.DEVNULL)
    t = {k: [d.seconds for d in v] for k, v in done.items()}
    med = {k: statistics.median(v) for k, v in t.items()}
    result: dict[str, Any] = {
        "archive_bytes": asize,
        "runs": runs,
        "MB_per_s": {k: round(median_rate(asize, v), 1) for k, v in t.items()},
        "seconds": {k: [round(x, 2) for x in v] for k, v in t.items()},
        # who used the CPUs during each timed command, medians of the rounds: the command and its
        # children (client), the lab host's cgroup (host), and how busy the whole 2-CPU machine was
        "cpu_seconds_median": {k: {"client": round(statistics.median(d.client_cpu for d in v), 2),
                                   "host": round(statistics.median(d.host_cpu for d in v), 2)}
                               for k, v in done.items()},
        "cpu_seconds": {k: {"client": [round(d.client_cpu, 2) for d in v],
                            "host": [round(d.host_cpu, 2) for d in v]} for k, v in done.items()},
        "machine_busy": {k: [round(d.machine_busy, 2) for d in v] for k, v in done.items()},
        "idle_before_runs": idle,
        "ratio_download_vs_ssh": round(med["ssh_down"] / med["jb_down"], 3),
        "ratio_stream_get_vs_ssh": round(med["ssh_down"] / med["stream_get"], 3),
        "ratio_upload_vs_ssh": round(med["ssh_up"] / med["jb_up"], 3),
        "ratio_download_vs_ssh_gcm": round(med["ssh_down_gcm"] / med["jb_down"], 3),
        "ratio_upload_vs_ssh_gcm": round(med["ssh_up_gcm"] / med["jb_up"], 3),
        "ratio_upload_verified_vs_ssh": round(med["ssh_up"] / med["jb_up_verified"], 3),
        "ratio_stream_put_vs_ssh": round(med["ssh_up"] / med["stream_put"], 3),
        "local_verify_seconds": round(verify.seconds, 2),
        "local_verify_cpu_seconds": round(verify.client_cpu, 2),
        # other work on the machine moves these numbers: 1/5/15-minute load before and after the runs
        "load_average": {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in os.getloadavg()]},
    }
    for p in ("ssh.bin", "stream.bin", "dl.tar.gz", "dl.json", "verified.tar.gz", "verified.json"):
        (work / p).unlink(missing_ok=True)

    failures = 0
    for _ in range(stream_runs):
        failures += bench.download(backup_id, work / "dl.tar.gz").returncode != 0
    result["stream_runs"] = stream_runs
    result["stream_failures"] = failures
    (work / "dl.tar.gz").unlink(missing_ok=True)

    if rss_size:
        big_id = f"20261126-060100.{MODEL_UUID}"
        big = work / "big.tar.gz"
        archive.unlink()
        build_archive(big, rss_size, big_id)
        up = bench.jb("upload", "--force", str(big))
        down = bench.download(big_id, work / "big-dl.tar.gz")
        result["rss_archive_bytes"] = big.stat().st_size
        rss["upload_big"] = up.rss_kib if up.returncode == 0 else -1
        rss["download_big"] = down.rss_kib if down.returncode == 0 else -1
        for p in ("big.tar.gz", "big-dl.tar.gz", "big-dl.json"):
            (work / p).unlink(missing_ok=True)
    result["peak_rss_MiB"] = {k: round(v / 1024, 1) for k, v in rss.items()}
    return result


RSS_GOAL_MIB = 150


def best_round(baseline: list[float], ours: list[float]) -> float:
    """Given the seconds of the baseline and of ours, round by round, return the best ratio of one
    round (baseline / ours: both ran within seconds of each other, under the same load)."""
    return round(max(b / o for b, o in zip(baseline, ours, strict=True)), 3)


def rows(label: str, size: int, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Given one size's result, return its rows for benchmarks.report (ratio: ssh time / ours)."""
    gib = size / 2**30
    med = {k: statistics.median(v) for k, v in result["seconds"].items()}
    rss = result["peak_rss_MiB"]
    load = result.get("load_average")
    load_text = f"{load['before'][0]:.1f}→{load['after'][0]:.1f}" if load else None
    out = []
    compared: list[tuple[str, str, str, float | None, str | None]] = [
        ("download vs ssh cat", "jb_down", "ssh_down", 0.9, "download_1g"),
        ("upload (never verified) vs ssh cat", "jb_up", "ssh_up", 0.8, "upload_1g"),
        ("upload (verify passed) vs ssh cat", "jb_up_verified", "ssh_up", 0.9, None),
    ]
    if "ssh_down_gcm" in med:  # results written before the GCM baseline have none
        compared += [
            ("download vs ssh -c aes128-gcm cat", "jb_down", "ssh_down_gcm", None, None),
            ("upload (never verified) vs ssh -c aes128-gcm cat", "jb_up", "ssh_up_gcm", None, None),
            ("upload (verify passed) vs ssh -c aes128-gcm cat", "jb_up_verified", "ssh_up_gcm", None, None),
        ]
    for metric, key, base, goal, rss_key in compared:
        out.append({"metric": metric, "size": label, "bytes": size, "ratio": round(med[base] / med[key], 3),
                    "best_round_ratio": best_round(result["seconds"][base], result["seconds"][key]),
                    "goal": goal, "better": "higher", "ours_s_per_gib": round(med[key] / gib, 2),
                    "baseline_s_per_gib": round(med[base] / gib, 2),
                    "peak_rss_mib": rss.get(rss_key) if rss_key else None, "load": load_text,
                    **_cpu_columns(result, key, base)})
    for key in ("download_big", "upload_big"):
        if key in rss and rss[key] > 0:
            out.append({"metric": f"{key.split('_')[0]} peak RSS / {RSS_GOAL_MIB} MiB",
                        "size": f"{result['rss_archive_bytes'] / 2**30:.1f}GiB",
                        "bytes": result["rss_archive_bytes"], "ratio": round(rss[key] / RSS_GOAL_MIB, 3),
                        "goal": 1.0, "better": "lower", "peak_rss_mib": rss[key]})
    return out


def _cpu_columns(result: dict[str, Any], key: str, base: str) -> dict[str, Any]:
    """Given one size's result and a row's keys, return its CPU columns (none for results written
    before the CPU was measured): CPU seconds of ours and of the baseline on the client and the lab
    host (medians), and the machine's median busy fraction while ours ran."""
    cpu = result.get("cpu_seconds_median")
    if not cpu:
        return {}
    return {"ours_cpu_s": cpu[key], "baseline_cpu_s": cpu[base],
            "machine_busy": statistics.median(result["machine_busy"][key])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", "--size", default="1GiB", help="archive sizes, e.g. 256MiB,1GiB,4GiB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stream-runs", type=int, default=10)
    parser.add_argument("--rss-size", default="2GiB")
    parser.add_argument("--ssh-config", type=Path)
    parser.add_argument("--host", default="ctl0")
    parser.add_argument("--profile", default="juju-2.9", choices=[p.name for p in profiles.PROFILES])
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results dir (default {RESULTS})")
    parser.add_argument("--work", type=Path, default=Path("/var/tmp"))
    args = parser.parse_args(argv)
    byte_compile()
    sizes, rss_size = parse_sizes(args.sizes), parse_size(args.rss_size)

    def measure(bench: Bench) -> dict[str, Any]:
        by_size: dict[str, Any] = {}
        all_rows: list[dict[str, Any]] = []
        for n, (label, size) in enumerate(sizes):
            last = n == len(sizes) - 1
            result = run(bench, size, args.runs, args.stream_runs if n == 0 else 0, rss_size if last else 0)
            by_size[label] = result
            all_rows += rows(label, size, result)
        return {"runs": args.runs, "results": all_rows, "by_size": by_size}

    with tempfile.TemporaryDirectory(dir=args.work, prefix="jb-bench-") as tmp:
        if args.ssh_config:
            doc = measure(Bench(args.ssh_config, args.host, Path(tmp)))
        else:
            from tests.lab.lab import Lab

            lab = Lab.create(controllers=1, profile=args.profile)
            try:
                doc = measure(Bench(lab.ssh_config, args.host, Path(tmp), lab.host(args.host)._st.cgroups))
            finally:
                lab.teardown()
    save(doc, "transfer", args.profile, args.out)
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
