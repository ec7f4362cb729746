"""`restore --resume` continues only the journaled restore's own backup: the backup ID, the archive's
size and its controller CA must be the journal's (exit 6 otherwise, before anything continues)."""

from __future__ import annotations

import datetime
import json
from dataclasses import replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jujubackup import apiprobe
from jujubackup.errors import EXIT_REFUSED, EXIT_VERIFY, RefusedError, VerifyError
from jujubackup.restore import execute as X
from jujubackup.restore import plan as P
from jujubackup.restore.gather import read_backup
from jujubackup.restore.journaled import check_resume_archive, check_resume_backup
from jujubackup.restore.request import RestoreRequest
from tests.paths import VALID_28


def _other_ca() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "juju-generated CA for model juju")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def facts() -> P.BackupFacts:
    # a real Juju 2.8 archive: its agent.conf's cacert; its metadata.json has no ID (Juju's storage
    # gives one): read_backup derives it as Juju does
    return read_backup(VALID_28, VALID_28.name)


def test_a_real_juju_archive_without_an_id_gets_jujus_storage_id(facts: P.BackupFacts) -> None:
    # metadata.json: "ID": "", "Started": "2020-02-25T04:12:41.038760008Z", "Environment": e2a6a1e5-...
    assert facts.backup_id == "20200225-041241.e2a6a1e5-abea-4393-8593-5a45ae53ab97"
    params = _params(facts)
    assert X.Params.from_dict(json.loads(params.to_json())).backup_id == facts.backup_id


def _params(facts: P.BackupFacts, **changes: object) -> X.Params:
    params = X.Params(
        backup_id=facts.backup_id, mode="disaster-recovery", profile="juju-2.8", machine_id=facts.machine_id,
        model_uuid=facts.model_uuid, new_address="10.201.0.50", state_port=37017, api_port=17070,
        steps=(P.UPLOAD, P.STOP, P.UNTAR), sha256="ab" * 32, size=facts.archive_size,
        ca_sha256=apiprobe.ca_fingerprint(facts.ca_cert),
    )
    return replace(params, **changes)  # type: ignore[arg-type]


def test_the_journal_records_the_ca_and_reads_it_back(facts: P.BackupFacts) -> None:
    params = _params(facts)
    assert len(params.ca_sha256) == 64
    assert X.Params.from_dict(json.loads(params.to_json())) == params
    old = json.loads(params.to_json())
    del old["ca_sha256"]  # a journal written before the CA was recorded
    assert X.Params.from_dict(old).ca_sha256 == ""
    with pytest.raises(VerifyError) as err:
        X.Params.from_dict({**old, "ca_sha256": "'; rm -rf /"})
    assert err.value.exit_code == EXIT_VERIFY and "ca_sha256" in str(err.value)


def test_the_same_archive_resumes(facts: P.BackupFacts) -> None:
    check_resume_archive(_params(facts), facts, VALID_28, "spare0")
    # a journal from before the CA was recorded: only the backup ID and size are compared
    unrecorded = _params(facts, ca_sha256="")
    check_resume_archive(unrecorded, replace(facts, ca_cert=_other_ca()), VALID_28, "spare0")
    # a journal holding the CA's PEM only (params.ca_cert, written for juju-db's ca.crt) is checked by it
    with pytest.raises(RefusedError):
        check_resume_archive(replace(unrecorded, ca_cert=facts.ca_cert), replace(facts, ca_cert=_other_ca()),
                             VALID_28, "spare0")


def test_another_backups_archive_is_refused(facts: P.BackupFacts) -> None:
    other = replace(facts, backup_id="20260101-000000.0f0e0d0c-1111-4222-8333-444455556666")
    with pytest.raises(RefusedError) as err:
        check_resume_archive(_params(facts), other, VALID_28, "spare0")
    assert err.value.exit_code == EXIT_REFUSED
    assert f"is of backup {facts.backup_id}, but {VALID_28.name} holds {other.backup_id}" in str(err.value)
    assert "--rollback --target spare0" in (err.value.hint or "")


def test_an_archive_with_another_controller_ca_is_refused(facts: P.BackupFacts) -> None:
    with pytest.raises(RefusedError) as err:
        check_resume_archive(_params(facts), replace(facts, ca_cert=_other_ca()), VALID_28, "spare0")
    assert err.value.exit_code == EXIT_REFUSED
    assert "controller CA in" in str(err.value) and "not the CA of the backup" in str(err.value)
    assert "resume with that archive" in (err.value.hint or "")
    with pytest.raises(RefusedError):  # no CA at all is no match either
        check_resume_archive(_params(facts), replace(facts, ca_cert=""), VALID_28, "spare0")


def test_an_archive_of_another_size_is_refused(facts: P.BackupFacts) -> None:
    with pytest.raises(RefusedError) as err:
        check_resume_archive(_params(facts, size=facts.archive_size + 1), facts, VALID_28, "spare0")
    assert "started with had" in str(err.value)


def test_restore_id_resume_must_name_the_journaled_backup(facts: P.BackupFacts) -> None:
    params = _params(facts)
    check_resume_backup(params, RestoreRequest(resume=True), "ctl0")
    check_resume_backup(params, RestoreRequest(backup_ref=facts.backup_id[:12], resume=True), "ctl0")
    with pytest.raises(RefusedError) as err:
        check_resume_backup(params, RestoreRequest(backup_ref="20991231", resume=True), "ctl0")
    assert err.value.exit_code == EXIT_REFUSED and f"is of backup {facts.backup_id}" in str(err.value)


def test_ca_fingerprint_ignores_pem_wrapping_and_refuses_garbage(facts: P.BackupFacts) -> None:
    pem = facts.ca_cert
    assert apiprobe.ca_fingerprint("junk\n" + pem.replace("\n", "\r\n")) == apiprobe.ca_fingerprint(pem)
    with pytest.raises(VerifyError):
        apiprobe.ca_fingerprint("no certificate here")
