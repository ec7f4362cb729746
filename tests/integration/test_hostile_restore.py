"""A hostile archive handed to `restore --archive … --target SPARE` is refused with exit 8 before
anything changes on the target (issue 11): a machine id that would become unit names, paths and
mongo JS, and a setuid root.tar member that `tar -p --same-owner` would install as root."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import LabFactory
from tests.integration.test_restore import JOURNAL, jb
from tests.lab.lab import LabHost
from tests.unit.archive_builders import AGENT_CONF, MODEL_UUID, V1_METADATA, ArchiveSpec, bson_file, file_info

pytestmark = pytest.mark.lab

JUJUD = "var/lib/juju/tools/2.9.42-focal-amd64/jujud"


def local_spec() -> ArchiveSpec:
    """A minimal archive whose old controller is only 127.0.0.1 (the target probes no other address)."""
    spec = ArchiveSpec()
    conf = AGENT_CONF.replace("10.77.116.68", "127.0.0.1").encode()
    spec.root[1] = (file_info("var/lib/juju/agents/machine-0/agent.conf", conf, 0o600), conf)
    spec.dump["juju/machines.bson"] = bson_file(
        {"_id": f"{MODEL_UUID}:0", "machineid": "0", "jobs": [2, 1], "model-uuid": MODEL_UUID}
    )
    return spec


def unchanged(spare: LabHost) -> None:
    assert not (spare.root / JOURNAL).exists()
    assert not (spare.root / "var/lib/juju/agents").exists()
    assert not list((spare.root / "etc/systemd/system").glob("jujud-machine-*"))
    assert not list((spare.root / "tmp").glob("jb-pwned*"))


def test_hostile_archives_are_refused_before_the_target_changes(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    lab = lab_factory(controllers=0, spares=1)
    spare = lab.host("spare0")

    bad_id = local_spec()
    bad_id.metadata = {**V1_METADATA, "ControllerMachineID": "0$(touch /tmp/jb-pwned)"}
    setuid = local_spec()
    for info, _data in setuid.root:
        if info.name == JUJUD:
            info.mode = 0o4755
    cases = {
        "machine-id": (bad_id, "'0$(touch /tmp/jb-pwned)' is not a Juju machine id"),
        "setuid": (setuid, f"root.tar member '{JUJUD}' is setuid"),
    }
    for name, (spec, reason) in cases.items():
        path = spec.write(tmp_path / f"{name}.tar.gz")
        for extra in (("--dry-run",), ("--yes",)):
            done = jb(lab, "restore", "--archive", str(path), "--target", spare.name, *extra)
            assert done.returncode == 8, (name, extra, done.stdout, done.stderr)
            assert reason in done.stderr, (name, extra, done.stderr)
            assert "internal error" not in done.stderr
            unchanged(spare)
