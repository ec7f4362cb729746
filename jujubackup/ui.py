"""Rich consoles: data on stdout, progress and logs on stderr; tabular|json|yaml rendering."""

from __future__ import annotations

import io
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from jujubackup.settings import OutputFormat


def to_yaml(data: Any) -> str:
    """Given plain data, return it as block-style YAML text."""
    from ruamel.yaml import YAML  # only YAML output needs it: not loaded by every run

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


def to_json(data: Any) -> str:
    """Given plain data, return indented JSON text."""
    return json.dumps(data, indent=2, sort_keys=False, default=str)


@dataclass
class UI:
    """Where output goes. Data -> stdout; progress, logs and errors -> stderr (TTY-aware)."""

    format: OutputFormat = OutputFormat.tabular
    quiet: bool = False
    verbose: bool = False
    out: Console = field(
        default_factory=lambda: Console(file=sys.stdout, no_color=_no_color(), width=_pipe_width())
    )
    err: Console = field(default_factory=lambda: Console(file=sys.stderr, no_color=_no_color()))

    @property
    def interactive(self) -> bool:
        """True when stderr is a terminal and progress bars make sense."""
        return self.err.is_terminal and not self.quiet

    def info(self, message: str) -> None:
        """Log a progress line on stderr unless quiet."""
        if not self.quiet:
            self.err.print(inert(message), highlight=False, markup=False, soft_wrap=True)

    def debug(self, message: str) -> None:
        if self.verbose:
            self.err.print(inert(message), style="dim", highlight=False, markup=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        self.err.print(f"warning: {inert(message)}", style="yellow", highlight=False, markup=False,
                       soft_wrap=True)

    def error(self, message: str, hint: str | None = None) -> None:
        self.err.print(f"error: {inert(message)}", style="bold red", highlight=False, markup=False,
                       soft_wrap=True)
        if hint:
            self.err.print(f"hint: {inert(hint)}", highlight=False, markup=False, soft_wrap=True)

    def data(self, data: Any, *, columns: Sequence[str] | None = None, title: str | None = None) -> None:
        """Print data on stdout in the chosen format.

        For tabular: a list of dicts renders as a table with `columns` (default: keys of the first row);
        a dict renders as key: value lines.
        """
        if self.format is OutputFormat.json:
            sys.stdout.write(to_json(data) + "\n")
        elif self.format is OutputFormat.yaml:
            sys.stdout.write(to_yaml(data))
        elif isinstance(data, list):
            print_table(self.out, render_table(data, columns, title))
        elif isinstance(data, dict):
            width = max((len(str(k)) for k in data), default=0)
            for key, value in data.items():
                label = safe_text(str(key)) + ":"
                self.out.print(f"{label:<{width + 1}} {_flat(value)}", highlight=False, markup=False)
        else:
            self.out.print(safe_text(str(data)), highlight=False, markup=False)

    def line(self, text: str) -> None:
        """Print one plain line on stdout (e.g. a backup ID), control characters escaped (inert)."""
        sys.stdout.write(inert(text) + "\n")
        sys.stdout.flush()

    @contextmanager
    def transfer(self, description: str, total: int | None, completed: int = 0) -> Iterator[Any]:
        """Yield a callable advance(nbytes) that drives a bytes/rate/ETA bar on a TTY (no-op otherwise)."""
        if not self.interactive:
            yield lambda n: None
            return
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.err,
            transient=True,
        )
        with progress:
            task = progress.add_task(description, total=total, completed=completed)
            yield lambda n: progress.advance(task, n)

    @contextmanager
    def counter(self, description: str, total: int) -> Iterator[Any]:
        """Yield a callable advance(n) that drives an items-done bar on a TTY (no-op otherwise)."""
        if not self.interactive or total <= 0:
            yield lambda n: None
            return
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=self.err, transient=True)
        with progress:
            task = progress.add_task(description, total=total)
            yield lambda n: progress.advance(task, n)


WRAPPING_COLUMNS = frozenset({"notes", "reason", "message", "detail"})
"""Table columns of free text, wrapped at spaces on a narrow terminal; every other column is shown
on one line."""


def render_table(rows: list[dict[str, Any]], columns: Sequence[str] | None, title: str | None) -> Table:
    """Given rows of dicts, return a rich Table with the given columns in order."""
    cols = list(columns) if columns else (list(rows[0].keys()) if rows else [])
    table = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for col in cols:
        # only free text wraps; an ID, a time or a size is copied or read whole (print_table never
        # shortens a cell: the table gets as wide as that takes)
        table.add_column(col.upper(), no_wrap=col not in WRAPPING_COLUMNS)
    for row in rows:
        # Text, not str: a str cell is parsed as rich markup ("[/x]" in Notes raised MarkupError)
        table.add_row(*(Text(_flat(row.get(c, ""))) for c in cols))
    return table


def print_table(console: Console, table: Table) -> None:
    """Print `table` on `console`, wider than the console when that is what it takes to show every
    cell whole (the terminal then wraps the lines): rich would otherwise shorten cells with an
    ellipsis, or drop whole columns, to fit a narrow terminal."""
    needed = _min_table_width(table)
    if needed <= console.width:
        console.print(table)
        return
    narrow = console.width
    console.width = needed  # print(width=) is capped at the console's width
    try:
        console.print(table)
    finally:
        console.width = narrow


def _min_table_width(table: Table) -> int:
    """Return the width `table` needs to show every cell whole: a no_wrap column's longest cell, any
    other column's longest word (or header), plus the padding between columns."""
    widths = []
    for column in table.columns:
        texts = [str(column.header), *(str(cell) for cell in column.cells)]
        if column.no_wrap:
            widths.append(max(len(line) for text in texts for line in text.splitlines() or [""]))
        else:
            widths.append(max((len(word) for text in texts for word in text.split()), default=0))
    return sum(widths) + 2 * max(len(widths) - 1, 0)


def _flat(value: Any) -> str:
    """Given a value from data, return it as one safe line of text for tabular output."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(_flat(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{safe_text(str(k))}={_flat(v)}" for k, v in value.items())
    return safe_text(str(value))


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_CONTROL.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
# bidirectional overrides/isolates reorder what the terminal shows (Trojan Source, CVE-2021-42574)
_CONTROL.update({c: f"\\u{c:04x}" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]})


def safe_text(text: str) -> str:
    """Given text that may come from an archive or a host, return it with control characters escaped.

    The one escaping function for untrusted text on a terminal: terminal escapes (ESC, CSI, OSC, C1),
    carriage returns, bidi overrides and newlines in metadata (Notes, Hostname, IDs, stderr tails, …)
    can neither drive the terminal nor forge output lines. Rich markup is not touched here: every
    console print of such text passes markup=False, and table cells are Text (no markup parsing).
    """
    return text.translate(_CONTROL)


def inert(message: str) -> str:
    """Given a message the tool composed (it may embed untrusted text), return it with every line
    passed through safe_text: the tool's own line breaks stay, nothing else can act on the terminal."""
    return "\n".join(safe_text(line) for line in message.split("\n"))


def _pipe_width() -> int | None:
    """Return a width that never truncates data when stdout is not a terminal (None: the terminal's)."""
    return None if sys.stdout.isatty() else 4096


def _no_color() -> bool:
    return "NO_COLOR" in os.environ


@dataclass
class PrefixedUI(UI):
    """A UI for one of several jobs running at once (run: one controller per thread): every log line
    starts with `[prefix] `, and no progress bars are drawn (they would fight over the terminal)."""

    prefix: str = ""

    @classmethod
    def of(cls, ui: UI, prefix: str) -> PrefixedUI:
        """Return a PrefixedUI writing to `ui`'s consoles with its format and verbosity."""
        return cls(format=ui.format, quiet=ui.quiet, verbose=ui.verbose, out=ui.out, err=ui.err,
                   prefix=prefix)

    @property
    def interactive(self) -> bool:
        return False

    def info(self, message: str) -> None:
        super().info(f"[{self.prefix}] {message}")

    def debug(self, message: str) -> None:
        super().debug(f"[{self.prefix}] {message}")

    def warn(self, message: str) -> None:
        super().warn(f"[{self.prefix}] {message}")

    def error(self, message: str, hint: str | None = None) -> None:
        super().error(f"[{self.prefix}] {message}", hint)


def human_bytes(n: int) -> str:
    """Given a byte count, return it with a binary unit (`1.5 GiB`)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def to_the_second(text: str) -> str:
    """Given an RFC 3339 time (`2020-02-25T04:12:41.03876Z`), return it to the second
    (`2020-02-25T04:12:41Z`); other text unchanged."""
    return re.sub(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.\d+(Z|[+-]\d\d:\d\d)$", r"\1\2", text)
