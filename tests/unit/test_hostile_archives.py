"""The hostile-archive corpus (issue 11): every class exits 8 through the real CLI naming its reason,
none exits 1 ("internal error").

root.tar is extracted with `tar -p --same-owner` as root on a controller (restore-untar), so a
setuid/setgid or world-writable member would become a root-owned hole there; a sparse member is
something neither Juju nor jujubackup writes (and restore's untar would fail on it late); the
metadata feeds typed values (sizes, times, the machine id that ends up in unit names, unit paths
and mongo JS) to the rest of the tool.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from jujubackup import cli
from jujubackup.archive import safe_extract
from jujubackup.errors import EXIT_REFUSED, EXIT_VERIFY, JujuBackupError, VerifyError
from jujubackup.metadata import BackupMetadata, restore_machine_id
from tests.unit.archive_builders import (
    AGENT_CONF,
    V1_METADATA,
    ArchiveSpec,
    dir_info,
    file_info,
    gnu_sparse_info,
    pax_sparse_info,
    tar_bytes,
)

JUJUD = "var/lib/juju/tools/2.9.42-focal-amd64/jujud"


def _root_mode(name: str, mode: int) -> Callable[[ArchiveSpec], None]:
    """Set the mode of root.tar member `name`."""

    def tweak(spec: ArchiveSpec) -> None:
        for info, _data in spec.root:
            if info.name == name:
                info.mode = mode

    return tweak


def _root_add(*members: tuple[tarfile.TarInfo, bytes | None]) -> Callable[[ArchiveSpec], None]:
    def tweak(spec: ArchiveSpec) -> None:
        spec.root.extend(members)

    return tweak


def _outer_add(*members: tuple[tarfile.TarInfo, bytes | None]) -> Callable[[ArchiveSpec], None]:
    def tweak(spec: ArchiveSpec) -> None:
        spec.extra.extend(members)

    return tweak


def _metadata(**changes: object) -> Callable[[ArchiveSpec], None]:
    def tweak(spec: ArchiveSpec) -> None:
        spec.metadata = {**V1_METADATA, **changes}

    return tweak


def _metadata_raw(key: str, raw_json: str) -> Callable[[ArchiveSpec], None]:
    """Replace one metadata value by raw JSON text (json.dumps cannot write 1e999)."""

    def tweak(spec: ArchiveSpec) -> None:
        doc = {**V1_METADATA, key: "@@"}
        spec.metadata_text = json.dumps(doc).replace('"@@"', raw_json).encode()

    return tweak


def _machine_dir(name: str) -> Callable[[ArchiveSpec], None]:
    """Put the agent dir (and agent.conf) of root.tar under var/lib/juju/agents/NAME."""

    def tweak(spec: ArchiveSpec) -> None:
        conf = AGENT_CONF.encode()
        spec.root = [
            (dir_info(f"var/lib/juju/agents/{name}"), None),
            (file_info(f"var/lib/juju/agents/{name}/agent.conf", conf, 0o600), conf),
            *spec.root[2:],
        ]

    return tweak


DEEP = "[" * 100_000 + "]" * 100_000

HOSTILE: dict[str, tuple[Callable[[ArchiveSpec], None], str]] = {
    "setuid-root-file": (_root_mode(JUJUD, 0o4755), f"root.tar member '{JUJUD}' is setuid"),
    "setgid-root-file": (_root_mode(JUJUD, 0o2755), f"root.tar member '{JUJUD}' is setgid"),
    "world-writable-file": (
        _root_mode("var/lib/juju/agents/machine-0/agent.conf", 0o666),
        "root.tar member 'var/lib/juju/agents/machine-0/agent.conf' is world-writable",
    ),
    "world-writable-dir": (
        _root_mode("var/lib/juju/agents/machine-0", 0o777),
        "root.tar member 'var/lib/juju/agents/machine-0' is world-writable",
    ),
    "setgid-dir": (
        _root_mode("var/lib/juju/agents/machine-0", 0o2755),
        "root.tar member 'var/lib/juju/agents/machine-0' is setgid",
    ),
    "gnu-sparse-root-member": (
        _root_add(gnu_sparse_info("var/lib/juju/tools/2.9.42-focal-amd64/big", b"data")),
        "root.tar member 'var/lib/juju/tools/2.9.42-focal-amd64/big' is a sparse file",
    ),
    "pax-sparse-1.0-root-member": (
        _root_add(pax_sparse_info("var/lib/juju/tools/2.9.42-focal-amd64/big", b"data")),
        "root.tar member 'var/lib/juju/tools/2.9.42-focal-amd64/big' is a sparse file",
    ),
    "pax-sparse-0.1-root-member": (
        _root_add(pax_sparse_info("var/lib/juju/tools/2.9.42-focal-amd64/big", b"data", version="0.1")),
        "root.tar member 'var/lib/juju/tools/2.9.42-focal-amd64/big' is a sparse file",
    ),
    "pax-sparse-0.0-root-member": (
        _root_add(pax_sparse_info("var/lib/juju/tools/2.9.42-focal-amd64/big", b"data", version="0.0")),
        "root.tar member 'var/lib/juju/tools/2.9.42-focal-amd64/big' is a sparse file",
    ),
    "pax-sparse-unknown-version-root-member": (
        _root_add(pax_sparse_info("var/lib/juju/tools/2.9.42-focal-amd64/big", b"data", version="2.0")),
        "root.tar member 'var/lib/juju/tools/2.9.42-focal-amd64/big' is a sparse file",
    ),
    "gnu-sparse-outer-member": (
        _outer_add(gnu_sparse_info("juju-backup/dump/juju/extra.bin", b"data")),
        "member 'juju-backup/dump/juju/extra.bin' is a sparse file",
    ),
    "setuid-outer-member": (
        _outer_add((file_info("juju-backup/dump/run", b"#!/bin/sh\n", 0o4755), b"#!/bin/sh\n")),
        "member 'juju-backup/dump/run' is setuid",
    ),
    "size-1e999": (_metadata_raw("Size", "1e999"), "unreadable field: Size inf is not a size in bytes"),
    "size-negative": (_metadata(Size=-1), "Size -1 is not a size in bytes (an integer in 0..2^63-1)"),
    "size-not-a-number": (_metadata(Size="big"), "Size 'big' is not a size in bytes"),
    "ha-nodes-1e999": (_metadata_raw("HANodes", "1e999"), "HANodes inf is not a count"),
    "time-out-of-range": (
        _metadata(Started="9999-12-31T23:59:59-23:59"),
        "Started '9999-12-31T23:59:59-23:59' is an unreadable time",
    ),
    "time-month-13": (
        _metadata(Finished="2026-13-01T00:00:00Z"), "Finished '2026-13-01T00:00:00Z' is an unreadable time"
    ),
    "time-not-a-string": (
        _metadata(Started=1700000000), "Started 1700000000 is not a string (an RFC3339 time)"
    ),
    "deep-json-metadata": (
        _metadata_raw("Notes", DEEP),
        "archive metadata.json is nested too deeply",
    ),
    "deep-json-manifest": (
        lambda spec: setattr(spec, "manifest_text", DEEP.encode()),
        "manifest.json is nested too deeply",
    ),
    "notes-a-list": (_metadata(Notes=["a"]), "unreadable field: Notes is a list, not a string"),
    "machine-a-number": (_metadata(Machine=0), "unreadable field: Machine is a number, not a string"),
    "machine-shell": (
        _metadata(Machine="0; touch /tmp/x"),
        "metadata Machine '0; touch /tmp/x' is not a Juju machine id",
    ),
    "controller-machine-path": (
        _metadata(ControllerMachineID="../../etc"),
        "metadata ControllerMachineID '../../etc' is not a Juju machine id",
    ),
    "controller-machine-js-quote": (
        _metadata(ControllerMachineID='0", "pwd": "x'),
        "is not a Juju machine id",
    ),
    "controller-machine-leading-zero": (
        _metadata(ControllerMachineID="01"),
        "metadata ControllerMachineID '01' is not a Juju machine id",
    ),
    "controller-machine-trailing-newline": (
        _metadata(ControllerMachineID="0\n"),
        "metadata ControllerMachineID '0\\n' is not a Juju machine id",
    ),
    "agent-dir-not-a-machine-tag": (
        _machine_dir("machine-0;x"),
        "root.tar member 'var/lib/juju/agents/machine-0;x' is not a Juju state file",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_each_hostile_archive_exits_8_naming_its_reason(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tweak, reason = HOSTILE[case]
    spec = ArchiveSpec()
    tweak(spec)
    path = spec.write(tmp_path / f"{case}.tar.gz")
    code = cli.main(["verify", str(path)])
    out, err = capsys.readouterr()
    assert "internal error" not in err
    assert code == EXIT_VERIFY, err
    assert reason in out, out


def test_a_container_machine_id_is_a_juju_machine_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """names.IsValidMachine accepts `0/lxd/1` (and agents/machine-0-lxd-1 is its tag): verify passes;
    only restore, which writes unit names from it, insists on a top-level machine."""
    spec = ArchiveSpec()
    spec.metadata = {**V1_METADATA, "Machine": "0/lxd/1", "ControllerMachineID": "0/lxd/1"}
    _machine_dir("machine-0-lxd-1")(spec)
    code = cli.main(["verify", str(spec.write(tmp_path / "c.tar.gz"))])
    out, err = capsys.readouterr()
    assert code == 0, out + err


@pytest.mark.parametrize("mode", [0o4755, 0o2755, 0o666])
def test_safe_extract_refuses_setuid_setgid_and_world_writable_members(mode: int, tmp_path: Path) -> None:
    raw = tar_bytes([(file_info(JUJUD, b"x", mode), b"x")])
    with (
        tarfile.open(fileobj=io.BytesIO(raw)) as tar,
        pytest.raises(VerifyError, match=r"setuid|setgid|writable"),
    ):
        safe_extract(tar, tmp_path, state_files_only=True)
    assert not (tmp_path / JUJUD).exists()


@pytest.mark.parametrize(("machine", "controller_machine", "wanted"), [
    ("0", "", "0"), ("3", "3", "3"), ("", "", "0"), ("0", "12", "12"),
])
def test_restore_machine_id_is_the_controller_machine(machine: str, controller_machine: str, wanted: str
                                                       ) -> None:
    md = BackupMetadata(machine=machine, controller_machine_id=controller_machine)
    assert restore_machine_id(md) == wanted


@pytest.mark.parametrize(("value", "code"), [
    ("0; touch /tmp/x", EXIT_VERIFY), ("../0", EXIT_VERIFY), ("01", EXIT_VERIFY), ("0\n", EXIT_VERIFY),
    ('0", "pwd": "', EXIT_VERIFY), ("0/lxd/1", EXIT_REFUSED),
])
def test_restore_machine_id_refuses_what_cannot_be_a_unit_name(value: str, code: int) -> None:
    with pytest.raises(JujuBackupError) as err:
        restore_machine_id(BackupMetadata(machine="0", controller_machine_id=value))
    assert err.value.exit_code == code and repr(value) in err.value.message


def test_the_restore_plan_refuses_a_machine_id_that_is_no_juju_machine_id() -> None:
    from jujubackup.restore.backupfacts import backup_facts

    md = BackupMetadata(machine="0", controller_machine_id="0$(touch /tmp/x)")
    with pytest.raises(VerifyError, match="is not a Juju machine id"):
        backup_facts(md, {}, [], backup_id="x", archive_size=1, unpacked_size=1, has_oplog=False)
