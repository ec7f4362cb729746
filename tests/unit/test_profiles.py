"""profiles: the data table chooses the right layout and refuses what it cannot back up."""

from __future__ import annotations

import pytest

from jujubackup import profiles
from jujubackup.errors import EXIT_REFUSED, RefusedError


def test_snap_layout_is_juju_29() -> None:
    existing = {"/snap/bin/juju-db.mongodump", "/var/snap/juju-db/common/db", "/snap/bin/juju-db.mongo"}
    profile = profiles.detect(existing, "2.0")
    assert profile.name == "juju-2.9"
    assert profile.db_service == "snap.juju-db.daemon"
    assert profile.tls_flags == ("--ssl", "--tlsInsecure")  # tools 100.x have no --tls


def test_mongo32_deb_layout_is_juju_28() -> None:
    existing = {"/usr/lib/juju/mongo3.2/bin/mongodump", "/var/lib/juju/db"}
    profile = profiles.detect(existing, "2.0")
    assert profile.name == "juju-2.8"
    assert profile.db_service == "juju-db"
    assert all(flag.startswith("--ssl") for flag in profile.tls_flags)


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
    for profile in profiles.PROFILES:
        assert "--tls" not in profile.tls_flags  # 100.x tools: --ssl* + --tlsInsecure; 3.x: --ssl*
        assert "--nsExclude" not in profile.dump_flags  # mongodump never had it
