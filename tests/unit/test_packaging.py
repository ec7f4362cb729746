"""The package is self-contained: built as an sdist, then a wheel from it, or installed editable, into a
fresh venv it runs from anywhere and carries its data (the top-level remote_scripts/ and templates/)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# remote_scripts/ and templates/ sit at the repository's top level; setup.py maps them into the package
DATA_DIRS = ("remote_scripts", "templates")
SOURCE_FILES = ("pyproject.toml", "setup.py", "README.md", "LICENSE")
SOURCE_DIRS = ("jujubackup", *DATA_DIRS)


@dataclass(frozen=True)
class Installed:
    """One way of installing the project into a fresh venv.

    kind: "sdist" (an sdist built from a copy of the source, a wheel built from that sdist, the wheel
    installed: what `python -m build` and pip do) or "editable" (`pip install -e` of the copy).
    home: where `jujubackup` and its data must resolve (the venv, or the copy for an editable install).
    """

    kind: str
    venv: Path
    home: Path
    sdist_members: frozenset[str] = frozenset()


def _source_data_files() -> dict[str, set[str]]:
    """Return, per data dir, the files the source tree has (what every install must carry)."""
    return {d: _files(REPO / d) for d in DATA_DIRS}


def _files(top: Path) -> set[str]:
    """Return the relative paths of the regular files below `top` (no caches, no dotfiles)."""
    return {p.relative_to(top).as_posix() for p in top.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")}


def _package_dir(venv: Path, cwd: Path) -> Path:
    """Return the directory `import jujubackup` resolves to with the venv's python, run from `cwd`."""
    out = subprocess.run([str(venv / "bin/python"), "-c", "import jujubackup; print(jujubackup.__file__)"],
                         cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    return Path(out).parent


def _copy_source(dest: Path) -> Path:
    """Copy what a build needs from the repository into `dest` (no caches, no .venv); return `dest`."""
    dest.mkdir()
    for name in SOURCE_FILES:
        if (REPO / name).exists():
            shutil.copy2(REPO / name, dest / name)
    for name in SOURCE_DIRS:
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _fresh_venv(venv: Path) -> Path:
    """Make an empty venv at `venv`; return its site-packages.

    The venv gets no dependencies of its own: a .pth makes the project venv's site-packages visible
    (after the venv's own), so only what is installed into it decides what `jujubackup` is.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([str(venv / "bin/python"), "-c",
                                "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "zz_project_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return site


def _pip_install(venv: Path, *args: str) -> None:
    """Install into `venv` with the project venv's pip (no dependencies)."""
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "-q",
                    "--no-deps", *args], check=True, timeout=600)


@pytest.fixture(scope="module", params=["sdist", "editable"])
def installed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Install a copy of the source into a fresh venv, one way per param (see Installed)."""
    tmp = tmp_path_factory.mktemp(f"packaging-{request.param}")
    src = _copy_source(tmp / "src")
    venv = tmp / "venv"
    _fresh_venv(venv)
    if request.param == "editable":
        _pip_install(venv, "-e", str(src))
        return Installed("editable", venv, src)
    dist = tmp / "dist"
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(dist), str(src)],
                   check=True, timeout=600, capture_output=True)
    (sdist,) = dist.glob("jujubackup-*.tar.gz")
    with tarfile.open(sdist) as tar:
        members = frozenset(m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(sdist)],
                   check=True, timeout=600)
    (wheel,) = dist.glob("jujubackup-*.whl")
    _pip_install(venv, str(wheel))
    return Installed("sdist", venv, venv, members)


def test_console_script_runs_from_another_directory(installed: Installed, tmp_path: Path) -> None:
    res = subprocess.run([str(installed.venv / "bin/jujubackup"), "--help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Usage" in res.stdout and "jujubackup" in res.stdout
    assert _package_dir(installed.venv, tmp_path).is_relative_to(installed.home)


@pytest.mark.parametrize("installed", ["sdist"], indirect=True)
def test_the_sdist_carries_the_top_level_data_dirs(installed: Installed) -> None:
    expected = {f"{d}/{f}" for d, files in _source_data_files().items() for f in files}
    assert expected <= installed.sdist_members, sorted(expected - installed.sdist_members)
    assert "setup.py" in installed.sdist_members


DATA_CHILD = """
import json, sys
from importlib import resources
def walk(t, pre=""):
    for c in t.iterdir():
        if c.name == "__pycache__" or c.name.startswith("."):
            continue
        yield from walk(c, pre + c.name + "/") if c.is_dir() else [pre + c.name]
out = {}
for d in sys.argv[1:]:
    t = resources.files("jujubackup." + d)
    out[d] = {"where": str(t), "files": sorted(walk(t))}
print(json.dumps(out))
"""


def test_installed_package_carries_remote_scripts_and_templates(installed: Installed, tmp_path: Path) -> None:
    """importlib.resources (what jujubackup/scripts.py uses) finds every data file of the source tree,
    inside the install's home, run from another directory."""
    done = subprocess.run([str(installed.venv / "bin/python"), "-c", DATA_CHILD, *DATA_DIRS], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    expected = _source_data_files()
    for d in DATA_DIRS:
        assert expected[d], f"{d}/ in the source tree has no files"
        assert Path(found[d]["where"]).is_relative_to(installed.home), found[d]["where"]
        shipped = set(found[d]["files"])
        missing = sorted(expected[d] - shipped)
        assert not missing, f"missing from the {installed.kind} install: {missing}"


def test_the_license_is_an_spdx_expression(installed: Installed, tmp_path: Path) -> None:
    """project.license is an SPDX string (PEP 639): the metadata says License-Expression."""
    meta = subprocess.run([str(installed.venv / "bin/python"), "-c",
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


def test_the_installed_package_renders_every_template_shellcheck_clean(installed: Installed,
                                                                        tmp_path: Path) -> None:
    """Every remote script rendered by the installed package (the wheel built from the sdist, or the
    editable install of a copy; not this source tree) with the unit tests' sample values, each
    shellcheck clean."""
    import pickle

    from tests.unit.test_scripts import _cases

    cases = _cases()
    out = tmp_path / "rendered"
    out.mkdir()
    done = subprocess.run([str(installed.venv / "bin/python"), "-c", RENDER_CHILD, str(out)], cwd=tmp_path,
                          input=pickle.dumps(cases), capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    assert Path(report["package"]).is_relative_to(installed.home)
    assert set(report["names"]) == {name for name, _ in cases}
    rendered = sorted(out.glob("*.sh"))
    assert len(rendered) == len(cases)
    checked = subprocess.run(["shellcheck", "-s", "bash", *map(str, rendered)], capture_output=True,
                             text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
