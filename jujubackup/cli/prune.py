"""`jujubackup prune [--keep-…] [--dry-run] [--yes]`: apply a retention policy to a controller's catalog."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from jujubackup.catalog import CatalogRecord
from jujubackup.cli import BackupDirOption, FormatOption, YesOption, make_ui, options
from jujubackup.cli.storeopts import IdentityOption, StoreConfigOption, StoreOption
from jujubackup.errors import UsageError
from jujubackup.operations.prune import COLUMNS, PruneRequest, PruneResult, run_prune
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.retention import Policy, parse_count
from jujubackup.settings import OutputFormat
from jujubackup.ui import UI

if TYPE_CHECKING:
    from jujubackup.operations.prune_store import StorePruneResult


def _keep(rule: str, what: str) -> object:
    return typer.Option(f"--keep-{rule}", metavar="N", help=f"Keep the newest backup of each of the last N "
                        f"{what} that have one ('unlimited': all).")


def register(app: typer.Typer) -> None:
    @app.command("prune")
    def prune_cmd(
        ctx: typer.Context,
        keep_last: Annotated[str, typer.Option("--keep-last", metavar="N",
                                               help="Keep the N newest backups ('unlimited': all).")] = "0",
        keep_hourly: Annotated[str, _keep("hourly", "hours")] = "0",
        keep_daily: Annotated[str, _keep("daily", "days")] = "0",
        keep_weekly: Annotated[str, _keep("weekly", "ISO weeks (Monday to Sunday)")] = "0",
        keep_monthly: Annotated[str, _keep("monthly", "months")] = "0",
        keep_yearly: Annotated[str, _keep("yearly", "years")] = "0",
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would go and why each "
                                              "kept backup is kept; remove nothing.")] = False,
        yes: YesOption = False,
        store: StoreOption = None,
        store_config: StoreConfigOption = None,
        identity: IdentityOption = None,
        backup_dir: BackupDirOption = DEFAULT_BACKUP_DIR,
        fmt: FormatOption = None,
    ) -> None:
        """Remove the stored backups a retention policy does not keep (restic's forget rules, in UTC).

        The rules are ORed; the newest backup of each hour/day/week/month/year counts, the oldest
        backup is kept while a rule has count left, and the newest backup that verifies (checked on
        the controller, newest first) is always kept. Takes the controller's lock to remove (exit 7
        while another operation holds it). Asks unless --yes; declining removes nothing (exit 6).

        With --store NAME: the copies in that store instead (no controller is contacted), each
        controller's copies apart (grouped by the model UUID ending their IDs); incomplete copies are
        never pruned; the newest copy that verifies is kept (an encrypted one is verified in full only
        with --identity, else its stored bytes are hashed).
        """
        opts = options(ctx)
        ui = make_ui(opts, fmt)
        policy = policy_of(keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly)
        ask = Asker(ui, yes)
        if store is not None:
            if opts.connection.hosts or opts.connection.controller:
                raise UsageError("--store prunes a store: no controller (-H/-c) is used")
            prune_a_store(ui, store, store_config, identity, policy, dry_run, ask)
            return
        if identity is not None or store_config is not None:
            raise UsageError("--identity and --store-config go with --store NAME")

        def confirm(records: list[CatalogRecord]) -> bool:
            return ask([f"{r.id}  ({r.size} bytes, {r.metadata.notes or 'no notes'})" for r in records])

        result = run_prune(opts.connector, ui, PruneRequest(policy, dry_run, backup_dir), confirm)
        show(ui, result)


def policy_of(last: str, hourly: str, daily: str, weekly: str, monthly: str, yearly: str) -> Policy:
    """Given the --keep-… values, return the Policy. Raise UsageError (exit 2) for a bad count or
    when no rule is given."""
    policy = Policy(last=parse_count(last, "last"), hourly=parse_count(hourly, "hourly"),
                    daily=parse_count(daily, "daily"), weekly=parse_count(weekly, "weekly"),
                    monthly=parse_count(monthly, "monthly"), yearly=parse_count(yearly, "yearly"))
    if policy.empty():
        raise UsageError("no retention rule given: nothing would be removed",
                         hint="give at least one of --keep-last/-hourly/-daily/-weekly/-monthly/-yearly")
    return policy


@dataclass
class Asker:
    """Asks before removing: yes with --yes; a terminal question otherwise (UsageError without one)."""

    ui: UI
    yes: bool

    def __call__(self, lines: list[str]) -> bool:
        if self.yes:
            return True
        if not sys.stdin.isatty():
            raise UsageError("prune asks for confirmation but stdin is not a terminal",
                             hint="give --yes (or --dry-run to see what would go)")
        for line in lines:
            self.ui.info(f"  {line}")
        return typer.confirm(f"remove {len(lines)} backup(s)?", default=False, err=True)


def prune_a_store(ui: UI, name: str, config: Path | None, identity: Path | None, policy: Policy,
                  dry_run: bool, ask: Asker) -> None:
    """prune --store NAME: apply the policy to the store's copies and show the result."""
    from jujubackup.operations.prune_store import StorePruneRequest, prune_store
    from jujubackup.stores.factory import named_store

    store = named_store(config, name)
    result = prune_store(store, StorePruneRequest(policy, dry_run, identity), ui,
                         lambda copies: ask([f"{c.id} ({c.size} bytes)" for c in copies]))
    show_store(ui, result)


def show_store(ui: UI, result: StorePruneResult) -> None:
    """Print a store's plan: one row per complete copy (tabular), or the result's data."""
    if ui.format is not OutputFormat.tabular:
        ui.data(result.as_dict())
        return
    title = f"store {result.store}: {result.policy.describe()}" + (" (dry run)" if result.dry_run else "")
    ui.data(result.rows(), columns=COLUMNS, title=title)
    gone = sum(len(p.remove) for p in result.plans.values())
    kept = sum(len(p.keep) for p in result.plans.values())
    ui.info(f"{kept} kept, {gone} {'would be removed' if result.dry_run else 'removed'}"
            + (f", {len(result.incomplete)} incomplete (never pruned)" if result.incomplete else ""))


def show(ui: UI, result: PruneResult) -> None:
    """Print the plan: one row per backup (tabular), or the result's data."""
    if ui.format is not OutputFormat.tabular:
        ui.data(result.as_dict())
        return
    title = f"{result.host}: {result.plan.policy.describe()}" + (" (dry run)" if result.dry_run else "")
    ui.data(result.rows(), columns=COLUMNS, title=title)
    kept, gone = len(result.plan.keep), len(result.plan.remove)
    ui.info(f"{kept} kept, {gone} {'would be removed' if result.dry_run else 'removed'}")
