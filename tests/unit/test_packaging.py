"""The wheel is self-contained: installed into a fresh venv it runs from anywhere and carries its data."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA_DIRS = ("remote_scripts", "templates")


def _source_data_files() -> dict[str, set[str]]:
    """Return, per data dir, the files the source tree has (what the wheel must carry)."""
    return {d: _files(REPO / "jujubackup" / d) for d in DATA_DIRS}


def _files(top: Path) -> set[str]:
    """Return the relative paths of the regular files below `top` (no caches, no dotfiles)."""
    return {p.relative_to(top).as_posix() for p in top.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")}


def _package_dir(venv: Path, cwd: Path) -> Path:
    """Return the directory `import jujubackup` resolves to with the venv's python, run from `cwd`."""
    out = subprocess.run([str(venv / "bin/python"), "-c", "import jujubackup; print(jujubackup.__file__)"],
                         cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    return Path(out).parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build a wheel from a copy of the source, install it into a fresh venv; return the venv dir.

    The venv gets no dependencies of its own: a .pth makes the project venv's site-packages visible
    (after the venv's own), so only the wheel's files decide what `jujubackup` is.
    """
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "jujubackup", src / "jujubackup", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)],
                   check=True, timeout=600)
    (wheel,) = wheels.glob("jujubackup-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, timeout=600)
    site = Path(subprocess.run([str(venv / "bin/python"), "-c",
                                "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "zz_project_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv


def test_console_script_runs_from_another_directory(installed: Path, tmp_path: Path) -> None:
    res = subprocess.run([str(installed / "bin/jujubackup"), "--help"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Usage" in res.stdout and "jujubackup" in res.stdout
    assert _package_dir(installed, tmp_path).is_relative_to(installed)


def test_installed_package_carries_remote_scripts_and_templates(installed: Path, tmp_path: Path) -> None:
    pkg = _package_dir(installed, tmp_path)
    expected = _source_data_files()
    for d in DATA_DIRS:
        assert expected[d], f"jujubackup/{d}/ in the source tree has no files"
        shipped = _files(pkg / d)
        assert shipped >= expected[d], f"missing from the wheel: {sorted(expected[d] - shipped)}"


def test_the_license_is_an_spdx_expression(installed: Path, tmp_path: Path) -> None:
    """project.license is an SPDX string (PEP 639): the wheel says License-Expression."""
    meta = subprocess.run([str(installed / "bin/python"), "-c",
                           "from importlib.metadata import metadata; print(metadata('jujubackup'))"],
                          cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert "License-Expression: AGPL-3.0-or-later" in meta.splitlines()


RENDER_CHILD = """
import json, pickle, sys
from pathlib import Path
import jujubackup, jujubackup.scripts as scripts
cases, out = pickle.load(sys.stdin.buffer), Path(sys.argv[1])
for n, (name, values) in enumerate(cases):
    (out / f"{n:03d}-{name}.sh").write_text(scripts.render(name, **values))
print(json.dumps({"package": jujubackup.__file__, "names": sorted(scripts.template_names())}))
"""


def test_the_installed_wheel_renders_every_template_shellcheck_clean(installed: Path, tmp_path: Path) -> None:
    """Every remote script rendered by the wheel's own package (not the source tree) with the unit
    tests' sample values, each shellcheck clean."""
    import json
    import pickle

    from tests.unit.test_scripts import _cases

    cases = _cases()
    out = tmp_path / "rendered"
    out.mkdir()
    done = subprocess.run([str(installed / "bin/python"), "-c", RENDER_CHILD, str(out)], cwd=tmp_path,
                          input=pickle.dumps(cases), capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    assert Path(report["package"]).is_relative_to(installed)
    assert set(report["names"]) == {name for name, _ in cases}
    rendered = sorted(out.glob("*.sh"))
    assert len(rendered) == len(cases)
    checked = subprocess.run(["shellcheck", "-s", "bash", *map(str, rendered)], capture_output=True,
                             text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
