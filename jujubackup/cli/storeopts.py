"""Options shared by the verbs that read from or write to a store, or decrypt (issue 17)."""

from __future__ import annotations

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
