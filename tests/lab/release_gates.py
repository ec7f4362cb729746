"""Options the lab's Debian rootfs (bookworm) has and the Ubuntu release of a profile does not: on
that profile's hosts the tool is a gate that refuses them as the release's tool does, then runs the
real one (moved to GATE_DIR).

- setsid `-f/--fork`: util-linux 2.32 (v2.32-ReleaseNotes "setsid: new option --fork"; from then
  sys-utils/setsid.c's getopt string is "+Vhcfw"; v2.27.1, xenial's, and v2.31, bionic's, have
  "+Vhcw"). glibc's getopt prints the refusal, setsid's usage(stderr) exits 1.
- systemd-run `--collect/-G`: systemd 236 (NEWS "CHANGES WITH 236": CollectMode=, "systemd-run and
  systemd-mount expose this new functionality with a new -G option"); xenial runs systemd 229.
  The gate prints getopt's refusal and exits 1; the exact exit code of 229's systemd-run was not
  checked against its source, and any nonzero code is what the product must handle.

Long options are refused as glibc's getopt_long prints them: the whole argument (`--fork=x` too).
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

GATE_DIR = "/usr/lib/jujubackup-lab/real"


@dataclass(frozen=True)
class Gate:
    tool: str  # the command's name in /usr/bin
    longs: tuple[str, ...]  # refused long options (without "--")
    shorts: str  # refused short option letters
    source: str  # the release's version, for the gate's comment


SETSID_PRE_2_32 = Gate("setsid", ("fork",), "f", "util-linux < 2.32 setsid.c")
SYSTEMD_RUN_229 = Gate("systemd-run", ("collect",), "G", "systemd < 236, NEWS 236: --collect/-G")

GATES: dict[str, tuple[Gate, ...]] = {
    "juju-2.8": (SETSID_PRE_2_32, SYSTEMD_RUN_229),  # xenial: util-linux 2.27.1, systemd 229
    "juju-2.8-bionic": (SETSID_PRE_2_32,),  # bionic: util-linux 2.31.1, systemd 237
}


def gate_script(gate: Gate) -> str:
    """Return the bash gate for `gate`: it refuses the gate's options among the leading options (the
    tools' getopt strings start with "+": options end at the first operand) and execs the real tool.
    It runs under the host's bash (4.3 on xenial)."""
    real = f"{GATE_DIR}/{gate.tool}"
    longs = "|".join(f"--{name}|--{name}=*" for name in gate.longs)
    return f"""#!/bin/bash
# Lab gate ({gate.source}; tests/lab/release_gates.py): refuses what this release's {gate.tool} lacks.
for a in "$@"; do
  case $a in
    --) break ;;
    {longs})
      printf "{gate.tool}: unrecognized option '%s'\\n" "$a" >&2
      exit 1 ;;
    --*) ;;
    -?*)
      rest=${{a#-}}
      while [[ -n $rest ]]; do
        case ${{rest:0:1}} in
          [{gate.shorts}])
            printf "{gate.tool}: invalid option -- '%s'\\n" "${{rest:0:1}}" >&2
            exit 1 ;;
        esac
        rest=${{rest:1}}
      done ;;
    *) break ;;
  esac
done
exec {shlex.quote(real)} "$@"
"""


def install(root: Path, profile: str) -> None:
    """Given a host's root dir and its profile, put the profile's gates in front of its tools (no-op
    for a profile without gates)."""
    for gate in GATES.get(profile, ()):
        tool = Path(root) / "usr/bin" / gate.tool
        if not tool.is_file():  # a bare tree (tests/host): no tool, nothing to gate
            continue
        real = Path(root) / GATE_DIR.lstrip("/") / gate.tool
        real.parent.mkdir(parents=True, exist_ok=True)
        if not real.exists():
            shutil.copy2(tool, real)
        tmp = tool.with_name(f".{gate.tool}.jujubackup-lab")
        tmp.write_text(gate_script(gate))
        tmp.chmod(0o755)
        tmp.rename(tool)
