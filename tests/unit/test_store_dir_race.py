"""Two controllers of one `run` copying into the same new local store: the loser of the mkdir race
goes on (the CI saw 'cannot create …/store: File exists', exit 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jujubackup.errors import JujuBackupError
from jujubackup.local_archives import prepare_directory


def test_a_directory_made_by_another_copy_meanwhile_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    real_mkdir = Path.mkdir

    def racing_mkdir(self: Path, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        real_mkdir(self, mode=mode, parents=parents, exist_ok=True)  # the other controller won
        raise FileExistsError(17, "File exists", str(self))

    monkeypatch.setattr(Path, "mkdir", racing_mkdir)
    prepare_directory(store)
    assert store.is_dir()


def test_a_file_made_meanwhile_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"

    def racing_mkdir(self: Path, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        self.write_text("not a dir")
        raise FileExistsError(17, "File exists", str(self))

    monkeypatch.setattr(Path, "mkdir", racing_mkdir)
    with pytest.raises(JujuBackupError) as err:
        prepare_directory(store)
    assert err.value.exit_code == 2 and "not a directory" in err.value.message
