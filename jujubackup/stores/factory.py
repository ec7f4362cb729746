"""The one factory of stores: a validated config -> its Store; a name in a config file -> its Store.

Apart from stores/__init__.py (the shared names every backend imports), so that the package imports
no backend and no backend imports the factory: no import cycle.
"""

from __future__ import annotations

import os
from pathlib import Path

from jujubackup.errors import NotFoundError, UsageError
from jujubackup.stores import Store
from jujubackup.stores.config import (
    LocalStoreConfig,
    S3StoreConfig,
    StoreConfig,
    cli_recipients,
    load_stores,
)


def open_store(name: str, config: StoreConfig) -> Store:
    """Given a store's name and its validated config, return the Store (no I/O yet: the first
    method call connects). The one factory: `run`, `list --store`, `download` and restore use it."""
    if isinstance(config, LocalStoreConfig):
        from jujubackup.stores.local import LocalStore

        return LocalStore(name, config)
    if isinstance(config, S3StoreConfig):
        from jujubackup.stores.s3 import S3Store

        return S3Store(name, config)
    raise TypeError(f"unknown store config {type(config).__name__}")


STORE_CONFIG_ENV = "JUJUBACKUP_STORE_CONFIG"


def named_store(config_file: Path | None, name: str, *, encrypt_to: list[str] | None = None) -> Store:
    """Given the file the stores are defined in (`--store-config`, else $JUJUBACKUP_STORE_CONFIG) and a
    store's name, return that Store (open_store); `encrypt_to`, when given, replaces its
    recipients. Raise UsageError (2) when no file is given or the file is invalid, NotFoundError (5)
    when the file has no store of that name."""
    if config_file is None:
        env = os.environ.get(STORE_CONFIG_ENV)
        if not env:
            raise UsageError(f"--store {name} needs --store-config FILE (or ${STORE_CONFIG_ENV})",
                             hint="the file's top-level `stores:` mapping defines the stores (the fleet "
                             "config of `run` works too)")
        config_file = Path(env)
    stores = load_stores(config_file.expanduser())
    if name not in stores:
        raise NotFoundError(f"no store {name!r} in {config_file}",
                            hint=f"stores defined there: {', '.join(sorted(stores)) or 'none'}")
    config = stores[name]
    if encrypt_to is not None:
        config = config.model_copy(update={"encrypt_to": cli_recipients(encrypt_to)})
    return open_store(name, config)
