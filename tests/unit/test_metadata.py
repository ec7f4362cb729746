"""metadata.py: Juju metadata v0/v1 read, v1 write, backup IDs, ID resolution."""

from __future__ import annotations

import json
import tarfile
from datetime import datetime, timedelta, timezone

import pytest

from jujubackup.errors import EXIT_NOT_FOUND, EXIT_VERIFY, NotFoundError, VerifyError
from jujubackup.metadata import (
    CHECKSUM_FORMAT,
    GO_ZERO_TIME,
    V1_KEYS,
    BackupMetadata,
    archive_name,
    count_controller_machines,
    derive_ha_nodes,
    format_time,
    identity_problems,
    is_uuid,
    make_backup_id,
    parse_metadata_json,
    parse_time,
    resolve_id,
    validate_backup_id,
)
from tests.unit.archive_builders import MODEL_UUID, V1_METADATA, VALID


def fixture_metadata_text() -> bytes:
    with tarfile.open(VALID) as tar:
        f = tar.extractfile("juju-backup/metadata.json")
        assert f is not None
        return f.read()


def test_fixture_v0_metadata_reads_environment_machine_and_started() -> None:
    md = parse_metadata_json(fixture_metadata_text())
    assert md.format_version == 0
    assert md.machine == "0"
    assert md.model_uuid == MODEL_UUID  # from `Environment`
    assert md.version == "2.8-beta1.1"
    assert md.series == "bionic"
    assert md.hostname == "juju-53ab97-0"
    assert md.started == datetime(2020, 2, 25, 4, 12, 41, 38760, tzinfo=timezone.utc)
    assert md.stored is None and md.finished is None  # Go zero time
    assert md.ha_nodes is None  # v0: derived from the dump by archive.py


def test_fixture_ca_private_key_is_never_written_or_shown() -> None:
    text = fixture_metadata_text()
    assert b"PRIVATE KEY" in text
    md = parse_metadata_json(text)
    shown = json.dumps(md.to_juju_dict()) + json.dumps(md.to_api_dict()) + repr(md)
    assert "PRIVATE KEY" not in shown


def test_v1_written_with_every_field_in_juju_order() -> None:
    md = BackupMetadata.from_json_dict(V1_METADATA)
    out = md.to_juju_dict()
    assert tuple(out) == V1_KEYS
    assert out["FormatVersion"] == 1
    assert out["Started"] == "2026-11-26T06:00:01.123456Z"
    assert out["Finished"] == "2026-11-26T06:00:09Z"
    assert out["Stored"] == GO_ZERO_TIME
    assert out["HANodes"] == 1
    assert out["ControllerMachineInstanceID"] == "ctl0"


def test_v0_is_written_as_v1_with_model_uuid() -> None:
    out = parse_metadata_json(fixture_metadata_text()).to_juju_dict()
    assert out["FormatVersion"] == 1
    assert out["ModelUUID"] == MODEL_UUID
    assert "Environment" not in out
    assert out["Stored"] == GO_ZERO_TIME


def test_v1_round_trip_is_stable() -> None:
    once = BackupMetadata.from_json_dict(V1_METADATA).to_juju_dict()
    assert BackupMetadata.from_json_dict(once).to_juju_dict() == once


def test_newer_format_version_is_refused_with_exit_8_and_hint() -> None:
    with pytest.raises(VerifyError) as err:
        BackupMetadata.from_json_dict({**V1_METADATA, "FormatVersion": 2})
    assert str(err.value) == "archive metadata FormatVersion 2 is newer than this jujubackup understands"
    assert err.value.hint and "upgrade jujubackup" in err.value.hint
    assert err.value.exit_code == EXIT_VERIFY


@pytest.mark.parametrize("bad", ["1", -1, 1.5, True, None])
def test_non_integer_format_version_is_refused(bad: object) -> None:
    with pytest.raises(VerifyError, match="FormatVersion"):
        BackupMetadata.from_json_dict({**V1_METADATA, "FormatVersion": bad})


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"Started": "yesterday"}', '{"Machine": {"a": 1}}'])
def test_malformed_metadata_is_a_verify_error(text: str) -> None:
    with pytest.raises(VerifyError):
        parse_metadata_json(text)


def test_with_storage_sets_juju_catalog_fields() -> None:
    md = BackupMetadata.from_json_dict(V1_METADATA)
    stored = datetime(2026, 11, 26, 6, 1, 0, tzinfo=timezone.utc)
    done = md.with_storage(checksum="pmxx7bCwtZVV+KM48YKz5w6Boc0=", size=1234, stored=stored)
    out = done.to_juju_dict()
    assert out["ID"] == f"20261126-060001.{MODEL_UUID}"
    assert out["ChecksumFormat"] == CHECKSUM_FORMAT == "SHA-1, base64 encoded"
    assert out["Stored"] == "2026-11-26T06:01:00Z"
    assert out["Size"] == 1234
    api = done.to_api_dict()
    assert api["id"] == out["ID"] and api["model"] == MODEL_UUID and api["ha-nodes"] == 1


def test_times_parse_nanoseconds_and_offsets_to_utc() -> None:
    assert parse_time("2020-03-03T15:56:49.610854672Z") == datetime(
        2020, 3, 3, 15, 56, 49, 610854, tzinfo=timezone.utc
    )
    assert parse_time("2020-03-03T17:56:49+02:00") == datetime(2020, 3, 3, 15, 56, 49, tzinfo=timezone.utc)
    assert parse_time(GO_ZERO_TIME) is None and parse_time("") is None
    assert format_time(None) == GO_ZERO_TIME
    assert format_time(datetime(2020, 1, 2, 3, 4, 5)) == "2020-01-02T03:04:05Z"


def test_backup_id_and_archive_name_use_utc() -> None:
    started = datetime(2026, 11, 26, 8, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    assert make_backup_id(started, MODEL_UUID) == f"20261126-063005.{MODEL_UUID}"
    assert archive_name(started) == "juju-backup-20261126-063005.tar.gz"
    assert archive_name(datetime(2026, 1, 2, 3, 4, 5)) == "juju-backup-20260102-030405.tar.gz"


def test_ha_nodes_from_controller_nodes_else_controller_machines() -> None:
    machines = [
        {"jobs": [2, 1], "model-uuid": MODEL_UUID},
        {"jobs": [1, 2], "model-uuid": MODEL_UUID},
        {"jobs": [1], "model-uuid": MODEL_UUID},
        {"jobs": [2], "model-uuid": "other-model"},
    ]
    counts = count_controller_machines(machines)
    assert derive_ha_nodes(None, counts, MODEL_UUID) == 2
    assert derive_ha_nodes(0, counts, MODEL_UUID) == 2
    assert derive_ha_nodes(3, counts, MODEL_UUID) == 3
    assert derive_ha_nodes(None, {}, MODEL_UUID) == 0


IDS = [
    f"20261125-100000.{MODEL_UUID}",
    f"20261126-060001.{MODEL_UUID}",
    "20261126-070000.11111111-2222-3333-4444-555555555555",
]


def test_resolve_exact_prefix_and_latest() -> None:
    assert resolve_id(IDS, IDS[0]) == IDS[0]
    assert resolve_id(IDS, "20261125") == IDS[0]
    assert resolve_id(IDS, "20261126-06") == IDS[1]
    assert resolve_id(IDS, "latest") == IDS[2]


def test_resolve_ambiguous_lists_the_matches() -> None:
    with pytest.raises(NotFoundError) as err:
        resolve_id(IDS, "20261126")
    assert err.value.exit_code == EXIT_NOT_FOUND
    assert "ambiguous" in str(err.value)
    assert err.value.hint and IDS[1] in err.value.hint and IDS[2] in err.value.hint
    assert IDS[0] not in err.value.hint


def test_resolve_unknown_lists_candidates() -> None:
    with pytest.raises(NotFoundError) as err:
        resolve_id(IDS, "2025")
    assert str(err.value) == "no backup ID matches '2025'"
    assert err.value.hint and all(i in err.value.hint for i in IDS)


def test_resolve_in_empty_catalog() -> None:
    with pytest.raises(NotFoundError, match="latest"):
        resolve_id([], "latest")
    with pytest.raises(NotFoundError) as err:
        resolve_id([], "2026")
    assert err.value.hint and "no backups" in err.value.hint


# --- IDs and UUIDs from archives are untrusted: they end up in remote paths --------------------

GOOD_ID = f"20261126-063005.{MODEL_UUID}"


def test_a_juju_backup_id_is_valid() -> None:
    assert validate_backup_id(GOOD_ID) == GOOD_ID


@pytest.mark.parametrize(
    "bad",
    [
        "../../tmp/evil",
        f"20261126-063005.{MODEL_UUID}/x",
        f"20261126-063005.{MODEL_UUID}/../../etc/cron.d/x",
        f"20261126-063005.{MODEL_UUID}\n",
        f"20261126-063005.{MODEL_UUID}\nrm -rf /",
        "20261126-063005.x/y",
        "20261126-063005.unknown",
        f"2026-11-26.{MODEL_UUID}",
        f" 20261126-063005.{MODEL_UUID}",
        "",
    ],
)
def test_an_id_that_is_not_time_dot_uuid_is_refused_with_exit_8(bad: str) -> None:
    with pytest.raises(VerifyError) as err:
        validate_backup_id(bad)
    assert err.value.exit_code == EXIT_VERIFY
    assert str(err.value) == f"backup ID {bad!r} is not of the form YYYYMMDD-hhmmss.<uuid>"


@pytest.mark.parametrize("bad", ["../x", "x/y", f"{MODEL_UUID}\n", f"{MODEL_UUID}/..", MODEL_UUID[:-1]])
def test_non_uuids_are_not_uuids(bad: str) -> None:
    assert is_uuid(MODEL_UUID)
    assert not is_uuid(bad)


def test_metadata_with_bad_identity_fields_lists_each_problem() -> None:
    md = BackupMetadata.from_json_dict(
        {**V1_METADATA, "ID": "../../tmp/evil", "ModelUUID": "x/y", "ControllerUUID": "..\n"}
    )
    assert identity_problems(md) == [
        "metadata ID '../../tmp/evil' is not of the form YYYYMMDD-hhmmss.<uuid>",
        "metadata ModelUUID 'x/y' is not a UUID",
        "metadata ControllerUUID '..\\n' is not a UUID",
    ]


def test_metadata_with_empty_or_valid_identity_fields_has_no_problem() -> None:
    assert identity_problems(BackupMetadata.from_json_dict(V1_METADATA)) == []
    assert identity_problems(parse_metadata_json(fixture_metadata_text())) == []
    unset = BackupMetadata.from_json_dict({**V1_METADATA, "ID": "", "ControllerUUID": ""})
    assert identity_problems(unset) == []
