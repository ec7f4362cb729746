"""Numbers, flags and digests from remote scripts are hostile input (issue 11): parsed with bounds,
refused with exit 8, never a bare int() that ends as exit 1 or a size no file has."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jujubackup import facts
from jujubackup.errors import EXIT_VERIFY
from jujubackup.host.base import RemoteResult
from jujubackup.remote_values import HostileOutputError, remote_int
from jujubackup.transfer import RemoteFile, remote_file, remote_stat
from tests.unit.test_facts import probe_doc


class PrintingHost:
    """A host whose every script prints `stdout` (what a compromised controller can do)."""

    name = "ctl0"

    def __init__(self, stdout: str) -> None:
        self.stdout = stdout

    def run(self, script: str, text: str, **_: Any) -> RemoteResult:
        return RemoteResult(script, self.stdout, "")


GOOD = {"exists": True, "size": 12, "sha256": "ab" * 32}


def test_transfer_stat_good_output_is_a_remote_file() -> None:
    assert remote_stat(PrintingHost(json.dumps(GOOD)), "/x") == RemoteFile(True, 12, "ab" * 32)  # type: ignore[arg-type]
    empty = {"exists": False, "size": 0, "sha256": ""}
    assert remote_stat(PrintingHost(json.dumps(empty)), "/x") == RemoteFile(False, 0, "")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [
    '{"exists": true, "size": 1e999, "sha256": ""}',          # inf: int() raised OverflowError (exit 1)
    '{"exists": true, "size": -5, "sha256": ""}',             # a negative offset to resume from
    '{"exists": true, "size": 9223372036854775808, "sha256": ""}',
    '{"exists": true, "size": "12 ", "sha256": ""}',
    '{"exists": true, "size": "1\u00b2", "sha256": ""}',       # '²' is a digit to str.isdigit
    '{"exists": true, "size": 1.5, "sha256": ""}',
    '{"exists": true, "size": true, "sha256": ""}',
    '{"exists": "false", "size": 0, "sha256": ""}',           # bool("false") is True
    '{"exists": true, "size": 1, "sha256": "../../x"}',
    '{"exists": true}',
    '[1, 2]',
])
def test_hostile_transfer_stat_output_exits_8(bad: str) -> None:
    with pytest.raises(HostileOutputError) as info:
        remote_stat(PrintingHost(bad), "/x")  # type: ignore[arg-type]
    assert info.value.exit_code == EXIT_VERIFY and "ctl0" in info.value.message


def test_upload_prepare_staged_document_is_checked_the_same_way() -> None:
    with pytest.raises(HostileOutputError):
        remote_file({"exists": True, "size": float("inf"), "sha256": ""}, "upload-prepare")


@pytest.mark.parametrize("override", [
    {"free_bytes": float("inf")},
    {"free_bytes": -1},
    {"free_bytes": "lots"},
    {"services": [{"name": "jujud-machine-0", "MainPID": "1e9"}]},
])
def test_hostile_probe_numbers_exit_8(override: dict[str, Any]) -> None:
    with pytest.raises(HostileOutputError) as info:
        facts.parse_probe(probe_doc(**override), host="ctl0")
    assert info.value.exit_code == EXIT_VERIFY


def test_hostile_agent_conf_port_and_tag_exit_8() -> None:
    doc = probe_doc()
    for key, value in (("stateport", "70000"), ("apiport", "-1"), ("tag", "machine-../../x")):
        bad = {**doc, "agent_conf": {**doc["agent_conf"], key: value}}
        with pytest.raises(HostileOutputError):
            facts.parse_probe(bad, host="ctl0")


def test_probe_numbers_as_mongo_prints_them_still_parse() -> None:
    facts_ = facts.parse_probe(probe_doc(free_bytes="4096"), host="ctl0")
    assert facts_.free_bytes == 4096
    assert remote_int({"floatApprox": 8192}, "sizeOnDisk") == 8192  # NumberLong via JSON.stringify
    assert remote_int({"$numberLong": "17070"}, "port") == 17070
    assert remote_int(1.0, "health") == 1 and remote_int(None, "x", default=7) == 7
