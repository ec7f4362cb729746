"""profiles: the data table chooses the right layout and refuses what it cannot back up."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from jujubackup import profiles, scripts
from jujubackup.errors import EXIT_REFUSED, RefusedError


def test_snap_layout_is_juju_29() -> None:
    existing = {"/snap/bin/juju-db.mongodump", "/var/snap/juju-db/common/db", "/snap/bin/juju-db.mongo"}
    profile = profiles.detect(existing, "2.0")
    assert profile.name == "juju-2.9"
    assert profile.db_service == "snap.juju-db.daemon"


def test_mongo32_deb_layout_is_juju_28() -> None:
    existing = {"/usr/lib/juju/mongo3.2/bin/mongodump", "/var/lib/juju/db"}
    profile = profiles.detect(existing, "2.0")
    assert profile.name == "juju-2.8"
    assert profile.db_service == "juju-db"


def test_upstart_controller_is_refused_clearly() -> None:
    with pytest.raises(RefusedError) as caught:
        profiles.detect({"/etc/init/juju-db.conf", "/var/lib/juju/db"}, "1.18")
    assert caught.value.exit_code == EXIT_REFUSED
    assert "1.x" in caught.value.message and "upstart" in caught.value.message


def test_agent_conf_format_118_is_refused_even_without_upstart_files() -> None:
    with pytest.raises(RefusedError, match=r"1\.x"):
        profiles.detect({"/snap/bin/juju-db.mongodump", "/var/snap/juju-db/common/db"}, "1.18")


def test_unknown_layout_is_refused() -> None:
    with pytest.raises(RefusedError, match="no known Juju controller layout"):
        profiles.detect(set(), "2.0")


def test_probe_paths_cover_every_profile() -> None:
    paths = set(profiles.probe_paths())
    for profile in profiles.PROFILES:
        assert set(profile.detect_paths) <= paths
        assert set(profile.tool_paths().values()) <= paths


@pytest.mark.parametrize("profile", profiles.PROFILES, ids=lambda p: p.name)
def test_root_files_follow_juju_2x_list(profile: profiles.Profile) -> None:
    first = [rule.candidates[0] for rule in profile.root_files]
    assert "/var/lib/juju/agents/machine-*" in first
    assert "/var/lib/juju/tools" in first
    assert not any("unit-" in c or c.endswith("/db") for rule in profile.root_files for c in rule.candidates)
    optional = {rule.candidates[0] for rule in profile.root_files if not rule.required}
    assert optional == {"/var/lib/juju/init", "/var/lib/juju/nonce.txt", "/home/ubuntu/.ssh/authorized_keys"}


def test_check_mode() -> None:
    profiles.check_mode(profiles.JUJU_29, "quiesce")
    with pytest.raises(RefusedError, match="unknown consistency mode"):
        profiles.check_mode(profiles.JUJU_29, "snapshot")
    limited = profiles.Profile(**{**profiles.JUJU_28.__dict__, "modes": ("online",)})
    with pytest.raises(RefusedError, match="not supported") as caught:
        profiles.check_mode(limited, "stop")
    assert "online" in (caught.value.hint or "")


def test_space_needed_is_estimate_plus_max_20_percent_or_5_gib() -> None:
    gib = 1024**3
    assert profiles.space_needed(0) == 5 * gib
    assert profiles.space_needed(10 * gib) == 15 * gib
    assert profiles.space_needed(100 * gib) == 120 * gib


def test_profile_named() -> None:
    assert profiles.profile_named("juju-2.8") is profiles.JUJU_28
    with pytest.raises(RefusedError, match="unknown controller profile"):
        profiles.profile_named("juju-1.25")


def test_restore_journal_dir_is_restores() -> None:
    from jujubackup.restore.execute import JOURNAL_DIR

    assert profiles.RESTORE_JOURNAL_DIR == JOURNAL_DIR


def test_no_profile_passes_options_the_real_tools_lack() -> None:
    for flags in (f for (role, _, _), f in profiles.TLS_FLAGS.items() if role == "tools"):
        assert "--tls" not in flags  # 100.x tools: --ssl* + --tlsInsecure; r3.x/r4.0: --ssl* only
    for profile in profiles.PROFILES:
        assert "--nsExclude" not in profile.dump_flags  # mongodump never had it


SNAP = {"/snap/bin/juju-db.mongodump", "/var/snap/juju-db/common/db", "/snap/bin/juju-db.mongo"}


@pytest.mark.parametrize(
    ("juju", "mongod", "name"),
    [
        ("2.8.10", "4.0.9", "juju-2.8-focal"),  # the 4.0/stable snap of Juju 2.8 on focal
        ("2.9.42", "4.4.18", "juju-2.9"),
        ("2.9.56", "4.4.30", "juju-2.9"),  # 2.9 on the 4.4.30 snap: the 2.9 layout
        ("3.6.21", "4.4.30", "juju-3.6"),
        ("3.1.8", "4.4.18", "juju-3.6"),  # every 3.x: the base-named tools dirs
        ("", "", "juju-2.9"),  # nothing known: the 2.9 snap layout
    ],
)
def test_snap_layouts_by_juju_and_mongod_version(juju: str, mongod: str, name: str) -> None:
    assert profiles.detect(SNAP, "2.0", juju, mongod).name == name


def test_the_36_profile_names_tools_dirs_by_base() -> None:
    assert profiles.JUJU_36.tools_dir_style == "base"
    assert profiles.profile_named("juju-2.8-bionic").mongodump == "/usr/bin/mongodump"


# (tools --version, shell --version) of each juju-db generation Juju ships (tests/lab/standins/versions.py)
GENERATIONS = {
    "juju-2.8": ("mongodump version: r3.2.22", "MongoDB shell version: 3.2.22"),
    "juju-2.8-bionic": ("mongodump version: r3.6.3", "MongoDB shell version v3.6.3"),
    "juju-2.8-focal": ("mongodump version: r4.0.9", "MongoDB shell version v4.0.9"),
    "juju-2.9": ("mongodump version: 100.6.1", "MongoDB shell version v4.4.18"),
    "juju-3.6": ("mongodump version: 100.9.4", "MongoDB shell version v4.4.30"),
}


@pytest.mark.parametrize("generation", list(GENERATIONS))
def test_tls_flags_without_a_ca_use_only_options_the_version_has(generation: str) -> None:
    tools, shell = GENERATIONS[generation]
    tls = profiles.MongoTls.choose(tools, shell, ca_file=False)
    modern = generation in ("juju-2.9", "juju-3.6")
    assert tls.tools == (("--ssl", "--tlsInsecure") if modern else ("--ssl", "--sslAllowInvalidCertificates"))
    assert tls.shell == (
        ("--tls", "--tlsAllowInvalidCertificates") if modern else ("--ssl", "--sslAllowInvalidCertificates")
    )
    assert not tls.client_cert


@pytest.mark.parametrize("generation", list(GENERATIONS))
def test_with_ca_crt_every_version_presents_the_controller_certificate(generation: str) -> None:
    tools, shell = GENERATIONS[generation]
    tls = profiles.MongoTls.choose(tools, shell, ca_file=True)
    pem, ca = "/var/snap/juju-db/common/server.pem", "/var/snap/juju-db/common/ca.crt"
    # Juju's own 4.4.30 mongodump spelling (state/backups/db.go @07d78520), in every tools version
    juju = ("--ssl", "--sslCAFile", ca, "--sslPEMKeyFile", pem, "--sslPEMKeyPassword", "ignore")
    assert tls.tools[:7] == juju
    assert "--tlsInsecure" not in tls.tools and "--sslAllowInvalidCertificates" not in tls.tools
    if generation in ("juju-2.9", "juju-3.6"):
        assert tls.shell[:5] == ("--tls", "--tlsCAFile", ca, "--tlsCertificateKeyFile", pem)
    else:
        assert tls.shell[:5] == ("--ssl", "--sslCAFile", ca, "--sslPEMKeyFile", pem)
        assert not any(f.startswith("--tls") for f in tls.shell)


@pytest.mark.parametrize(
    ("role", "version", "knows"),
    [
        ("tools", "r3.6.20", False),
        ("tools", "r3.6.21", True),
        ("tools", "r4.0.9", False),
        ("tools", "r4.0.21", True),
        ("tools", "r4.2.1", True),
        ("tools", "100.3.1", True),
        ("tools", "", False),
        ("shell", "v4.0.28", False),
        ("shell", "v4.2.0", True),
        ("shell", "garbage", False),
    ],
)
def test_tls_spelling_by_version(role: str, version: str, knows: bool) -> None:
    assert profiles.knows_tls_spelling(role, version) is knows


@pytest.mark.parametrize("ca", [False, True])
@pytest.mark.parametrize("generation", list(GENERATIONS))
def test_the_remote_scripts_choose_the_same_flags(tmp_path: Path, generation: str, ca: bool) -> None:
    """lib/mongo-tls (what every remote script runs) and MongoTls.choose (status, tests) agree."""
    ca_file = tmp_path / "ca.crt"
    if ca:
        ca_file.write_text("a CA\n")
    tools, shell = GENERATIONS[generation]
    script = scripts.environment().from_string(
        "#!/bin/bash\nset -euo pipefail\n{{ bash_lib('mongo-tls') }}\n"
        'for role in tools shell; do\n  if [[ $role == tools ]]; then v=$1; else v=$2; fi\n'
        '  mongo_tls_flags "$role" "$(mongo_xyz "$v")"\n  echo "$role ${MONGO_TLS[*]}"\ndone\n'
    ).render(tls_ca_file=str(ca_file))
    argv = ["bash", "-c", script, "x", tools, shell]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    want = profiles.MongoTls.choose(tools, shell, ca)
    assert done.stdout.splitlines() == [f"tools {' '.join(want.tools)}", f"shell {' '.join(want.shell)}"]
