"""The fleet config (`run --config`, `config check`): schema errors with FILE:LINE and the key path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from jujubackup.errors import NotFoundError, UsageError
from jujubackup.fleet_config import EXAMPLE, load
from jujubackup.retention import UNLIMITED, Policy
from jujubackup.settings import ConnectionSettings
from jujubackup.sudopassword import SudoPassword


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        load(path)
    assert caught.value.exit_code == 2
    return [line.strip().removeprefix(f"{path}:") for line in caught.value.message.splitlines()[1:]]


def test_the_documented_example_is_valid(tmp_path: Path) -> None:
    fleet = load(write(tmp_path, EXAMPLE))
    assert [c.name for c in fleet.controllers] == ["prod", "lab-28"]
    prod, lab = fleet.controllers
    assert prod.juju_controller == "prod" and prod.hosts == ()
    assert lab.hosts == ("ubuntu@10.0.0.5", "10.0.0.6:2222") and lab.juju_controller is None
    assert (prod.mode, lab.mode) == ("online", "quiesce")
    assert prod.retention == Policy(last=3) == lab.retention
    assert prod.store_retention == Policy(daily=7, weekly=4, monthly=12)
    assert lab.stores == ("laptop",) and fleet.parallel == 2
    # ssh: the controller's own keys over the defaults
    assert lab.ssh.config == Path("/etc/jujubackup/ssh_config") and lab.ssh.user == "ubuntu"
    assert prod.ssh.config == Path("~/.ssh/config").expanduser()


def test_an_unknown_key_and_a_wrong_type_name_their_line_and_key(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
        parallel: many
        defaults:
          mode: online
          retension:
            keep-last: 3
        controllers:
          prod:
            mode: fast
            ssh: {config: /etc/x, colour: blue}
    """)
    assert found == [
        "1: parallel: Input should be a valid integer, unable to parse string as an integer",
        "4: defaults.retension: unknown key",
        "8: controllers.prod.mode: Input should be 'online', 'quiesce' or 'stop'",
        "9: controllers.prod.ssh.colour: unknown key",
    ]


def test_values_are_checked_like_the_command_line(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
        controllers:
          a:
            hosts: [ubuntu@10.0.0.5, "bad host;rm"]
          b:
            retention: {keep-daily: -2}
          c:
            backup-dir: /var/lib/juju
          d:
            retention: {}
    """)
    assert found[0].startswith("3: controllers.a.hosts: bad host 'bad host;rm'")
    assert found[1] == "5: controllers.b.retention: --keep-daily -2 is negative"
    assert found[2].startswith("7: controllers.c.backup-dir: backup dir /var/lib/juju is a system dir")
    assert found[3] == (
        "9: controllers.d.retention: a retention policy needs at least one keep-… count above 0")


def test_cross_checks(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        controllers:
          a: {hosts: [h1], juju-controller: a}
    """) == ["2: controllers.a: give hosts or juju-controller, not both"]
    assert problems(tmp_path, """\
        controllers:
          a: {stores: [nowhere]}
    """) == ["1: (top level): a: stores nowhere not defined under `stores:`"]
    assert problems(tmp_path, "controllers: {}\n") == [
        "1: controllers: Dictionary should have at least 1 item after validation, not 0"]
    assert problems(tmp_path, "parallel: 0\ncontrollers: {a: }\n") == [
        "1: parallel: Input should be greater than or equal to 1"]


def test_not_yaml_not_a_mapping_and_missing(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"fleet.yaml:2: not valid YAML"):
        load(write(tmp_path, "controllers:\n  a: b: c\n"))
    with pytest.raises(UsageError, match="must be a YAML mapping"):
        load(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(NotFoundError):
        load(tmp_path / "none.yaml")
    with pytest.raises(UsageError, match=r"duplicate key|found duplicate"):
        load(write(tmp_path, "controllers:\n  a:\n  a:\n"))


def test_connection_settings_take_the_command_lines_where_the_config_is_silent(tmp_path: Path) -> None:
    fleet = load(write(tmp_path, """\
        defaults:
          ssh: {identity: /k/id, connect-timeout: 3}
          retention: {keep-last: unlimited}
        controllers:
          a: {hosts: [ctl0], ssh: {config: /a/ssh_config}}
          b: {juju-controller: prod-b}
    """))
    sudo = SudoPassword("s3cret")
    base = ConnectionSettings(hosts=("ignored",), known_hosts=Path("/kh"), identity=Path("/cli/id"),
                              accept_new_host_key=True, stream_via="paramiko", sudo_password=sudo)
    a, b = (c.connection(base) for c in fleet.controllers)
    assert a.sudo_password is sudo and b.sudo_password is sudo  # --sudo-password-file reaches `run`
    assert (a.hosts, a.controller, a.ssh_config, a.identity) == (
        ("ctl0",), None, Path("/a/ssh_config"), Path("/k/id"))
    assert (a.known_hosts, a.accept_new_host_key, a.connect_timeout, a.stream_via) == (
        Path("/kh"), True, 3.0, "paramiko")
    assert (b.hosts, b.controller) == ((), "prod-b")
    assert fleet.controllers[0].retention == Policy(last=UNLIMITED)
    assert fleet.controllers[0].store_retention == Policy(last=UNLIMITED)  # defaults to retention


def test_config_check_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jujubackup.cli import main

    good = write(tmp_path, EXAMPLE)
    assert main(["config", "check", str(good), "--format", "json"]) == 0
    assert '"name": "lab-28"' in capsys.readouterr().out
    bad = write(tmp_path, "controllers:\n  a:\n    colour: blue\n")
    assert main(["config", "check", str(bad)]) == 2
    assert f"{bad}:3: controllers.a.colour: unknown key" in capsys.readouterr().err


def test_stores_are_checked_by_the_stores_schema(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
        controllers:
          a: {stores: [offsite]}
        stores:
          offsite:
            kind: s3
            bucket: "Not_A_Bucket"
            colour: blue
          disk: {kind: tape}
    """)
    assert found[0].startswith("6: stores.offsite.bucket: not an S3 bucket name")
    assert found[1] == "7: stores.offsite.colour: unknown key"
    assert found[2].startswith("8: stores.disk: Input tag 'tape' found using 'kind' does not match")
    fleet = load(write(tmp_path, """\
        controllers: {a: }
        stores: {disk: {kind: local, path: /srv/b}}
    """))
    assert fleet.controllers[0].stores == ("disk",) and str(fleet.stores["disk"].path) == "/srv/b"


def test_the_shipped_example_config_is_valid() -> None:
    fleet = load(Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml")
    assert [c.name for c in fleet.controllers] == ["prod", "legacy-28"]
    assert fleet.stores["local"].encrypt_to  # the example encrypts its copies
