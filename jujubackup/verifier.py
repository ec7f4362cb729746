"""Verify a local archive in another process while this one does something else (send it, plan).

Verification is CPU-bound (inflate, hashes, BSON) and sending holds the GIL often, so in one process
they would take turns. The child is spawned (safe from a threaded parent) and is terminated when
the caller leaves early (Ctrl-C, a dropped connection): nobody waits for a verification whose
result is no longer wanted.

The child starts as `python -c ...`, which puts the current directory first on sys.path before any
of our code runs: a `struct.py` there shadowed the standard library and every `restore --archive`
died ("the verifying process died (exit code 0)"). It is started with PYTHONSAFEPATH=1 (Python 3.11+:
no such entry); a child that dies anyway says how and why it may have.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from multiprocessing.connection import Connection
from types import TracebackType

from jujubackup.alloc import reuse_big_buffers
from jujubackup.archive import VerifyReport, verify_archive
from jujubackup.errors import EXIT_INTERNAL, JujuBackupError


def _child(path: str, sha1: bool, conn: Connection) -> None:
    """Run verify_archive(path) and send ("ok", report) or ("error", exception) back. SIGTERM (the
    parent left early) unwinds normally, so the BSON decode pool of a big dump is shut down too."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reuse_big_buffers()
    try:
        # no worker processes of its own: the parent's work (sending the archive) needs the CPUs
        conn.send(("ok", verify_archive(path, sha1=sha1, workers=False)))
    except BaseException as err:  # sent back to the parent, which raises it
        try:
            conn.send(("error", err))
        except Exception:  # an exception that does not pickle
            conn.send(("error", RuntimeError(f"{type(err).__name__}: {err}")))
    finally:
        conn.close()


@contextlib.contextmanager
def _safe_path() -> Iterator[None]:
    """While a child process is started: PYTHONSAFEPATH=1 in the environment it inherits, so the
    current directory is not put on its sys.path (Python 3.11+); the parent's value is restored."""
    before = os.environ.get("PYTHONSAFEPATH")
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONSAFEPATH"]
        else:
            os.environ["PYTHONSAFEPATH"] = before


def died(exitcode: int | None) -> JujuBackupError:
    """Given the exit code of a verifying child that never answered, return the error saying how it
    died and the likely why (exit 1: not the archive's fault)."""
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else str(-exitcode)
        how = f"was killed by {name}"
        hint = "SIGKILL is often the kernel's out-of-memory killer: see `journalctl -k`" \
            if name == "SIGKILL" else "something on this workstation stopped it; run again"
    elif exitcode == 0:
        how = "exited (code 0) without a result"
        hint = ("a file in the current directory named like a Python module (struct.py, json.py, ...) "
                "may shadow Python's own: run jujubackup from another directory")
    else:
        how = f"exited with code {exitcode} without a result"
        hint = "its error is printed above; re-run with -v and report this as a bug"
    return JujuBackupError(f"the verifying process {how}", hint=hint, exit_code=EXIT_INTERNAL)


class BackgroundVerify:
    """verify_archive(path) running in a child process; use as a context manager."""

    def __init__(self, path: str | os.PathLike[str], *, sha1: bool = True) -> None:
        """Start verifying `path`; `sha1` False skips Juju's SHA-1 (report.digest.sha1_b64 is "")."""
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_end = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_child, args=(os.path.abspath(path), sha1, child_end), daemon=True,
                                 name="jujubackup-verify")
        with _safe_path():
            self._proc.start()
        child_end.close()
        self._report: VerifyReport | None = None

    def done(self) -> bool:
        """Return True once the result is available (without waiting)."""
        return self._report is not None or self._conn.poll()

    def result(self) -> VerifyReport:
        """Wait for and return the report. Raise what verify_archive raised in the child, or
        JujuBackupError (exit 1, how it died and why it may have: `died`) if it never answered."""
        if self._report is None:
            try:
                kind, value = self._conn.recv()
            except EOFError:
                self._proc.join()
                raise died(self._proc.exitcode) from None
            self._proc.join()
            if kind == "error":
                raise value
            self._report = value
        return self._report

    def close(self) -> None:
        """Stop the child if it is still running; release the pipe."""
        if self._proc.is_alive():
            self._proc.terminate()
        self._proc.join()
        self._conn.close()

    def __enter__(self) -> BackgroundVerify:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
