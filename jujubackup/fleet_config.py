"""PURE (local file reading only): the fleet config of `jujubackup run --config FILE` (issue 17).

EXAMPLE (below) shows every key.

Every key is checked by the schema (pydantic): an unknown key or a value of the wrong type is an
error naming FILE:LINE and the key's path, exit 2; all problems are reported at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from jujubackup.connect import parse_host
from jujubackup.errors import UsageError
from jujubackup.profiles import DEFAULT_BACKUP_DIR, MODES
from jujubackup.retention import Policy, parse_count
from jujubackup.settings import ConnectionSettings
from jujubackup.stores.config import StoreConfig, StoreName
from jujubackup.yamldoc import line_of, load_roundtrip

EXAMPLE = """\
    parallel: 2                        # controllers backed up at once (1..32; default 2)
    defaults:                          # every controller's settings unless it sets its own
      mode: online                     # online | quiesce | stop (create --mode)
      exclude-logs: false
      backup-dir: /var/lib/juju/backups   # on the controller (create/prune --backup-dir)
      ssh:                             # how to reach the hosts; unset keys come from the command line
        config: ~/.ssh/config          # -F
        identity: ~/.ssh/id_ed25519    # -i
        known-hosts: ~/.ssh/known_hosts
        user: ubuntu
        connect-timeout: 10
        accept-new-host-key: false
      retention:                       # prune of the controller's catalog after each backup
        keep-last: 3                   # keep-last/-hourly/-daily/-weekly/-monthly/-yearly: N | unlimited
      store-retention:                 # prune of this controller's copies in each store
        keep-daily: 7
        keep-weekly: 4
        keep-monthly: 12
      stores: [laptop]                 # the stores a controller copies to (default: every store)
    controllers:                       # name -> settings (the name labels the summary and metrics)
      prod:                            # by controllers.yaml name: `juju-controller`, default the key
        juju-controller: prod
      lab-28:                          # or by hosts (repeat for HA: the first healthy one is used)
        hosts: [ubuntu@10.0.0.5, 10.0.0.6:2222]
        mode: quiesce
        ssh: {config: /etc/jujubackup/ssh_config}
    stores:                            # the stores' schema: jujubackup.stores.config
      laptop: {kind: local, path: /srv/juju-backups}
"""

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
MAX_PARALLEL = 32


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=_kebab, populate_by_name=True)


Count = Annotated[int | Literal["unlimited"], Field(union_mode="left_to_right")]


class RetentionConfig(_Model):
    """`retention:` / `store-retention:`: counts per rule (restic's keep rules, see retention.py)."""

    keep_last: Count = 0
    keep_hourly: Count = 0
    keep_daily: Count = 0
    keep_weekly: Count = 0
    keep_monthly: Count = 0
    keep_yearly: Count = 0

    @model_validator(mode="after")
    def _counts(self) -> RetentionConfig:
        self.policy()  # UsageError -> ValueError below
        return self

    def policy(self) -> Policy:
        """Return the Policy these counts stand for. Raise ValueError for a negative count or no rule."""
        try:
            policy = Policy(*(parse_count(getattr(self, f"keep_{rule}"), rule)
                              for rule in ("last", "hourly", "daily", "weekly", "monthly", "yearly")))
        except UsageError as err:
            raise ValueError(err.message) from err
        if policy.empty():
            raise ValueError("a retention policy needs at least one keep-… count above 0")
        return policy


class SshConfig(_Model):
    """`ssh:`: how to reach a controller's hosts (the global options of the same names)."""

    config: Path | None = None
    identity: Path | None = None
    known_hosts: Path | None = None
    user: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")] | None = None
    connect_timeout: Annotated[float, Field(gt=0, le=600)] | None = None
    accept_new_host_key: bool | None = None

    @field_validator("config", "identity", "known_hosts")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    def over(self, base: SshConfig) -> SshConfig:
        """Return these settings with the unset ones taken from `base`."""
        mine = self.model_dump(exclude_none=True)
        return SshConfig.model_validate({**base.model_dump(exclude_none=True), **mine})


class _Settings(_Model):
    """What `defaults:` holds and every controller may set for itself."""

    mode: Literal["online", "quiesce", "stop"] | None = None
    exclude_logs: bool | None = None
    backup_dir: str | None = None
    ssh: SshConfig | None = None
    retention: RetentionConfig | None = None
    store_retention: RetentionConfig | None = None
    stores: list[Annotated[str, Field(pattern=NAME)]] | None = None

    @field_validator("backup_dir")
    @classmethod
    def _backup_dir(cls, value: str | None) -> str | None:
        if value is not None:
            from jujubackup.operations.connecting import check_backup_dir

            try:
                check_backup_dir(value)
            except UsageError as err:
                raise ValueError(err.message) from err
        return value


class ControllerConfig(_Settings):
    """One entry of `controllers:`: a controllers.yaml name or hosts, and its own settings."""

    juju_controller: Annotated[str, Field(pattern=NAME)] | None = None
    hosts: Annotated[list[str], Field(min_length=1)] | None = None

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str] | None) -> list[str] | None:
        for host in value or []:
            try:
                parse_host(host)
            except UsageError as err:
                raise ValueError(err.message) from err
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ControllerConfig:
        if self.hosts and self.juju_controller:
            raise ValueError("give hosts or juju-controller, not both")
        return self


class FleetConfig(_Model):
    """The whole file."""

    parallel: Annotated[int, Field(ge=1, le=MAX_PARALLEL)] = 2
    defaults: _Settings = Field(default_factory=_Settings)
    controllers: Annotated[dict[Annotated[str, Field(pattern=NAME)], ControllerConfig | None],
                           Field(min_length=1)]
    stores: dict[StoreName, StoreConfig] = Field(default_factory=dict)  # the stores' own schema

    @model_validator(mode="after")
    def _known_stores(self) -> FleetConfig:
        for name, entry in [("defaults", self.defaults), *self.controllers.items()]:
            unknown = [s for s in ((entry.stores if entry else None) or []) if s not in self.stores]
            if unknown:
                raise ValueError(f"{name}: stores {', '.join(unknown)} not defined under `stores:`")
        return self


@dataclass(frozen=True)
class Controller:
    """One controller of the fleet with its settings resolved (defaults applied)."""

    name: str
    juju_controller: str | None
    hosts: tuple[str, ...]
    mode: str
    exclude_logs: bool
    backup_dir: str
    ssh: SshConfig
    retention: Policy | None
    store_retention: Policy | None
    stores: tuple[str, ...]

    def connection(self, base: ConnectionSettings) -> ConnectionSettings:
        """Given the command line's connection settings, return this controller's: its hosts or
        controllers.yaml name, and its ssh settings where set (else the command line's). The sudo
        password given on the command line (file, environment or prompt) answers every controller's."""
        ssh = self.ssh
        return ConnectionSettings(
            hosts=self.hosts,
            controller=self.juju_controller,
            identity=ssh.identity or base.identity,
            ssh_config=ssh.config or base.ssh_config,
            known_hosts=ssh.known_hosts or base.known_hosts,
            accept_new_host_key=base.accept_new_host_key if ssh.accept_new_host_key is None
            else ssh.accept_new_host_key,
            connect_timeout=ssh.connect_timeout or base.connect_timeout,
            keepalive=base.keepalive,
            user=ssh.user or base.user,
            stream_via=base.stream_via,
            sudo_password=base.sudo_password,
        )

    def summary(self) -> dict[str, Any]:
        """Return the resolved settings as plain data (`config check --format json|yaml`)."""
        return {
            "name": self.name,
            "source": f"hosts {', '.join(self.hosts)}" if self.hosts
            else f"controllers.yaml {self.juju_controller}",
            "mode": self.mode,
            "backup-dir": self.backup_dir,
            "retention": self.retention.describe() if self.retention else "none (no prune)",
            "store-retention": self.store_retention.describe() if self.store_retention else "none (no prune)",
            "stores": list(self.stores),
        }


@dataclass(frozen=True)
class Fleet:
    """The validated config: the controllers (in file order), the stores (name -> validated config,
    jujubackup.stores.config's schema), `parallel`."""

    path: Path
    parallel: int
    controllers: tuple[Controller, ...]
    stores: dict[str, StoreConfig]


def resolve(config: FleetConfig, path: Path) -> Fleet:
    """Given the validated model, return the Fleet with each controller's defaults applied."""
    d = config.defaults
    out = []
    for name, entry in config.controllers.items():
        c = entry or ControllerConfig()
        retention = c.retention or d.retention
        store_retention = c.store_retention or d.store_retention or retention
        out.append(Controller(
            name=name,
            juju_controller=None if c.hosts else (c.juju_controller or name),
            hosts=tuple(c.hosts or ()),
            mode=c.mode or d.mode or MODES[0],
            exclude_logs=bool(c.exclude_logs if c.exclude_logs is not None else d.exclude_logs),
            backup_dir=c.backup_dir or d.backup_dir or DEFAULT_BACKUP_DIR,
            ssh=(c.ssh or SshConfig()).over(d.ssh or SshConfig()),
            retention=retention.policy() if retention else None,
            store_retention=store_retention.policy() if store_retention else None,
            stores=tuple(c.stores if c.stores is not None else (d.stores if d.stores is not None
                                                                 else config.stores)),
        ))
    return Fleet(path, config.parallel, tuple(out), dict(config.stores))


def load(path: Path) -> Fleet:
    """Given the config file's path, return the validated Fleet.

    Raise NotFoundError (exit 5) for a missing file, UsageError (exit 2) for a file that is not
    YAML or breaks the schema: the message lists every problem as `FILE:LINE: key.path: what`.
    """
    doc = load_roundtrip(path, "config file")
    if not isinstance(doc, dict):
        raise UsageError(f"{path}:1: the config must be a YAML mapping (parallel, defaults, controllers, "
                         "stores)",
                         hint="see `jujubackup config check --help` for the keys")
    try:
        model = FleetConfig.model_validate(_plain(doc))
    except ValidationError as err:
        problems = [problem_line(path, doc, e) for e in err.errors()]
        raise UsageError(
            f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems),
            hint="fix those keys (unknown keys are errors; see `jujubackup config check --help`)",
        ) from err
    return resolve(model, path)


def _plain(node: Any) -> Any:
    """Return a ruamel round-trip node as plain dicts/lists/scalars (what the schema validates)."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def problem_line(path: Path, doc: Any, error: Any) -> str:
    """Given one pydantic error, return `FILE:LINE: key.path: message` (the key path as in the YAML)."""
    loc = _yaml_loc(error["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required key missing"
    return f"{path}:{line_of(doc, loc)}: {key}: {message}"


def _yaml_loc(loc: Iterable[Any]) -> tuple[Any, ...]:
    """Drop pydantic's own loc parts (union members, `function-after[…]`, a store's discriminator
    tag `local`/`s3` after `stores.NAME`) and keep the YAML's keys."""
    out: list[Any] = []
    for part in loc:
        if len(out) == 2 and out[0] == "stores" and part in ("local", "s3"):
            continue
        if isinstance(part, str) and (part in ("ControllerConfig", "int", "literal['unlimited']", "none")
                                      or part.startswith(("function-", "constrained-"))):
            continue
        if isinstance(part, str) and part.startswith("[key]"):
            continue
        out.append(part)
    return tuple(out)
