"""Whole verb flows through the CLI on the FakeConnector (no SSH, no root): the catalog scripts run
for real with the local bash against a backup dir in tmp; upload -> list -> info -> remove."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jujubackup import cli
from jujubackup.errors import EXIT_CONNECT, EXIT_NOT_FOUND, EXIT_PARTIAL
from tests.fakehost import LOCAL, FakeConnector, FakeHost, Reply, rooted
from tests.paths import VALID_28

VALID_ID = "20200225-041241.e2a6a1e5-abea-4393-8593-5a45ae53ab97"


def controller(name: str, root: Path) -> FakeHost:
    """A fake controller: a machine agent.conf under root, the catalog scripts allowed."""
    agents = root / "var/lib/juju/agents/machine-0"
    agents.mkdir(parents=True)
    (agents / "agent.conf").write_text("# format 2.0\n")
    host = FakeHost(name, root)
    for script in ("catalog-list", "catalog-register", "catalog-remove"):
        host.expect(script, LOCAL)
    return host.expect("upload-prepare", rooted(root, "/var/lib/juju/agents"))


def run(fake: FakeConnector, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["-H", "ctl0", *args], make_connector=fake)
    out, err = capsys.readouterr()
    return code, out, err


def test_upload_list_info_remove_on_a_fake_controller(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = controller("ctl0", tmp_path)
    fake = FakeConnector({"ctl0": host})
    backups = tmp_path / "backups"
    dir_opt = ("--backup-dir", str(backups))

    code, out, err = run(fake, capsys, "upload", str(VALID_28), *dir_opt)
    assert (code, out.strip()) == (0, VALID_ID), err
    assert (backups / f"{VALID_ID}.tar.gz").read_bytes() == VALID_28.read_bytes()

    code, out, err = run(fake, capsys, "list", "--format", "json", *dir_opt)
    assert code == 0, err
    listed = json.loads(out)
    assert [(r["ID"], r["size"], r["controllers"]) for r in listed] == [(VALID_ID, 16160, ["ctl0"])]

    code, out, err = run(fake, capsys, "info", "latest", "--format", "json", *dir_opt)
    assert code == 0 and json.loads(out)["ID"] == VALID_ID, err

    code, out, err = run(fake, capsys, "remove", "--yes", VALID_ID[:8], *dir_opt)
    assert (code, out.strip()) == (0, VALID_ID), err
    assert not list(backups.glob("2020*"))
    code, out, err = run(fake, capsys, "info", "latest", *dir_opt)
    assert code == EXIT_NOT_FOUND, err
    assert host.closed and fake.connected == ["ctl0"] * 5


def test_list_of_two_controllers_with_one_down_lists_the_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeConnector({"ctl0": controller("ctl0", tmp_path)}, down=("ctl1",))
    backups = str(tmp_path / "backups")
    assert run(fake, capsys, "upload", str(VALID_28), "--backup-dir", backups)[0] == 0
    code = cli.main(["-H", "ctl1", "-H", "ctl0", "list", "--brief", "--backup-dir", backups],
                    make_connector=fake)
    out, err = capsys.readouterr()
    assert (code, out.strip()) == (0, VALID_ID), err
    assert "ctl1: not listed: connection refused by ctl1" in err
    code = cli.main(["-H", "ctl1", "list", "--backup-dir", backups], make_connector=fake)
    assert code == EXIT_CONNECT


def test_list_shows_human_sizes_and_times_to_the_second_json_exact_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeConnector({"ctl0": controller("ctl0", tmp_path)})
    backups = str(tmp_path / "backups")
    assert run(fake, capsys, "upload", str(VALID_28), "--backup-dir", backups)[0] == 0
    code, out, err = run(fake, capsys, "list", "--backup-dir", backups)
    assert code == 0, err
    assert VALID_ID in out.splitlines()[1]
    assert "15.8 KiB" in out and "16160" not in out
    assert "2020-02-25T04:12:41Z" in out and "04:12:41.0" not in out
    code, out, err = run(fake, capsys, "list", "--format", "yaml", "--backup-dir", backups)
    assert "size: 16160" in out and "2020-02-25T04:12:41.03876Z" in out


def test_a_declined_remove_exits_6_and_removes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jujubackup.errors import EXIT_REFUSED, DeclinedError
    from jujubackup.operations.remove import remove
    from jujubackup.ui import UI

    fake = FakeConnector({"ctl0": controller("ctl0", tmp_path)})
    backups = tmp_path / "backups"
    assert run(fake, capsys, "upload", str(VALID_28), "--backup-dir", str(backups))[0] == 0
    asked: list[object] = []
    with pytest.raises(DeclinedError) as caught:
        remove(fake, UI(), ["latest"], lambda *shown: asked.append(shown) or False, str(backups))
    assert caught.value.exit_code == EXIT_REFUSED and asked
    assert (backups / f"{VALID_ID}.tar.gz").exists()


def test_every_declined_question_raises_declined_error() -> None:
    """One exit code for "no" in every verb that asks: each raise saying "not confirmed" is a
    DeclinedError (exit 6), read from the package's source."""
    import ast

    from tests.unit.test_structure import modules

    found = []
    for module in modules():
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                text = " ".join(c.value for c in ast.walk(node.exc)
                                if isinstance(c, ast.Constant) and isinstance(c.value, str))
                if "not confirmed" in text:
                    found.append((module.name, ast.unparse(node.exc.func)))
    assert {m for m, _ in found} >= {"jujubackup.operations.remove", "jujubackup.restore.fresh"}
    assert {f for _, f in found} == {"DeclinedError"}, found


def test_status_of_several_controllers_shows_each_then_the_first_in_detail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.unit.test_facts import probe_doc

    def probed(name: str, hostname: str) -> FakeHost:
        doc = json.dumps(probe_doc(hostname=hostname))
        return FakeHost(name, tmp_path).expect("probe", Reply(doc + "\n"))

    fake = FakeConnector({"ctl0": probed("ctl0", "juju-abc-0"), "ctl1": probed("ctl1", "juju-abc-1")},
                         down=("ctl2",))
    argv = ["-H", "ctl0", "-H", "ctl1", "-H", "ctl2", "status"]
    code = cli.main(argv, make_connector=fake)
    out, err = capsys.readouterr()
    assert code == 0, err
    table, details = out.split("\n\n", 1)
    rows = table.splitlines()
    assert rows[0].split()[:3] == ["HOST", "MACHINE", "PROFILE"]
    assert [r.split()[0] for r in rows[1:]] == ["root@ctl0", "root@ctl1", "root@ctl2"]
    assert "healthy" in rows[1] and "not probed: connection refused by ctl2" in rows[3]
    assert "hostname:" in details and "juju-abc-0" in details and "juju-abc-1" not in details
    code = cli.main([*argv, "--format", "json"], make_connector=fake)
    listed = json.loads(capsys.readouterr().out)
    assert [(m["controller"], m.get("hostname"), m.get("error")) for m in listed] == [
        ("root@ctl0", "juju-abc-0", None), ("root@ctl1", "juju-abc-1", None),
        ("root@ctl2", None, "connection refused by ctl2"),
    ]


def test_download_into_a_new_dir_on_a_fake_controller(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeConnector({"ctl0": controller("ctl0", tmp_path / "host")})
    backups = str(tmp_path / "host" / "backups")
    assert run(fake, capsys, "upload", str(VALID_28), "--backup-dir", backups)[0] == 0
    here = tmp_path / "here" / "new"
    code, _, err = run(fake, capsys, "download", "latest", "--dir", str(here), "--backup-dir", backups)
    assert code == 0, err
    assert (here / f"{VALID_ID}.tar.gz").read_bytes() == VALID_28.read_bytes()
    assert oct(here.stat().st_mode & 0o777) == "0o700"


def test_repoint_on_a_fake_controller_then_resume_finishes_the_machine_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """repoint's whole flow on the Connector: the controller's listing, each machine connected
    through the same Connector; one machine down -> exit 9 naming it; `--resume` retries only it."""
    from tests.unit.test_repoint import CM, DM, listing, machine

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    doc = listing([machine(CM, "0", "10.0.0.9", jobs=[2, 1]), machine(DM, "0", "10.0.0.12"),
                   machine(DM, "1", "10.0.0.13")])
    report = Reply(json.dumps({"dry_run": False, "diff": "", "agents": [
        {"tag": "machine-0", "changed": True, "restarted": True, "state": "connected",
         "address": "10.0.0.9:17070", "error": ""}]}))
    ctl = FakeHost("ctl0", tmp_path).expect("repoint-list", Reply(json.dumps(doc)))
    first = FakeHost("10.0.0.12", tmp_path).expect("repoint-machine", report)
    fake = FakeConnector({"ctl0": ctl, "10.0.0.12": first}, down=("10.0.0.13",))

    code, out, err = run(fake, capsys, "repoint", "--target", "ctl0", "--format", "json")
    assert code == EXIT_PARTIAL, err
    got = {m["address"]: m["result"] for m in json.loads(out)["machines"]}
    assert got == {"10.0.0.12": "done", "10.0.0.13": "unreachable"}
    assert "default/1" in err and "--resume" in err

    fake.hosts["10.0.0.13"] = FakeHost("10.0.0.13", tmp_path).expect("repoint-machine", report)
    fake.down, fake.connected = (), []
    code, out, err = run(fake, capsys, "repoint", "--target", "ctl0", "--resume", "--format", "json")
    assert code == 0, err
    again = {m["address"]: (m["result"], m["earlier-run"]) for m in json.loads(out)["machines"]}
    assert again == {"10.0.0.12": ("done", True), "10.0.0.13": ("done", False)}
    assert fake.connected == ["ctl0", "10.0.0.13"]


def test_run_connects_each_controller_through_the_connector_with_its_own_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """run's pass on the Connector: each controller's hosts come from the fleet config (not -H);
    one held by another operation's lock (exit 7 at create), one down (exit 3): both recorded,
    the pass exits 9 and says which failed where."""
    from tests.unit.test_facts import probe_doc

    locked = json.dumps(probe_doc(lock={"held": True, "holder": json.dumps({"op": "create"})}))
    fake = FakeConnector({"ctl0": FakeHost("ctl0", tmp_path).expect("probe", Reply(locked + "\n"))},
                         down=("ctl1",))
    config = tmp_path / "fleet.yaml"
    config.write_text("controllers:\n  east: {hosts: [ctl0]}\n  west: {hosts: [ctl1], ssh: {user: backup}}\n")
    code = cli.main(["--format", "json", "run", "--config", str(config)], make_connector=fake)
    out, err = capsys.readouterr()
    assert code == EXIT_PARTIAL, err
    summary = json.loads(out)
    got = {c["controller"]: (c["stage"], c["exit-code"]) for c in summary["controllers"]}
    assert got == {"east": ("create", 7), "west": ("create", EXIT_CONNECT)}
    assert "locked" in summary["controllers"][0]["error"] and fake.connected == ["ctl0"]
    assert sorted((s.hosts, s.user) for s in fake.views) == [(("ctl0",), None), (("ctl1",), "backup")]
