"""`jujubackup prune [--keep-…] [--dry-run] [--yes]`: apply a retention policy to a controller's catalog."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from jujubackup.catalog import CatalogRecord
from jujubackup.cli import BackupDirOption, FormatOption, make_ui, options
from jujubackup.errors import UsageError
from jujubackup.operations.prune import COLUMNS, PruneRequest, PruneResult, run_prune
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.retention import Policy, parse_count
from jujubackup.settings import OutputFormat
from jujubackup.ui import UI


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
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
        backup_dir: BackupDirOption = DEFAULT_BACKUP_DIR,
        fmt: FormatOption = None,
    ) -> None:
        """Remove the stored backups a retention policy does not keep (restic's forget rules, in UTC).

        The rules are ORed; the newest backup of each hour/day/week/month/year counts, the oldest
        backup is kept while a rule has count left, and the newest backup that verifies (checked on
        the controller, newest first) is always kept. Takes the controller's lock to remove (exit 7
        while another operation holds it). Asks unless --yes; declining removes nothing (exit 6).
        """
        opts = options(ctx)
        ui = make_ui(opts, fmt)
        policy = Policy(
            last=parse_count(keep_last, "last"), hourly=parse_count(keep_hourly, "hourly"),
            daily=parse_count(keep_daily, "daily"), weekly=parse_count(keep_weekly, "weekly"),
            monthly=parse_count(keep_monthly, "monthly"), yearly=parse_count(keep_yearly, "yearly"),
        )
        if policy.empty():
            raise UsageError("no retention rule given: nothing would be removed",
                             hint="give at least one of --keep-last/-hourly/-daily/-weekly/-monthly/-yearly")

        def confirm(records: list[CatalogRecord]) -> bool:
            if yes:
                return True
            if not sys.stdin.isatty():
                raise UsageError("prune asks for confirmation but stdin is not a terminal",
                                 hint="give --yes (or --dry-run to see what would go)")
            for record in records:
                ui.info(f"  {record.id}  ({record.size} bytes, {record.metadata.notes or 'no notes'})")
            return typer.confirm(f"remove {len(records)} backup(s)?", default=False, err=True)

        result = run_prune(opts.connection, ui, PruneRequest(policy, dry_run, backup_dir), confirm)
        show(ui, result)


def show(ui: UI, result: PruneResult) -> None:
    """Print the plan: one row per backup (tabular), or the result's data."""
    if ui.format is not OutputFormat.tabular:
        ui.data(result.as_dict())
        return
    title = f"{result.host}: {result.plan.policy.describe()}" + (" (dry run)" if result.dry_run else "")
    ui.data(result.rows(), columns=COLUMNS, title=title)
    kept, gone = len(result.plan.keep), len(result.plan.remove)
    ui.info(f"{kept} kept, {gone} {'would be removed' if result.dry_run else 'removed'}")
