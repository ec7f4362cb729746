"""`jujubackup verify FILE|ID`: check an archive here, or the stored copy on the controller."""

from __future__ import annotations

from typing import Annotated

import typer

from jujubackup.archive import VerifyReport
from jujubackup.cli import BackupDirOption, FormatOption, make_ui, options
from jujubackup.cli.storeopts import IdentityOption, StoreConfigOption, StoreOption
from jujubackup.metadata import GO_ZERO_TIME
from jujubackup.operations.verify import VerifyRequest, run_verify
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.settings import OutputFormat
from jujubackup.ui import UI


def register(app: typer.Typer) -> None:
    @app.command("verify")
    def verify_cmd(
        ctx: typer.Context,
        target: Annotated[str, typer.Argument(
            metavar="FILE|ID",
            help="Local archive (an existing path, or with a '/' or a .tar.gz suffix) or a stored ID/prefix.",
        )],
        store: StoreOption = None,
        store_config: StoreConfigOption = None,
        identity: IdentityOption = None,
        backup_dir: BackupDirOption = DEFAULT_BACKUP_DIR,
        fmt: FormatOption = None,
    ) -> None:
        """Verify SHA-256 (and Juju's SHA-1), the manifest, member safety, metadata, root.tar and the
        dump's BSON. Exit 8 when anything fails. An ID is verified on the controller, not downloaded;
        with --store NAME, that store's copy is streamed through the verifier; an .age copy is
        decrypted as it is read (--identity FILE), never written out."""
        opts = options(ctx)
        ui = make_ui(opts, fmt)
        from jujubackup.stores.factory import named_store  # pydantic only for the verbs using stores

        named = named_store(store_config, store) if store else None
        report = run_verify(opts.connector, ui, VerifyRequest(target, backup_dir, named, identity))
        show(ui, report)
        report.raise_for_failures()


def show(ui: UI, report: VerifyReport) -> None:
    """Print the report: metadata and one line per check (tabular), or the report's data."""
    if ui.format is not OutputFormat.tabular:
        ui.data(report.as_dict())
        return
    data = report.as_dict()
    summary = {"archive": data["archive"], "result": "ok" if report.ok else "FAILED",
               "sha256": data["sha256"], "size": data["size"]}
    if report.metadata is not None:
        for key, value in report.metadata.to_api_dict().items():
            if key not in summary and value not in ("", None, GO_ZERO_TIME):
                summary[key] = value
    ui.data(summary)
    for check in report.checks:
        ui.line(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.message}")
