"""Pure helpers of restore/ (execute, gather, target, clientconfig) and operations/restore.py:
params, steps, units, client config."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from jujubackup import profiles, scripts
from jujubackup.restore import execute as X
from jujubackup.restore import plan as P
from jujubackup.restore.clientconfig import rewrite_controllers_yaml
from jujubackup.restore.target import needs_readdress, spare_from_preflight
from tests.paths import VALID_28
from tests.unit.restore_script_samples import RESTORE_SAMPLES

PARAMS = X.Params(
    backup_id="20260101-000000.0f0e0d0c-1111-4222-8333-444455556666",
    mode="disaster-recovery",
    profile="juju-2.9",
    machine_id="2",
    model_uuid="0f0e0d0c-1111-4222-8333-444455556666",
    new_address="10.201.0.50",
    state_port=37017,
    api_port=17070,
    steps=(P.UPLOAD, P.STOP, P.UNTAR),
    sha256="ab" * 32,
    size=123,
    install=True,
)


def test_params_round_trip_through_json() -> None:
    import json

    assert X.Params.from_dict(json.loads(PARAMS.to_json())) == PARAMS


def test_every_step_script_renders_and_passes_shellcheck_for_both_profiles() -> None:
    for profile in ("juju-2.9", "juju-2.8"):
        params = X.Params(**{**PARAMS.__dict__, "profile": profile})
        extra = [("rollback", "restore-rollback"), ("restart", "restore-restart")]
        for step, name in [*X.SCRIPT_OF.items(), *extra]:
            text = scripts.render(name, **X.step_values(params, step))
            checked = subprocess.run(
                ["shellcheck", "-s", "bash", "-"], input=text, capture_output=True, text=True, check=False
            )
            assert checked.returncode == 0, f"{profile} {name}:\n{checked.stdout}"


def test_unit_files_name_the_restored_machine_and_the_profile_paths() -> None:
    files = {f["path"]: f for f in X.unit_files(profiles.JUJU_28, PARAMS)}
    unit = files["/etc/systemd/system/jujud-machine-2.service"]["content"]
    assert "ExecStart=/etc/systemd/system/jujud-machine-2-exec-start.sh" in unit
    start = files["/etc/systemd/system/jujud-machine-2-exec-start.sh"]["content"]
    assert "/var/lib/juju/tools/machine-2/jujud machine --data-dir /var/lib/juju --machine-id 2" in start
    db = files["/etc/systemd/system/juju-db.service"]
    assert db["replace"] is False
    assert "/usr/lib/juju/mongo3.2/bin/mongod --dbpath /var/lib/juju/db" in db["content"]
    assert "--keyFile /var/lib/juju/shared-secret" in db["content"]
    snap = {f["path"]: f for f in X.unit_files(profiles.JUJU_29, PARAMS)}
    assert (
        "tlsCertificateKeyFile = /var/snap/juju-db/common/server.pem"
        in snap["/var/snap/juju-db/common/juju-db.config"]["content"]
    )
    assert (
        "--config /var/snap/juju-db/common/juju-db.config"
        in snap["/etc/systemd/system/snap.juju-db.daemon.service"]["content"]
    )


def test_snapshot_holds_the_state_and_the_db_unit() -> None:
    assert X.snapshot_paths(profiles.JUJU_29) == [
        "/var/lib/juju",
        "/var/snap/juju-db/common",
        "/etc/systemd/system/snap.juju-db.daemon.service",
    ]
    assert X.snapshot_paths(profiles.JUJU_28) == ["/var/lib/juju", "/etc/systemd/system/juju-db.service"]


def test_spare_preflight_gives_the_profile_of_its_mongo_tools_and_no_juju() -> None:
    pre = {"existing": ["/usr/lib/juju/mongo3.2/bin/mongod", "/usr/lib/juju/mongo3.2/bin/mongorestore"]}
    target = spare_from_preflight(pre, "spare0")
    assert (target.profile, target.juju_version, target.has_state) == ("juju-2.8", None, False)
    assert spare_from_preflight({"existing": ["/snap/bin/juju-db.mongod"]}, "x").profile is None


def test_same_controller_single_node_same_address_is_not_readdressed() -> None:
    me = P.ControllerMachine("0", ("10.201.0.10",))
    backup = P.BackupFacts("id", "c", "m", "0", "2.9.42", "focal", None, 1, 1, controllers=(me,))
    target = P.TargetFacts(name="ctl0", address="10.201.0.10", profile="juju-2.9")
    assert not needs_readdress(P.Mode.same, backup, target)
    assert needs_readdress(P.Mode.dr, backup, target)
    ha = P.BackupFacts(
        "id",
        "c",
        "m",
        "0",
        "2.9.42",
        "focal",
        None,
        1,
        1,
        controllers=(me, P.ControllerMachine("1", ("10.201.0.11",))),
    )
    assert needs_readdress(P.Mode.same, ha, target)


CONTROLLERS_YAML = """controllers:
  lab:
    uuid: 8a293c6a-855b-47fd-8201-affdf29c9605
    api-endpoints: ['10.77.116.68:17070', '10.77.116.194:17070']
    ca-cert: |
      -----BEGIN CERTIFICATE-----
      X
      -----END CERTIFICATE-----
  other:
    uuid: 11111111-2222-3333-4444-555555555555
    api-endpoints: ['10.0.0.1:17070']
current-controller: lab
"""


def test_client_config_rewrites_only_that_controllers_endpoints() -> None:
    text, name = rewrite_controllers_yaml(
        CONTROLLERS_YAML, "8a293c6a-855b-47fd-8201-affdf29c9605", "10.201.0.50:17070"
    )
    assert name == "lab"
    assert "api-endpoints: ['10.201.0.50:17070']" in text and "10.77.116.68" not in text
    assert "10.0.0.1:17070" in text and "current-controller: lab" in text
    same, none = rewrite_controllers_yaml(CONTROLLERS_YAML, "no-such-uuid", "x:1")
    assert none is None and same == CONTROLLERS_YAML


def test_read_backup_of_the_28_fixture_gives_the_plan_its_facts() -> None:

    from jujubackup import archive
    from jujubackup.restore.gather import Checked, read_backup

    path = VALID_28
    checked = Checked.of_report(archive.verify_archive(path))
    facts = replace(
        read_backup(path, "fixture"), unpacked_size=checked.unpacked_size, has_oplog=checked.has_oplog
    )
    assert (facts.machine_id, facts.model_uuid, facts.state_port) == (
        "0",
        "e2a6a1e5-abea-4393-8593-5a45ae53ab97",
        37017,
    )
    assert [c.machine_id for c in facts.controllers] == ["0", "1", "2"]
    assert facts.unpacked_size > 40960 and not facts.has_oplog


def test_read_backup_counts_the_ubuntu_keys_and_the_plan_says_they_are_merged() -> None:

    from jujubackup.restore.gather import read_backup

    facts = read_backup(VALID_28, "fixture")
    assert facts.ubuntu_keys is not None and facts.ubuntu_keys >= 1
    target = P.TargetFacts(name="spare0", address="10.201.0.50", profile="juju-2.8")
    plan = P.make_plan(facts, target, P.RestoreOptions(mode=P.Mode.dr), check=False)
    untar = next(s for s in plan.steps if s.name == P.UNTAR)
    assert any(
        "will replace /home/ubuntu/.ssh/authorized_keys on spare0 with the backup's "
        f"({facts.ubuntu_keys} keys)" in line
        and "current keys are merged in" in line
        for line in untar.details
    )


def test_failed_verify_hint_says_what_is_active_and_what_failed() -> None:
    stderr = (
        "jujubackup[verify]: verification failed: db=active jujud=failed api=false "
        "peergrouper='ERROR juju.worker.peergrouper no address' address_in_db=true\n"
    )
    hint = X.verify_hint(stderr, PARAMS, "spare0")
    assert "snap.juju-db.daemon is active" in hint
    assert "jujud-machine-2 is failed" in hint
    assert "nothing answers on API port 17070" in hint and "peergrouper" in hint
    assert "/var/log/juju/machine-2.log" in hint and "--rollback --target spare0" in hint
    assert "services are running" not in hint


def test_resume_and_rollback_need_no_target() -> None:
    from jujubackup.operations.restore import check_request
    from jujubackup.restore.request import RestoreRequest

    check_request(RestoreRequest(backup_ref="20260101-000000.x", resume=True))
    check_request(RestoreRequest(rollback=True))


def test_the_password_js_file_is_removed_when_the_step_is_terminated(tmp_path: Path) -> None:
    # mongo_auth removed its 0600 JS file (the statepassword) only after the shell returned: a step
    # TERMed meanwhile (the detached supervisor TERMs the job's process group) left it (issue 11)
    journal, ready = tmp_path / "journal", tmp_path / "ready"
    journal.mkdir()
    conf = tmp_path / "agent.conf"
    conf.write_text("statepassword: s3cret\n")
    shell = tmp_path / "mongo"
    shell.write_text(  # answers --version (lib/mongo-tls asks first), then runs until terminated
        '#!/bin/bash\nif [[ $1 == --version ]]; then echo "MongoDB shell version v4.4.18"; exit 0; fi\n'
        f'echo $$ >{ready}.tmp && mv {ready}.tmp {ready}\nexec sleep 20\n'
    )
    shell.chmod(0o755)
    values = {**RESTORE_SAMPLES["restore-start"][0], "journal_dir": str(journal), "mongo_shell": str(shell)}
    harness = scripts.environment().from_string(
        "#!/bin/bash\n{{ bash_lib('restore') }}\n"
        f"AGENT_CONF={scripts.shell_quote(str(conf))}\nprintf 'print(1)\\n' | mongo_auth\n"
    ).render(**values)
    step = subprocess.Popen(["bash", "-c", harness], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline and step.poll() is None, "the mongo shell never ran"
            time.sleep(0.05)
        assert list(journal.glob("auth.*.js"))  # the password file exists while the shell runs
        os.killpg(step.pid, signal.SIGTERM)  # as the supervisor ends a job: its whole process group
        step.wait(timeout=30)
        while _group_alive(step.pid):  # the subshell holding the file ends after the shell it waits for
            assert time.monotonic() < deadline + 30, "the step's processes outlived the TERM"
            time.sleep(0.05)
    finally:
        if step.poll() is None:
            os.killpg(step.pid, signal.SIGKILL)
            step.wait()
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(ready.read_text()), signal.SIGKILL)
    assert list(journal.glob("auth.*.js")) == []


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _quiet_ui() -> Any:
    import io

    from rich.console import Console

    from jujubackup.ui import UI

    return UI(quiet=True, out=Console(file=io.StringIO()), err=Console(file=io.StringIO()))


def test_client_config_is_replaced_by_rename_keeping_its_mode(tmp_path: Path) -> None:
    from jujubackup.restore.clientconfig import update_client_config

    path = tmp_path / "controllers.yaml"
    path.write_text(CONTROLLERS_YAML)
    path.chmod(0o600)
    inode = path.stat().st_ino
    assert update_client_config("8a293c6a-855b-47fd-8201-affdf29c9605", "10.201.0.50", 17070, _quiet_ui(),
                                lambda _q: True, yes=True, data_dir=tmp_path)
    assert "10.201.0.50:17070" in path.read_text() and path.stat().st_ino != inode  # a new file
    assert path.stat().st_mode & 0o777 == 0o600 and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_client_config_that_is_a_link_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    from jujubackup.errors import RefusedError
    from jujubackup.restore.clientconfig import update_client_config

    elsewhere = tmp_path / "elsewhere.yaml"  # e.g. a file of another user's, or ~/.bashrc
    elsewhere.write_text(CONTROLLERS_YAML)
    (tmp_path / "juju").mkdir()
    (tmp_path / "juju/controllers.yaml").symlink_to(elsewhere)
    with pytest.raises(RefusedError) as info:
        update_client_config("8a293c6a-855b-47fd-8201-affdf29c9605", "10.201.0.50", 17070, _quiet_ui(),
                             lambda _q: True, yes=True, data_dir=tmp_path / "juju")
    assert info.value.exit_code == 6 and "symbolic link" in info.value.message
    assert elsewhere.read_text() == CONTROLLERS_YAML
    assert (tmp_path / "juju/controllers.yaml").is_symlink()


@pytest.mark.parametrize(("key", "value"), [
    ("machine_id", "0; db.dropDatabase()"),       # reaches unit names, unit paths and mongo JS
    ("machine_id", "0\n"),
    ("machine_id", "0/lxd/1"),                     # restore takes only a top-level machine
    ("backup_id", "../../etc/x"),
    ("model_uuid", "m'); x('"),
    ("new_address", "10.0.0.1 -oProxyCommand=x"),
    ("state_port", 0),
    ("api_port", "17070"),
    ("steps", ["upload", "rm -rf /"]),
    ("sha256", "zz"),
    ("size", -1),
    ("install", "yes"),
    ("oplog", "true; rm"),                         # reaches fresh-db's template
    ("profile", "juju-9"),
    ("mode", "anything"),
    ("backup_dir", "/"),
    ("backup_dir", "relative"),
    ("harvest_modes", [["0f0e0d0c-1111-4222-8333-444455556666", "default", "all; rm"]]),
    ("harvest_modes", [["0f0e0d0c-1111-4222-8333-444455556666", "$(x)", None]]),
    ("harvest_modes", "none"),
    ("mongod_version", "4.4.30; rm -rf /"),
    ("shell_version", "4.4.30 $(id)"),
    ("tools_version", "100.5.1\n"),
    ("ca_cert", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN RSA PRIVATE KEY"),
    ("ca_cert", 7),
])
def test_resume_refuses_journal_params_that_restore_never_writes(key: str, value: Any) -> None:
    import json

    from jujubackup.errors import VerifyError

    doc = {**json.loads(PARAMS.to_json()), key: value}
    with pytest.raises(VerifyError) as info:
        X.Params.from_dict(doc)
    assert info.value.exit_code == 8 and key in info.value.message


def test_resume_reads_the_params_restore_writes() -> None:
    import json

    doc = json.loads(PARAMS.to_json())
    model = "0f0e0d0c-1111-4222-8333-444455556666"
    doc["harvest_modes"] = [[model, "default", None]]
    assert X.Params.from_dict(doc).harvest_modes == ((model, "default", None),)


def test_a_44_30_target_gets_the_backups_ca_and_a_client_ca_config() -> None:
    from dataclasses import replace

    ca = "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n"
    common = "/var/snap/juju-db/common"

    def files(profile: profiles.Profile, **changes: str) -> dict[str, dict[str, Any]]:
        return {f["path"]: f for f in X.unit_files(profile, replace(PARAMS, **changes))}

    mutual = files(profiles.JUJU_36, mongod_version="4.4.30", ca_cert=ca)
    assert mutual[f"{common}/ca.crt"]["content"] == ca and mutual[f"{common}/ca.crt"]["replace"] is True
    assert f"tlsCAFile = {common}/ca.crt" in mutual[f"{common}/juju-db.config"]["content"]
    older = files(profiles.JUJU_29, mongod_version="4.4.18", ca_cert=ca)
    # below 4.4.30 the backup's CA goes only over a ca.crt that is there (a bootstrapped target's own)
    assert older[f"{common}/ca.crt"]["replace"] == "if-exists" and older[f"{common}/ca.crt"]["content"] == ca
    assert "tlsCAFile" not in older[f"{common}/juju-db.config"]["content"]
    config = files(profiles.JUJU_28_FOCAL, mongod_version="4.0.9")[f"{common}/juju-db.config"]["content"]
    assert "sslMode = requireSSL" in config and "tls" not in config  # mongod 4.0 knows no net.tls keys


TOKEN = "0123456789abcdef"


def _early(pushing: Any) -> X.Upload:
    """The upload of a target that serves nothing, its archive pushed early under TOKEN."""
    return X.Upload(None, pushing=pushing, stop_during_push=True, push_token=TOKEN)


def _pushing_host(tmp_path: Path, on_snapshot: Any = None) -> Any:
    """A fake target whose step scripts answer as done; `on_snapshot` runs when snapshot does."""
    from tests.fakehost import FakeHost, Reply

    def snapshot(_text: str, _stdin: bytes) -> Reply:
        if on_snapshot is not None:
            on_snapshot()
        return Reply('{"step":"snapshot"}\n')

    host = FakeHost("spare0", tmp_path)
    for name in ("restore-stop", "restore-stage", "restore-untar", "restore-restart"):
        host.expect(name, Reply('{"step":"x"}\n'))
    return host.expect("restore-snapshot", snapshot)


def test_steps_that_need_no_archive_run_while_the_early_push_is_under_way(tmp_path: Path) -> None:
    from concurrent.futures import Future

    params = replace(PARAMS, steps=(P.UPLOAD, P.STOP, P.SNAPSHOT, P.UNTAR))
    pushing: Future[str] = Future()
    host = _pushing_host(tmp_path, on_snapshot=lambda: pushing.set_result(PARAMS.sha256))
    outcome = X.execute(host, params, upload=_early(pushing),
                        journal=X.Journal(exists=True),
                        on_step=lambda _s: None)
    # stop-services and snapshot went first, untar-files (waiting for root.tar) next; upload waited
    # for the push
    assert host.ran == ["restore-stop", "restore-snapshot", "restore-untar", "restore-stage"]
    assert outcome.ran == [P.STOP, P.SNAPSHOT, P.UNTAR, P.UPLOAD]

    done: Future[str] = Future()
    done.set_result(PARAMS.sha256)
    host = _pushing_host(tmp_path)
    X.execute(host, params, upload=_early(done),
              journal=X.Journal(exists=True),
              on_step=lambda _s: None)
    assert host.ran == ["restore-stage", "restore-stop", "restore-snapshot", "restore-untar"]


def test_a_controller_with_models_keeps_serving_while_its_archive_is_pushed() -> None:
    """Only a target that serves nothing worth keeping has its services stopped during the push: a
    controller with models is stopped after it (the plan's order), so its downtime does not grow by
    the push's duration."""
    from concurrent.futures import Future

    steps = (P.UPLOAD, P.STOP, P.SNAPSHOT, P.UNTAR)
    pushing: Future[str] = Future()
    assert X.step_order(steps, X.Upload(None, pushing=pushing)) == steps
    assert X.step_order(steps, _early(pushing)) == (
        P.STOP, P.SNAPSHOT, P.UNTAR, P.UPLOAD)
    everything = P.STEP_ORDER
    assert X.step_order(everything, _early(pushing)) == (
        P.STOP, P.SNAPSHOT, P.UNTAR, P.INSTALL, P.FRESH_DB, P.UPLOAD, P.LOAD_DB, P.START, P.VERIFY,
        P.CLEANUP)


def test_the_steps_that_need_only_root_tar_wait_for_it_while_the_push_goes_on(tmp_path: Path) -> None:
    """untar-files runs ahead of upload told to wait for root.tar (restore-receive's root.ready);
    after the upload step (no early push) it is not."""
    from concurrent.futures import Future

    from tests.fakehost import Reply

    untars: list[str] = []

    def untar(text: str, _stdin: bytes) -> Reply:
        untars.append(text)
        return Reply('{"step":"untar-files"}\n')

    params = replace(PARAMS, steps=(P.UPLOAD, P.STOP, P.SNAPSHOT, P.UNTAR))
    pushing: Future[str] = Future()
    host = _pushing_host(tmp_path, on_snapshot=lambda: pushing.set_result(PARAMS.sha256))
    host.expect("restore-untar", untar)
    X.execute(host, params, upload=_early(pushing),
              journal=X.Journal(exists=True), on_step=lambda _s: None)
    host = _pushing_host(tmp_path)
    host.expect("restore-untar", untar)
    X.execute(host, params, upload=_early(pushing),
              journal=X.Journal(exists=True), on_step=lambda _s: None)
    assert ["wait_root=1" in text for text in untars] == [True, False]
    assert f"token={TOKEN}" in untars[0]


def test_without_a_token_naming_the_push_only_the_steps_that_need_no_archive_go_ahead() -> None:
    """untar-files waits for the mark of this run's push: a push without a token makes none."""
    from concurrent.futures import Future

    pushing: Future[str] = Future()
    assert X.step_order(P.STEP_ORDER, X.Upload(None, pushing=pushing, stop_during_push=True))[:3] == (
        P.STOP, P.SNAPSHOT, P.UPLOAD)


def test_a_push_that_ends_before_root_tar_arrived_reports_the_push_and_undoes_the_steps_ahead(
    tmp_path: Path
) -> None:
    """untar-files stops waiting when restore-receive ended without root.tar: the error is the push's
    own, and since nothing but stop-services and snapshot ran, the target is left as it was."""
    from concurrent.futures import Future

    from jujubackup.errors import RemoteStepError
    from tests.fakehost import Reply

    params = replace(PARAMS, steps=(P.UPLOAD, P.STOP, P.SNAPSHOT, P.UNTAR))
    pushing: Future[str] = Future()
    failed = RemoteStepError("restore-receive", 3, "jujubackup[receive]: the archive did not unpack as it "
                             "arrived (truncated or damaged)\n", host="spare0")

    def untar(_text: str, _stdin: bytes) -> Reply:
        pushing.set_exception(failed)
        return Reply("", "jujubackup[untar-files]: the archive's push ended before its root.tar arrived\n", 3)

    host = _pushing_host(tmp_path)
    host.expect("restore-untar", untar)
    host.expect("restore-restart", Reply(json.dumps({"step": "restart", "active": []})))
    host.expect("restore-journal-discard", Reply("{}\n"))
    with pytest.raises(RemoteStepError) as raised:
        X.execute(host, params, upload=_early(pushing),
                  journal=X.Journal(exists=True), on_step=lambda _s: None)
    assert raised.value.message.startswith("pushing the archive to spare0 failed (exit 3): ")
    assert host.ran == ["restore-stop", "restore-snapshot", "restore-untar", "restore-restart",
                        "restore-journal-discard"]
    assert "nothing of the restore is left on spare0" in (raised.value.hint or "")


def test_a_pushed_archive_that_is_not_the_verified_one_undoes_the_steps_that_used_its_root_tar(
    tmp_path: Path
) -> None:
    """The early push's bytes differ from the verified archive's: untar-files, install-services and
    fresh-db, which ran on its root.tar, are marked not done, so a --resume runs them again."""
    from concurrent.futures import Future

    from jujubackup.errors import VerifyError
    from tests.fakehost import Reply

    discards: list[str] = []

    def discard(text: str, _stdin: bytes) -> Reply:
        discards.append(text)
        return Reply("{}\n")

    params = replace(PARAMS, steps=(P.UPLOAD, P.STOP, P.SNAPSHOT, P.UNTAR, P.INSTALL, P.FRESH_DB))
    pushing: Future[str] = Future()
    host = _pushing_host(tmp_path, on_snapshot=lambda: pushing.set_result("0" * 64))
    for name in ("restore-install", "restore-fresh-db"):
        host.expect(name, Reply('{"step":"x"}\n'))
    host.expect("restore-discard-push", discard)
    host.expect("restore-restart", Reply(json.dumps({"step": "restart", "active": []})))
    with pytest.raises(VerifyError):
        X.execute(host, params, upload=_early(pushing),
                  journal=X.Journal(exists=True), on_step=lambda _s: None)
    assert host.ran[:5] == ["restore-stop", "restore-snapshot", "restore-untar", "restore-install",
                            "restore-fresh-db"]
    (text,) = discards
    for step in (P.UNTAR, P.INSTALL, P.FRESH_DB):
        assert f"/steps/{step}.done" in text


@pytest.mark.parametrize("all_back", [True, False])
def test_an_early_push_that_fails_after_the_services_stopped_leaves_the_target_as_it_was(
    tmp_path: Path, all_back: bool
) -> None:
    """The push fails while stop-services and snapshot ran ahead of it: the services run again and,
    when all of them do, the journal goes too (the restore can be run again); else it stays for
    --resume / --rollback."""
    from concurrent.futures import Future

    from jujubackup.errors import RemoteStepError
    from tests.fakehost import Reply

    params = replace(PARAMS, steps=(P.UPLOAD, P.STOP, P.SNAPSHOT, P.UNTAR))
    pushing: Future[str] = Future()
    failed = RemoteStepError("restore-receive", 3, "jujubackup[receive]: the archive did not unpack as it "
                             "arrived (truncated or damaged)\n", host="spare0")
    host = _pushing_host(tmp_path, on_snapshot=lambda: pushing.set_exception(failed))
    units = ["snap.juju-db.daemon.service", "jujud-machine-0.service"]
    host.expect("restore-stop", Reply(json.dumps({"step": P.STOP, "stopped": units}) + "\n"))
    back = units if all_back else units[:1]
    host.expect("restore-restart", Reply(json.dumps({"step": "restart", "active": back})))
    host.expect("restore-journal-discard", Reply("{}\n"))
    with pytest.raises(RemoteStepError) as raised:
        X.execute(host, params, upload=_early(pushing),
                  journal=X.Journal(exists=True),
                  on_step=lambda _s: None)
    assert "pushing the archive to spare0 failed (exit 3): jujubackup[receive]: the archive did not unpack" \
        in raised.value.message
    hint = raised.value.hint or ""
    if all_back:
        assert host.ran == ["restore-stop", "restore-snapshot", "restore-restart", "restore-journal-discard"]
        assert "nothing of the restore is left on spare0: the services it stopped while the archive " \
            "was pushed (snap.juju-db.daemon.service, jujud-machine-0.service) run again" in hint
    else:
        assert host.ran == ["restore-stop", "restore-snapshot", "restore-restart"]
        assert "--resume --archive FILE --target spare0" in hint


def test_an_early_push_that_fails_on_a_target_with_nothing_running_says_no_service_was_stopped(
    tmp_path: Path
) -> None:
    """A spare runs nothing: its stop-services stops nothing, and the hint must not claim it did."""
    from concurrent.futures import Future

    from jujubackup.errors import RemoteStepError
    from tests.fakehost import Reply

    params = replace(PARAMS, steps=(P.UPLOAD, P.STOP, P.SNAPSHOT, P.UNTAR))
    pushing: Future[str] = Future()
    failed = RemoteStepError("restore-receive", 3, "truncated\n", host="spare0")
    host = _pushing_host(tmp_path, on_snapshot=lambda: pushing.set_exception(failed))
    host.expect("restore-stop", Reply(json.dumps({"step": P.STOP, "stopped": []}) + "\n"))
    host.expect("restore-restart", Reply(json.dumps({"step": "restart", "active": []})))
    host.expect("restore-journal-discard", Reply("{}\n"))
    with pytest.raises(RemoteStepError) as raised:
        X.execute(host, params, upload=_early(pushing),
                  journal=X.Journal(exists=True), on_step=lambda _s: None)
    hint = raised.value.hint or ""
    assert "nothing of the restore is left on spare0: it stopped no service and its journal is removed" \
        in hint
    assert "services it stopped" not in hint


def test_the_archive_push_hands_the_file_itself_to_the_host_and_resumes_from_the_kept_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through OpenSSH `ssh` reads the archive file itself (FakeHost imitates host.base.DirectFile);
    a resume appends to the kept prefix and the host's SHA-256 is of the whole pushed file."""
    import hashlib

    from tests.fakehost import FakeHost

    host = FakeHost("target", tmp_path / "host")
    pushed = tmp_path / "host" / "journal" / "archive.tar.gz"
    pushed.parent.mkdir(parents=True)
    monkeypatch.setattr(X, "ARCHIVE", str(pushed))
    data = VALID_28.read_bytes()
    params = replace(PARAMS, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    fresh = X.Journal(exists=True, params=params, archive_bytes=0)
    assert X.push_archive(host, params, X.Upload(VALID_28), fresh, None) == params.sha256
    assert pushed.read_bytes() == data and host.direct_puts == 1
    pushed.write_bytes(data[:1000])
    kept = X.Journal(exists=True, params=params, archive_bytes=1000)
    assert X.push_archive(host, params, X.Upload(VALID_28), kept, None) == params.sha256
    assert pushed.read_bytes() == data and host.put_sent == [len(data), len(data) - 1000]


@pytest.mark.parametrize(("live", "models", "controller", "stop_early"), [
    ((), None, None, True),                                              # a spare
    (("jujud-machine-0",), ("controller",), "another-uuid", True),       # freshly bootstrapped elsewhere
    (("jujud-machine-0",), ("controller", "prod"), "another-uuid", False),  # serves models
    (("juju-db",), ("controller",), None, False),                        # the backup's own controller
])
def test_only_a_target_that_serves_nothing_is_stopped_during_the_push(
    live: tuple[str, ...], models: tuple[str, ...] | None, controller: str | None, stop_early: bool
) -> None:
    from types import SimpleNamespace

    from jujubackup.restore.fresh import serves_nothing_to_keep

    backup_uuid = "backup-uuid"
    facts = P.TargetFacts(name="t", address="10.201.0.9", profile="juju-2.9", live_services=live,
                          models=models, controller_uuid=controller or backup_uuid if live else None)
    ready = SimpleNamespace(probed=SimpleNamespace(facts=facts),
                            backup=SimpleNamespace(controller_uuid=backup_uuid))
    assert serves_nothing_to_keep(ready) is stop_early  # type: ignore[arg-type]


def test_the_probed_tool_versions_reach_the_steps_so_they_ask_no_tool_again() -> None:
    """The probe read the shell's and mongodump's `--version`: the steps get them (journaled for a
    --resume) instead of asking the tools again; mongorestore takes mongodump's only where both are of
    one install; an unknown version ('') leaves the step asking the tool itself."""
    params = X.Params(**{**PARAMS.__dict__, "profile": "juju-3.6", "shell_version": "4.4.30",
                         "tools_version": "100.9.4"})
    assert X.Params.from_dict(json.loads(params.to_json())) == params
    verify = scripts.render("restore-verify", **X.step_values(params, "verify"))
    assert "SHELL_VERSION=4.4.30" in verify
    assert '"${SHELL_VERSION:-$(mongo_version_of "$MONGO_SHELL")}"' in verify
    load = X.step_values(params, "load-db")
    assert load["tools_version"] == "100.9.4" and X.same_install(profiles.profile_named("juju-3.6"))
    assert "tools_version=100.9.4" in scripts.render("restore-load-db", **load)
    unknown = X.Params(**{**PARAMS.__dict__, "profile": "juju-3.6"})
    assert "SHELL_VERSION=''" in scripts.render("restore-verify", **X.step_values(unknown, "verify"))
