"""Untrusted text (archive or controller data) on the terminal is inert (issue 11): one escaping
function (ui.safe_text) for every output path; rich markup neither crashes nor styles; `list
--local` survives bad sidecars and archives, and `--check` exits 8 when one fails."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from jujubackup import cli
from jujubackup.errors import EXIT_VERIFY
from jujubackup.ui import UI, inert, safe_text
from tests.unit.archive_builders import VALID

HOSTILE = "[/nope] [bold red]loud[/bold red] \x1b]0;owned\x07\x1b[2J\r\u202e"


def terminal_ui() -> tuple[UI, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    ui = UI(out=Console(file=out, force_terminal=True, width=300, color_system="standard"),
            err=Console(file=err, force_terminal=True, width=300, color_system="standard"))
    return ui, out, err


def test_safe_text_neutralises_escapes_newlines_and_bidi() -> None:
    shown = safe_text(HOSTILE + "\nforged line")
    assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown and "\n" not in shown
    assert "\u202e" not in shown and "\\x1b]0;owned\\x07" in shown and "\\n" in shown
    assert inert("mine\nyours\x1b[2J") == "mine\nyours\\x1b[2J"


def test_rich_markup_in_a_table_cell_neither_crashes_nor_styles() -> None:
    ui, out, _ = terminal_ui()
    ui.data([{"id": "x", "notes": HOSTILE}], columns=["id", "notes"])
    text = out.getvalue()
    assert "[/nope] [bold red]loud[/bold red] \\x1b]0;owned\\x07\\x1b[2J\\r\\u202e" in text
    assert "\x1b]0" not in text and "\x1b[2J" not in text
    cell_line = text.splitlines()[1]
    assert "\x1b[31m" not in cell_line and "\x1b[1m" not in cell_line  # no style from the text


def test_messages_and_lines_are_inert(capsys: pytest.CaptureFixture[str]) -> None:
    ui, _, err = terminal_ui()
    ui.info(f"info {HOSTILE}")
    ui.warn(f"warn {HOSTILE}")
    ui.error(f"error {HOSTILE}", hint=f"hint {HOSTILE}")
    ui.line(f"line {HOSTILE}")
    for text in (err.getvalue(), capsys.readouterr().out):
        assert "\x1b]0" not in text and "\x1b[2J" not in text and "\x07" not in text and "\u202e" not in text
        assert "[/nope]" in text


def _archive_with_sidecar(directory: Path, name: str, sidecar: str | None) -> Path:
    path = directory / f"{name}.tar.gz"
    shutil.copyfile(VALID, path)
    if sidecar is not None:
        (directory / f"{name}.json").write_text(sidecar)
    return path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_local_survives_bad_sidecars_and_shows_their_text_inert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _archive_with_sidecar(tmp_path, "plain", None)
    _archive_with_sidecar(tmp_path, "not-json", "{")
    _archive_with_sidecar(tmp_path, "local-block", json.dumps({"ID": "", "local": "x"}))
    _archive_with_sidecar(tmp_path, "huge", '{"Size": 1e999}')
    _archive_with_sidecar(tmp_path, "big", json.dumps({"size": "big"}))
    _archive_with_sidecar(tmp_path, "markup", json.dumps({"Notes": HOSTILE}))
    (tmp_path / "garbage.tar.gz").write_bytes(b"not gzip at all")
    code, out, err = run(["list", "--local", str(tmp_path)], capsys)
    assert code == 0, err
    for name in ("plain", "not-json", "local-block", "huge", "big", "markup", "garbage"):
        assert f"{name}.tar.gz" in out
    for name in ("not-json", "local-block", "huge", "big"):
        assert f"warning: {name}.tar.gz: {name}.json is" in err
    assert "[/nope] [bold red]loud[/bold red]" in out and "\x1b" not in out

    code, out, err = run(["list", "--local", str(tmp_path), "--brief"], capsys)
    assert code == 0, err


def test_list_local_check_exits_8_when_an_archive_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _archive_with_sidecar(tmp_path, "good", None)
    code, _, err = run(["list", "--local", str(tmp_path), "--check"], capsys)
    assert code == 0, err
    data = bytearray(VALID.read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / "bad.tar.gz").write_bytes(bytes(data))
    code, out, err = run(["list", "--local", str(tmp_path), "--check"], capsys)
    assert code == EXIT_VERIFY, err
    assert "1 of 2 archives" in err and "good.tar.gz" in out and "bad.tar.gz" in out
