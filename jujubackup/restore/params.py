"""The parameters of a restore, journaled on the target as params.json (restore/execute.py): what
the steps need, so that `--resume` needs nothing else; read back as hostile input and checked value
by value."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from jujubackup import profiles
from jujubackup.errors import JujuBackupError, VerifyError
from jujubackup.restore import plan as P


@dataclass(frozen=True)
class Params:
    """What the steps need; saved on the target as params.json so `--resume` needs nothing else."""

    backup_id: str
    mode: str
    profile: str
    machine_id: str
    model_uuid: str
    new_address: str
    state_port: int
    api_port: int
    steps: tuple[str, ...]
    sha256: str
    size: int
    install: bool = False
    overlay_sha256: str = ""
    overlay_size: int = 0
    backup_dir: str = profiles.DEFAULT_BACKUP_DIR
    """The controller's backup dir on the target: each step holds its lock (lib/restore)."""
    harvest_modes: tuple[tuple[str, str, str | None], ...] = ()
    """(model uuid, model name, earlier provisioner-harvest-mode or None: unset) per model set to none."""
    ca_sha256: str = ""
    """SHA-256 of the backup's controller CA (DER, apiprobe.ca_fingerprint): `--resume --archive FILE`
    refuses an archive whose CA differs. Empty in a journal written before it was recorded."""
    mongod_version: str = ""
    """The target's `mongod --version` (X.Y.Z; '' unknown): the spelling of the juju-db.config the
    install step writes, and whether juju-db there requires client certificates (4.4.30+)."""
    shell_version: str = ""
    """The target's mongo shell version as the probe read it (X.Y.Z; '' unknown: each step that
    needs the shell's TLS flags runs `mongo --version` itself, lib/restore need_shell_tls)."""
    tools_version: str = ""
    """The target's mongo-tools version (mongodump's, X.Y.Z; '' unknown), for mongorestore's TLS flags
    where mongorestore is of the same install as mongodump (restore/execute.step_values)."""
    oplog: bool = False
    """The verified archive's dump has an oplog to replay (a non-empty oplog.bson): fresh-db prepares
    load-db's replay role.
    False in a journal written before it was recorded (load-db then makes the role itself)."""
    ca_cert: str = ""
    """The backup's controller CA (agent.conf `cacert`, a public certificate): written to juju-db's
    ca.crt where juju-db requires client certificates (the restored server.pem chains to it)."""

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "steps": list(self.steps)}, sort_keys=True)

    @classmethod
    def from_dict(cls, doc: Any) -> Params:
        """Given params.json's content (read back from the target: hostile input, like a catalog
        record), return Params. Every value is checked before it reaches a step script, a unit name
        or mongo JS: the backup ID, machine id (top-level, names.IsValidMachine), uuids, address,
        ports, step names, digests, sizes, profile, mode, backup dir and harvest modes. Raise
        VerifyError (exit 8) naming the first value that is not one restore writes."""
        if not isinstance(doc, dict):
            raise _bad_params("params.json", doc, "a JSON object")
        try:
            harvest = tuple(_harvest(h) for h in _list(doc.get("harvest_modes") or [], "harvest_modes"))
            params = cls(**{**doc, "steps": tuple(_list(doc["steps"], "steps")), "harvest_modes": harvest})
        except (TypeError, KeyError) as err:
            raise VerifyError(f"unreadable restore journal parameters: {err}",
                              hint=_PARAMS_HINT) from err
        params.validate()
        return params

    def validate(self) -> None:
        """Return if every field is a value restore writes. Raise VerifyError (exit 8) otherwise."""
        from jujubackup.metadata import is_backup_id, is_machine_id
        from jujubackup.repoint import UUID_RE, valid_address

        checks: tuple[tuple[str, Any, bool, str], ...] = (
            ("backup_id", self.backup_id, isinstance(self.backup_id, str) and is_backup_id(self.backup_id),
             "a backup ID (YYYYMMDD-hhmmss.<uuid>)"),
            ("mode", self.mode, self.mode in {m.value for m in P.Mode}, "a restore mode"),
            ("profile", self.profile, self.profile in {p.name for p in profiles.PROFILES}, "a profile name"),
            ("machine_id", self.machine_id, isinstance(self.machine_id, str)
             and is_machine_id(self.machine_id) and "/" not in self.machine_id, "a top-level machine id"),
            ("model_uuid", self.model_uuid, isinstance(self.model_uuid, str)
             and UUID_RE.fullmatch(self.model_uuid) is not None, "a model uuid"),
            ("new_address", self.new_address, isinstance(self.new_address, str)
             and valid_address(self.new_address) is not None, "an IP address or host name"),
            ("state_port", self.state_port, _is_int(self.state_port, 1, 65535), "a port"),
            ("api_port", self.api_port, _is_int(self.api_port, 1, 65535), "a port"),
            ("steps", self.steps, bool(self.steps) and all(s in P.STEP_ORDER for s in self.steps),
             "restore step names"),
            ("sha256", self.sha256, isinstance(self.sha256, str)
             and _SHA256.fullmatch(self.sha256) is not None, "a SHA-256"),
            ("size", self.size, _is_int(self.size, 0, 2**63 - 1), "a size"),
            ("install", self.install, isinstance(self.install, bool), "true or false"),
            ("oplog", self.oplog, isinstance(self.oplog, bool), "true or false"),
            ("overlay_sha256", self.overlay_sha256, isinstance(self.overlay_sha256, str)
             and (self.overlay_sha256 == "" or _SHA256.fullmatch(self.overlay_sha256) is not None),
             "a SHA-256 or empty"),
            ("overlay_size", self.overlay_size, _is_int(self.overlay_size, 0, 2**63 - 1), "a size"),
            ("ca_sha256", self.ca_sha256, isinstance(self.ca_sha256, str)
             and (self.ca_sha256 == "" or _SHA256.fullmatch(self.ca_sha256) is not None),
             "a SHA-256 or empty"),
            ("backup_dir", self.backup_dir, _is_backup_dir(self.backup_dir), "a dedicated absolute dir"),
            ("mongod_version", self.mongod_version, isinstance(self.mongod_version, str)
             and _MONGOD_VERSION.fullmatch(self.mongod_version) is not None, "a mongod version or empty"),
            ("shell_version", self.shell_version, isinstance(self.shell_version, str)
             and _XYZ_OR_EMPTY.fullmatch(self.shell_version) is not None, "X.Y.Z or empty"),
            ("tools_version", self.tools_version, isinstance(self.tools_version, str)
             and _XYZ_OR_EMPTY.fullmatch(self.tools_version) is not None, "X.Y.Z or empty"),
            ("ca_cert", self.ca_cert, isinstance(self.ca_cert, str)
             and (self.ca_cert == "" or _PEM_CERTS.fullmatch(self.ca_cert.strip()) is not None),
             "PEM certificates or empty"),
        )
        for name, value, ok, expected in checks:
            if not ok:
                raise _bad_params(name, value, expected)
        for uuid, _model, was in self.harvest_modes:
            if UUID_RE.fullmatch(uuid) is None or was not in _HARVEST_VALUES:
                raise _bad_params("harvest_modes", [uuid, was], "model uuids and Juju harvest modes")


_SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)
_MONGOD_VERSION = re.compile(r"(\d{1,4}\.\d{1,4}\.\d{1,4}([.+-][A-Za-z0-9.+-]{0,40})?)?", re.ASCII)
_XYZ_OR_EMPTY = re.compile(r"(\d{1,4}\.\d{1,4}\.\d{1,4})?", re.ASCII)
_PEM_CERTS = re.compile(
    r"(-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]{1,16384}-----END CERTIFICATE-----\n*){1,8}", re.ASCII
)
_MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,199}", re.ASCII)  # names.IsValidModelName
_HARVEST_VALUES = (None, "all", "none", "unknown", "destroyed")  # config.HarvestMode (environs/config)
_PARAMS_HINT = ("the restore journal on the target (params.json) is not what jujubackup wrote, so neither "
                "--resume nor --rollback uses it: check the target, then remove its journal dir by hand")


def _bad_params(name: str, value: Any, expected: str) -> VerifyError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return VerifyError(f"the restore journal's {name} is {shown}, not {expected}", hint=_PARAMS_HINT)


def _list(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise _bad_params(name, value, "a list")
    return value


def _harvest(entry: Any) -> tuple[str, str, str | None]:
    """Return one (model uuid, model name, earlier mode) entry. Raise VerifyError if it is not one."""
    if not (isinstance(entry, list) and len(entry) == 3 and all(isinstance(x, str) for x in entry[:2])
            and _MODEL_NAME.fullmatch(entry[1]) and (entry[2] is None or isinstance(entry[2], str))):
        raise _bad_params("harvest_modes", entry, "[model uuid, model name, earlier mode]")
    return entry[0], entry[1], entry[2]


def _is_int(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _is_backup_dir(value: Any) -> bool:
    """True if `value` passes the workstation's --backup-dir checks (absolute, no control character,
    no system dir)."""
    from jujubackup.operations.connecting import check_backup_dir

    if not isinstance(value, str):
        return False
    try:
        check_backup_dir(value)
    except JujuBackupError:
        return False
    return True
