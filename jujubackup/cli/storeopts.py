"""Options shared by the verbs that read from or write to a store, or decrypt (issue 17)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated

import typer

StoreOption = Annotated[
    str | None,
    typer.Option("--store", metavar="NAME", help="A store defined in --store-config (local dir or S3)."),
]
StoreConfigOption = Annotated[
    Path | None,
    typer.Option("--store-config", metavar="FILE", envvar="JUJUBACKUP_STORE_CONFIG",
                 help="YAML file whose top-level `stores:` defines the stores (the fleet config works)."),
]
IdentityOption = Annotated[
    Path | None,
    typer.Option("--identity", metavar="FILE",
                 help="age identity file or unencrypted OpenSSH private key that decrypts an .age copy "
                 "(read from the file, never from the command line)."),
]

ArchiveOption = Annotated[
    Path | None,
    typer.Option("--archive", help="Local archive file instead of a stored ID (an .age file needs "
                 "--identity); with --store NAME: the ID of that store's copy."),
]
"""`--archive`, of the verbs that restore one (restore, drill): see archive_path / hold_archive."""
WorkDirOption = Annotated[
    Path | None, typer.Option("--work-dir", help="Local scratch dir (default: a temp dir).")
]
"""`--work-dir`: where restore and drill unpack and re-address (hold_archive may choose one in memory)."""


@contextmanager
def archive_path(archive: Path | None, store: str | None, store_config: Path | None, identity: Path | None,
                 work_dir: Path | None) -> Iterator[tuple[Path | None, Path | None]]:
    """Yield (the local path `--archive` stands for, the work dir to use): the file itself when
    plain; the decrypted (memfd) or fetched plaintext of an `.age` file or of `--store NAME`'s copy
    (`--archive ID`); None without --archive. With --identity and no --work-dir, the work dir (where
    restore writes the re-addressing overlay: agent.conf and dump collections) is a private dir in
    memory (sources.private_work_dir), so nothing decrypted lands on a disk. Raise UsageError (2)
    for --store or --identity without --archive."""
    from jujubackup.errors import UsageError
    from jujubackup.sources import Source, materialized, private_work_dir
    from jujubackup.stores.factory import named_store

    if archive is None:
        if store or identity:
            raise UsageError("--store and --identity go with --archive (FILE, or ID with --store)")
        yield None, work_dir
        return
    source = Source(store=named_store(store_config, store), ref=str(archive), identity=identity) if store \
        else Source(path=archive, identity=identity)
    with ExitStack() as stack:
        if identity is not None and work_dir is None:
            work_dir = stack.enter_context(private_work_dir())
        path = stack.enter_context(materialized(source, work_dir))
        yield path, work_dir


def hold_archive(ctx: typer.Context, archive: Path | None, store: str | None, store_config: Path | None,
                 identity: Path | None, work_dir: Path | None) -> tuple[Path | None, Path | None]:
    """archive_path for a verb: the plaintext (and the work dir made for it) stays available until
    the command's context closes (click closes it also when the command raises)."""
    stack = ExitStack()
    ctx.call_on_close(stack.close)
    return stack.enter_context(archive_path(archive, store, store_config, identity, work_dir))
