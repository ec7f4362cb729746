"""The files a restore writes on its target besides the archive's (pure: rendered templates/), and
the paths its pre-restore snapshot holds. Which juju-db.config spelling and whether juju-db there wants
client certificates follow the target's mongod version."""

from __future__ import annotations

from typing import Any

from jujubackup import profiles, scripts
from jujubackup.profiles import Profile


def snapshot_paths(profile: Profile) -> list[str]:
    """Given the target's profile, return the paths a pre-restore snapshot holds."""
    paths = [profiles.DATA_DIR]
    if not profile.mongo_dir.startswith(profiles.DATA_DIR):
        paths.append(profile.mongo_dir)
    paths.append(f"/etc/systemd/system/{profile.db_service}.service")
    return paths


def unit_files(
    profile: Profile, machine_id: str, state_port: int, mongod_version: str = "", ca_cert: str = ""
) -> list[dict[str, Any]]:
    """Given the target's profile, the restored machine id and state port, the target's mongod version
    ('' unknown) and the backup's CA (PEM), return the files install-services writes (rendered
    templates/): {path, mode, replace, content}.

    The jujud-machine-N unit and exec-start script are always (re)written; juju-db's unit and config
    only where the host has none (a snap-installed juju-db keeps its own unit). On a juju-db that
    requires client certificates (4.4.30+) ca.crt is the backup's CA, replacing any other; below, a
    ca.crt already there (a bootstrapped controller's own CA) is replaced by the backup's.
    """
    mid = machine_id
    values = {
        "machine_id": mid,
        "data_dir": profiles.DATA_DIR,
        "profile": profile,
        "state_port": state_port,
    }
    files = [
        {
            "path": f"/etc/systemd/system/jujud-machine-{mid}.service",
            "mode": "0644",
            "replace": True,
            "content": scripts.render_file("jujud-machine.service.j2", **values),
        },
        {
            "path": f"/etc/systemd/system/jujud-machine-{mid}-exec-start.sh",
            "mode": "0755",
            "replace": True,
            "content": scripts.render_file("jujud-machine-exec-start.sh.j2", **values),
        },
        {
            "path": f"/etc/systemd/system/{profile.db_service}.service",
            "mode": "0644",
            "replace": False,
            "content": scripts.render_file(db_unit_template(profile), **values),
        },
    ]
    if profile.snap:
        mutual = requires_client_cert(mongod_version) and bool(ca_cert)
        files.append(
            {
                "path": f"{profile.mongo_dir}/juju-db.config",
                "mode": "0644",
                "replace": False,
                "content": scripts.render_file(
                    "juju-db.config.j2",
                    **values,
                    tls_names=profiles.version_tuple(mongod_version or "4.4.0") >= (4, 2, 0),
                    ca_file=profiles.CA_FILE if mutual else "",
                ),
            }
        )
        if ca_cert:
            files.append(_ca_file(ca_cert, mutual))
    return files


def _ca_file(ca_cert: str, mutual: bool) -> dict[str, Any]:
    """The backup's CA replaces any other: the restored server.pem (juju-db's, and the client
    certificate of jujud and of our tools) chains to it. Below 4.4.30 (not `mutual`) only over a
    ca.crt that is there (a bootstrapped target's own CA): the tools take it as their CA file."""
    return {"path": profiles.CA_FILE, "mode": "0644", "replace": True if mutual else "if-exists",
            "content": ca_cert}


MUTUAL_TLS_SINCE = (4, 4, 30)
"""juju-db versions from which Juju runs mongod with ca.crt as net.tls.CAFile (client certificates
required): state/backups/db.go @07d78520 `VersionAtLeast(4, 4, 30)`; juju/juju#22455."""


def requires_client_cert(mongod_version: str) -> bool:
    """Given the target's mongod version ('' unknown), return True when Juju would run it with ca.crt
    as its client CA (4.4.30 and later)."""
    have = profiles.version_tuple(mongod_version)
    return bool(have) and have >= MUTUAL_TLS_SINCE


def db_unit_template(profile: Profile) -> str:
    """Given the target's profile, return the templates/ name of its juju-db unit (snapd's unit for
    every snap profile, else the profile's own)."""
    return "juju-db-snap.service.j2" if profile.snap else f"juju-db-{profile.name}.service.j2"
