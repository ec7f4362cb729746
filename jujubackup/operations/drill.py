"""drill: restore a backup onto a throwaway target, isolated, and prove it restored (issue 16).

The restore's own stages run (operations/restore.py `fresh_restore`, as a disaster-recovery restore:
the archive verified while it is pushed, the dump and agent.conf re-addressed for the target,
provisioner safe mode on, nothing re-pointed), with three changes given as `Stages`:
- the old controllers are not probed from the target (they are expected to be alive: the drill
  is isolated from them instead);
- once the target is probed and before anything on it changes, `drill-isolate` refuses a target
  that runs Juju (but a freshly bootstrapped controller of another controller: the throwaway target
  of a 3.x backup, which needs its dqlite node) or is an agent of the backup's controller or models
  (unless --force), closes its
  egress (nftables, else iptables: only loopback and the workstation's SSH sessions stay open) and
  proves it with connection attempts that must be stopped by its rule (exit 6 when it cannot);
- the restore's `verify` step is replaced by the drill's checks, run while the target is connected:
  juju-db PRIMARY, jujud active, the API's certificate, the document counts, the UUIDs.
The drill then disables the restored units (egress rules do not survive a reboot) and, without
--keep, stops them. Exit 0 when every check passed, 8 when one failed.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import bson
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from jujubackup import apilogin, apiprobe, archive, drillreport, profiles, scripts
from jujubackup.drillreport import Check, Report
from jujubackup.errors import JujuBackupError, RefusedError, UsageError, VerifyError
from jujubackup.flagcheck import one_source
from jujubackup.host.base import Connector
from jujubackup.restore import fresh as R
from jujubackup.restore import plan as P
from jujubackup.restore.backupfacts import peer_endpoints
from jujubackup.restore.request import RestoreRequest
from jujubackup.ui import UI

DRILL_DIR = "/var/lib/jujubackup-drill"
WAIT_SECONDS = 90
"""How long a check waits for the restored services to come up (as restore-verify does)."""
POLL = 0.5
STAYS_ACTIVE = 1.0  # seconds jujud must stay active after the jujud-active check passed
COUNT_MEMBER_LIMIT = 1 << 30


@dataclass(frozen=True)
class DrillRequest:
    """What the operator asked for (built once by the CLI)."""

    target: str
    backup_ref: str | None = None
    archive: Path | None = None
    junit: Path | None = None
    keep: bool = False
    force: bool = False
    work_dir: Path | None = None
    backup_dir: str = profiles.DEFAULT_BACKUP_DIR


def check_request(request: DrillRequest) -> None:
    """Raise UsageError unless exactly one of a backup ID and --archive is given, with --target."""
    one_source(request.backup_ref, request.archive,
               hint="`drill latest --target HOST` or `drill --archive FILE --target HOST`")
    if not request.target:
        raise UsageError("--target HOST is required (the throwaway machine to drill on)")
    if request.archive is not None and not request.archive.is_file():
        raise JujuBackupError(f"no archive file {request.archive}", exit_code=5)


def drill(connector: Connector, request: DrillRequest, ui: UI) -> Report:
    """Run the drill; return its report (every check's verdict), the JUnit file written if asked.

    Raise UsageError (2), RefusedError (6: a live or a model's machine as target without --force, or
    egress that cannot be closed), VerifyError (8) for an archive that does not verify, the restore's
    own typed errors for a failed stage (the JUnit file then shows the failed stage).
    """
    check_request(request)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    report = Report(
        backup_id=request.backup_ref or (request.archive.name if request.archive else ""),
        target=request.target,
        started=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    run = _Drill(request, ui, report)
    restore_request = RestoreRequest(
        backup_ref=request.backup_ref,
        archive=request.archive,
        target=request.target,
        yes=True,
        force=request.force,
        work_dir=request.work_dir,
        backup_dir=request.backup_dir,
        repoint=None,  # nothing is re-pointed: the drilled controller must stay unknown to every agent
    )
    stages = R.Stages(
        mode=P.Mode.dr,
        probe_old_controllers=False,
        on_probed=run.isolate,
        omit_steps=frozenset({P.VERIFY}),
        show_plan=False,
        on_restored=run.check,
    )
    try:
        with R.work_dir(request.work_dir) as work:
            R.fresh_restore(connector, restore_request, ui, lambda _: True, work, stages)
    except JujuBackupError as err:
        run.failed_stage(err)
        raise
    finally:
        run.close()
        if request.junit is not None and (report.checks or report.isolation):
            write_junit(request.junit, report)
    return report


def write_junit(path: Path, report: Report) -> None:
    """Write the report's JUnit XML to `path` (replaced atomically)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(drillreport.junit_xml(report))
    tmp.replace(path)


@dataclass
class _Drill:
    """The drill's hooks into the restore's stages and what they found."""

    request: DrillRequest
    ui: UI
    report: Report
    threads: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="drill-count")
    )
    backup: Future[drillreport.BackupSide] | None = None
    isolated: bool = False

    def close(self) -> None:
        self.threads.shutdown(wait=True, cancel_futures=True)

    # -- before anything changes on the target ---------------------------------------------------

    def isolate(self, staged: R.Staged) -> None:
        """Refuse a target that is a machine of the backup's model (its addresses), then run
        drill-isolate (more refusals, egress closed and proven). Raise RefusedError (6)."""
        backup, facts = staged.backup, staged.facts
        self.report.backup_id = backup.backup_id
        self.backup = self.threads.submit(read_backup_side, staged.archive, backup.controller_uuid)
        if not self.request.force:
            refuse_model_machine(staged.archive, facts)
        started = time.monotonic()
        doc = staged.target.run(
            "drill-isolate",
            scripts.render(
                "drill-isolate",
                drill_dir=DRILL_DIR,
                backup_id=backup.backup_id,
                controller_uuid=backup.controller_uuid,
                model_uuids=[backup.model_uuid],
                probes=[list(e) for e in isolation_probes(backup, facts)],
                api_port=backup.api_port,
                force=self.request.force,
                # what `juju bootstrap` left (another controller, only its controller model): its
                # juju-db and jujud are not a live Juju to protect (a 3.x drill needs its dqlite node)
                bootstrapped=facts.freshly_bootstrapped(backup.controller_uuid),
            ),
            timeout=120,
        ).json()
        if not isinstance(doc, dict):
            raise RefusedError(f"drill-isolate on {staged.target.name} printed no result")
        if doc.get("refused"):
            raise RefusedError(
                f"{staged.target.name}: {str(doc['refused'])[:300]}",
                hint="drill onto a throwaway machine (a fresh VM with the backup's Juju/mongo tools "
                "and nftables or iptables); --force overrides the live-machine refusals only",
            )
        self.isolated = True
        probes = [p for p in doc.get("probes") or [] if isinstance(p, dict)]
        firewall = str(doc.get("firewall", ""))
        self.report.isolation = {
            "firewall": firewall,
            "allowed": [str(a) for a in doc.get("allowed") or []],
            "probes": [
                {
                    "address": str(p.get("address")),
                    "port": int(p.get("port") or 0),
                    "result": str(p.get("result")),
                }
                for p in probes
            ],
        }
        refused = ", ".join(f"{p.get('address')}:{p.get('port')}" for p in probes)
        self.report.checks.append(
            Check(
                "isolation",
                True,
                time.monotonic() - started,
                f"egress closed with {firewall}; outbound connections refused by it: {refused}",
            )
        )
        self.ui.info(f"{staged.target.name}: egress closed ({firewall}); restoring {backup.backup_id}")

    # -- after the restore's steps ---------------------------------------------------------------

    def check(self, staged: R.Staged, outcome: Any) -> None:
        """Run every check on the restored target, record them, then disable (and stop) its units."""
        steps = ", ".join(outcome.ran)
        total = sum(v for k, v in outcome.seconds.items() if k != "prepare")
        self.report.checks.append(
            Check("restore", True, total, f"the restore's stages ran on {staged.target.name}: {steps}")
        )
        query = Query(staged, self.request.backup_dir)
        active_since = time.monotonic()
        for name, fn in (
            ("juju-db-primary", lambda: check_primary(query)),
            ("jujud-active", lambda: check_jujud(query)),
            ("api-certificate", lambda: check_api_certificate(staged)),
            ("api-login", lambda: check_api_login(staged)),
            ("document-counts", lambda: check_counts(query, self._backup_side())),
            ("uuids", lambda: check_uuids(query, self._backup_side())),
        ):
            self.report.checks.append(timed(name, fn))
            if name == "jujud-active":
                active_since = time.monotonic()
        self.recheck_jujud(query, active_since)
        self.finish(staged, query)

    def recheck_jujud(self, query: Query, active_since: float) -> None:
        """jujud must stay active at least STAYS_ACTIVE seconds after the jujud-active check passed (a
        crash-looping agent flips); the other checks run in that window, so only what is left of it is
        waited. A unit no longer active turns the jujud-active check into a failure."""
        index = next(i for i, c in enumerate(self.report.checks) if c.name == "jujud-active")
        first = self.report.checks[index]
        if not first.ok:
            return
        time.sleep(max(0.0, STAYS_ACTIVE - (time.monotonic() - active_since)))
        ok, detail = jujud_state(query)
        if not ok:
            self.report.checks[index] = replace(
                first, ok=False, detail=f"{detail} {STAYS_ACTIVE:g} s after it was active (a crash loop?)"
            )

    def finish(self, staged: R.Staged, query: Query) -> None:
        """Disable the restored units, stop them unless --keep; set the report's next steps."""
        doc = staged.target.run(
            "drill-finish",
            scripts.render("drill-finish", drill_dir=DRILL_DIR, units=query.units, keep=self.request.keep),
            timeout=300,
        ).json()
        self.report.kept = self.request.keep
        self.report.next_steps = next_steps(staged.target.name, self.request.keep, bool(doc.get("stopped")))

    def failed_stage(self, err: JujuBackupError) -> None:
        """Record a restore stage that failed after the target was isolated (a failed testcase)."""
        if self.isolated and not any(c.name == "restore" for c in self.report.checks):
            self.report.checks.append(Check("restore", False, 0.0, f"exit {err.exit_code}: {err.message}"))

    def _backup_side(self) -> drillreport.BackupSide:
        assert self.backup is not None
        return self.backup.result()


# ------------------------------------------------------------------------------------------ checks


@dataclass
class Query:
    """drill-query on the restored target: unit states and mongo statements as the machine agent."""

    staged: R.Staged
    backup_dir: str
    values: dict[str, Any] = field(init=False)
    units: list[str] = field(init=False)

    def __post_init__(self) -> None:
        backup, facts = self.staged.backup, self.staged.facts
        profile = profiles.profile_named(str(facts.profile))
        self.values = {
            "journal_dir": DRILL_DIR,
            "step": "drill",
            "backup_id": backup.backup_id,
            "db_service": profile.db_service,
            "machine_id": backup.machine_id,
            "mongo_shell": profile.mongo_shell,
            "state_port": backup.state_port,
            "backup_dir": self.backup_dir,
        }
        self.units = [f"{profile.db_service}.service", f"jujud-machine-{backup.machine_id}.service"]

    def __call__(self, statements: list[str], units: list[str] | None = None) -> dict[str, Any]:
        text = scripts.render("drill-query", **self.values, units=units or [], statements=statements)
        doc = self.staged.target.run("drill-query", text, timeout=180).json()
        return doc if isinstance(doc, dict) else {}


def timed(name: str, fn: Callable[[], tuple[bool, str]]) -> Check:
    """Run one check; return its verdict with its wall-clock seconds (a typed error is a failure)."""
    started = time.monotonic()
    try:
        ok, detail = fn()
    except JujuBackupError as err:
        ok, detail = False, err.message
    return Check(name, ok, time.monotonic() - started, detail)


def until(probe: Callable[[], tuple[bool, str]], wait: float = WAIT_SECONDS) -> tuple[bool, str]:
    """Call `probe` until it passes or `wait` seconds passed; return its last verdict."""
    deadline = time.monotonic() + wait
    while True:
        ok, detail = probe()
        if ok or time.monotonic() >= deadline:
            return ok, detail
        time.sleep(POLL)


def check_primary(query: Query) -> tuple[bool, str]:
    """juju-db answers (as the restored machine agent) and is PRIMARY of its replica set."""

    def probe() -> tuple[bool, str]:
        doc = query([drillreport.statement("admin", {"replSetGetStatus": 1})], [query.units[0]])
        state = drillreport.unit_states(doc).get(query.units[0], "unknown")
        try:
            status = drillreport.parse_results(doc, 1)[0]
        except VerifyError as err:
            return False, f"{query.units[0]} is {state}; {err.message}"
        return drillreport.primary_verdict(status)

    return until(probe)


def jujud_state(query: Query) -> tuple[bool, str]:
    """Given the drill's query, return whether jujud-machine-N is active now, and its state."""
    unit = query.units[1]
    state = drillreport.unit_states(query([], [unit])).get(unit, "unknown")
    return state == "active", f"{unit} is {state}"


def check_jujud(query: Query) -> tuple[bool, str]:
    """jujud-machine-N becomes active (_Drill.recheck_jujud checks that it stays so)."""
    return until(lambda: jujud_state(query))


def check_api_certificate(staged: R.Staged) -> tuple[bool, str]:
    """The API answers TLS (reached from the target itself, through the SSH connection: its egress is
    closed) with a certificate that chains to the backup's CA (apiprobe.py)."""
    backup, address = staged.backup, staged.facts.address
    if not backup.ca_cert:
        return False, "the backup's agent.conf has no cacert: nothing to check the API's certificate against"

    def probe() -> tuple[bool, str]:
        try:
            cert = apiprobe.probe_api(staged.target, address, backup.api_port, backup.ca_cert)
        except VerifyError as err:
            return False, err.message
        names = "" if cert.names_address else f" (it does not name {address})"
        return (
            True,
            f"{address}:{backup.api_port} serves {cert.subject}, issued by {cert.issuer}, "
            f"chaining to the backup's CA{names}",
        )

    return until(probe)


def check_api_login(staged: R.Staged) -> tuple[bool, str]:
    """The API accepts an Admin.Login of the restored machine agent with its own credentials (tag,
    apipassword and nonce of its agent.conf, read from the archive's root.tar: never in argv or
    output), on the controller model's API."""
    backup, address = staged.backup, staged.facts.address
    conf_name = archive.agent_conf_path(backup.machine_id)
    text = archive.read_members(staged.archive, [], [conf_name]).root_files.get(conf_name, b"")
    try:
        conf = YAML(typ="safe", pure=True).load(text.decode("utf-8", "replace")) or {}
    except YAMLError:
        conf = {}
    if not isinstance(conf, dict) or not conf.get("apipassword"):
        return False, f"the backup's {conf_name} has no apipassword to log in with"
    tag = str(conf.get("tag") or f"machine-{backup.machine_id}")

    def probe() -> tuple[bool, str]:
        try:
            result = apilogin.login(
                staged.target,
                address,
                backup.api_port,
                backup.ca_cert,
                backup.model_uuid,
                tag,
                str(conf["apipassword"]),
                str(conf.get("nonce") or ""),
            )
        except VerifyError as err:
            return False, err.message
        return (
            True,
            f"{tag} logged in to model {result.model_tag or backup.model_uuid} "
            f"(controller {result.controller_tag}, server {result.server_version})",
        )

    return until(probe, wait=30)


def check_counts(query: Query, backup: drillreport.BackupSide) -> tuple[bool, str]:
    """models, machines, applications in the restored DB = the backup's dump (and its record)."""
    statements = [drillreport.statement("juju", {"count": c}) for c in drillreport.COUNTED]
    results = drillreport.parse_results(query(statements), len(statements))
    restored = {c: drillreport.count_of(r) for c, r in zip(drillreport.COUNTED, results, strict=True)}
    return drillreport.counts_verdict(backup, restored)


def check_uuids(query: Query, backup: drillreport.BackupSide) -> tuple[bool, str]:
    """The restored controller UUID and model UUIDs are the backup's."""
    statements = [
        drillreport.statement("juju", {"find": "controllers", "filter": {"_id": "controllerSettings"}}),
        drillreport.statement("juju", {"find": "models", "filter": {}}),
    ]
    settings, models = drillreport.parse_results(query(statements), 2)
    return drillreport.uuids_verdict(backup, settings, models)


# ------------------------------------------------------------------------------------------ helpers


def read_backup_side(path: Path, controller_uuid: str) -> drillreport.BackupSide:
    """Given the local archive, return its BackupSide (one streaming pass: the manifest is last)."""
    contents = archive.read_members(
        path, [*drillreport.DUMP_MEMBERS, archive.MANIFEST], max_bytes=COUNT_MEMBER_LIMIT
    )
    manifest_text = contents.files.get(archive.MANIFEST)
    manifest = None
    if manifest_text is not None:
        import json

        try:
            loaded = json.loads(manifest_text)
        except ValueError as err:
            raise VerifyError(f"manifest.json of {path} is not JSON: {err}") from err
        manifest = loaded if isinstance(loaded, dict) else None
    return drillreport.backup_side(contents.files, manifest, controller_uuid)


def refuse_model_machine(path: Path, facts: P.TargetFacts) -> None:
    """Raise RefusedError when one of the target's addresses is an address of a machine in the
    backup (any model): the target answers as a machine of the backup's model."""
    own = set(facts.addresses) | {facts.address}
    data = archive.read_members(path, ["dump/juju/machines.bson"]).files.get("dump/juju/machines.bson", b"")
    for doc in bson.decode_all(data):
        addresses = {
            str(a.get("value"))
            for key in ("addresses", "machineaddresses")
            for a in (doc.get(key) or [])
            if isinstance(a, dict)
        }
        hit = sorted(own & addresses)
        if hit:
            raise RefusedError(
                f"{facts.name} answers at {', '.join(hit)}, an address of machine {doc.get('machineid')} "
                f"of model {doc.get('model-uuid')} in the backup",
                hint="drill onto a throwaway machine, not one of the backup's; or override with --force",
            )


def isolation_probes(backup: P.BackupFacts, facts: P.TargetFacts) -> list[tuple[str, int]]:
    """Return the endpoints the isolation proof connects to: the backup's old controllers on the API
    and state ports (drill-isolate adds the workstation on the API port)."""
    return peer_endpoints(backup, facts)


def next_steps(target: str, kept: bool, stopped: bool) -> tuple[str, ...]:
    """Return what the operator can do with the target afterwards."""
    firewall = (
        "its egress stays closed until it reboots or `nft delete table inet jujubackup_drill` "
        "(iptables: the JUJUBACKUP_DRILL chain)"
    )
    state = "left running, still isolated" if kept else ("stopped" if stopped else "not stopped")
    return (
        f"the drilled controller on {target} is {state}; its units are disabled (a reboot does not start "
        f"it); {firewall}",
        f"reuse {target}: run `jujubackup drill ... --target {target}` again (a drilled target is "
        "recognised and restored over)",
        f"wipe {target}: destroy the throwaway VM (it holds the backup's secrets: agent.conf, CA key)",
    )
