"""`restore --update-client-config`: point the Juju client's controllers.yaml at the restored
controller (api-endpoints), shown as a diff and confirmed first, never written through a link."""

from __future__ import annotations

import difflib
import io
import os
import tempfile
from contextlib import suppress
from pathlib import Path
from stat import S_ISREG

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq
from ruamel.yaml.scalarstring import ScalarString

from jujubackup.connect import juju_data
from jujubackup.errors import RefusedError
from jujubackup.restore.request import Confirm
from jujubackup.ui import UI


def update_client_config(
    controller_uuid: str,
    address: str,
    port: int,
    ui: UI,
    confirm: Confirm,
    *,
    yes: bool,
    data_dir: Path | None = None,
) -> bool:
    """Rewrite api-endpoints of the controller with `controller_uuid` in the Juju client's
    controllers.yaml to `address:port`, showing the diff first; return True if it was written."""
    path = (data_dir or juju_data()) / "controllers.yaml"
    if path.is_symlink():
        raise RefusedError(f"{path} is a symbolic link: not rewriting through it (client config not updated)",
                           hint="replace the link by the file (Juju writes a plain file), or edit "
                           "api-endpoints by hand")
    if not path.is_file():
        ui.warn(f"no {path}: client config not updated")
        return False
    old_text = _read_nofollow(path)
    new_text, name = rewrite_controllers_yaml(old_text, controller_uuid, f"{address}:{port}")
    if name is None or new_text == old_text:
        ui.warn(f"controller {controller_uuid} is not in {path} (or already points at {address})")
        return False
    for line in difflib.unified_diff(
        old_text.splitlines(), new_text.splitlines(), str(path), str(path), lineterm=""
    ):
        ui.line(line)
    if not yes and not confirm(f"update api-endpoints of controller {name} in {path}?"):
        return False
    replace_file(path, new_text.encode("utf-8"))
    return True


def _read_nofollow(path: Path) -> str:
    """Return the text of regular file `path`, opened without following a link. Raise RefusedError
    (exit 6) for a link or a non-regular file (one planted after the check)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        raise RefusedError(f"cannot read {path}: {err.strerror}", hint="check that file") from err
    with os.fdopen(fd, "rb") as fh:
        if not S_ISREG(os.fstat(fd).st_mode):
            raise RefusedError(f"{path} is not a regular file: client config not updated")
        return fh.read().decode("utf-8")


def replace_file(path: Path, data: bytes) -> None:
    """Replace `path` by a file holding `data`: written to a private temp file (0600, O_EXCL) in the
    same directory, given the old file's mode, synced, renamed over it. Never writes through a link
    (the rename replaces a link planted at `path` itself, never its target); the temp file is removed
    if anything fails."""
    mode = 0o600
    with suppress(OSError):
        mode = os.lstat(path).st_mode & 0o777 & ~0o022  # never wider for group/others than it was
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".jujubackup.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def rewrite_controllers_yaml(text: str, controller_uuid: str, endpoint: str) -> tuple[str, str | None]:
    """Given controllers.yaml text, return (new text, controller name) with that controller's
    api-endpoints set to [endpoint] (name None when no controller has that uuid)."""
    yaml = YAML()
    yaml.preserve_quotes = True
    doc = yaml.load(text) or {}
    for name, entry in (doc.get("controllers") or {}).items():
        if isinstance(entry, dict) and entry.get("uuid") == controller_uuid:
            old = entry.get("api-endpoints")
            first = old[0] if isinstance(old, list) and old else None
            value = type(first)(endpoint) if isinstance(first, ScalarString) else endpoint
            new = CommentedSeq([value])
            if isinstance(old, CommentedSeq) and old.fa.flow_style():
                new.fa.set_flow_style()
            entry["api-endpoints"] = new
            out = io.StringIO()
            yaml.dump(doc, out)
            return out.getvalue(), str(name)
    return text, None
