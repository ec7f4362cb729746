"""The lab's release gates refuse what an old release's tool lacks, as that tool refuses it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.lab import release_gates


def _run_gate(tmp_path: Path, gate: release_gates.Gate, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / gate.tool
    script.write_text(release_gates.gate_script(gate))
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        (("--fork", "sleep", "1"), "setsid: unrecognized option '--fork'\n"),
        (("--fork=x", "sleep", "1"), "setsid: unrecognized option '--fork=x'\n"),
        (("-wf", "sleep", "1"), "setsid: invalid option -- 'f'\n"),
    ],
)
def test_the_setsid_gate_refuses_fork_as_getopt_does(
    tmp_path: Path, args: tuple[str, ...], stderr: str
) -> None:
    done = _run_gate(tmp_path, release_gates.SETSID_PRE_2_32, *args)
    assert (done.returncode, done.stderr) == (1, stderr)


def test_a_gate_looks_no_further_than_the_first_operand(tmp_path: Path) -> None:
    """setsid's getopt string starts with "+": `-f` after the command is the command's."""
    done = _run_gate(tmp_path, release_gates.SETSID_PRE_2_32, "sleep", "-f")
    assert "unrecognized" not in done.stderr and "invalid option" not in done.stderr
    assert release_gates.GATE_DIR in done.stderr  # it went on to exec the real tool (absent here)
