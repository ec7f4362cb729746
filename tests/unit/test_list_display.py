"""How `list` shows a table on a narrow terminal: the ID whole and on one line (the one value an
operator copies), other columns wrap; sizes with a unit and times to the second in tables only."""

from __future__ import annotations

import io

from rich.console import Console

from jujubackup.cli.list_backups import shown
from jujubackup.ui import print_table, render_table, to_the_second

ID = "20200225-041241.e2a6a1e5-abea-4393-8593-5a45ae53ab97"


def test_a_narrow_terminal_never_shortens_or_wraps_the_id() -> None:
    row = shown({"id": ID, "started": "2020-02-25T04:12:41.03876Z", "size": 16160, "mode": "online",
                 "machine": "0", "version": "2.9.42", "notes": "before the upgrade to 3.1 " * 3})
    buf = io.StringIO()
    print_table(Console(file=buf, width=60), render_table([row], None, None))
    lines = buf.getvalue().splitlines()
    assert ID in lines[1], buf.getvalue()
    assert all(word in buf.getvalue() for word in ("15.8 KiB", "2020-02-25T04:12:41Z", "online", "2.9.42"))


def test_shown_keeps_what_is_not_a_size_or_time() -> None:
    assert shown({"id": ID, "size": "?", "started": ""}) == {"id": ID, "size": "?", "started": ""}
    assert to_the_second("2020-02-25T04:12:41Z") == "2020-02-25T04:12:41Z"
    assert to_the_second("2020-02-25T04:12:41.5+02:00") == "2020-02-25T04:12:41+02:00"
    assert to_the_second("not a time") == "not a time"
