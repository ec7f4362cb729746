"""`python -m tests.lab rootfs | up | down | status` — the lab from the command line (root only).

    up [--controllers N] [--spares M] [--bootstrapped-spares B] [--machines K] [--profile PROFILE]
       [--db-size SIZE] [--name NAME]
        clear leftovers (dead labs and the previous CLI lab NAME), boot, print ONE JSON document
        {"ssh_config", "key", "known_hosts", "juju_data", "hosts": [{"name","ip","role","machine_id",
        "profile","root"}]}; hosts boot0… (role "bootstrapped") are each an empty controller of the
        profile with its own CA, controller UUID, juju-db, jujud (3.x: its own dqlite node), as
        `juju bootstrap` leaves one; juju_data (null without controllers) holds controllers.yaml and
        accounts.yaml (0600) for controller `lab`, user `admin`, as `juju bootstrap` leaves them
        and exit leaving the hosts running.
    down [--name NAME] [--id LABID]   tear down the CLI lab NAME (default "default") or lab LABID.
    status                            print every lab on this machine as JSON.
    rootfs [--rebuild]                build or restore the cached Debian rootfs; print its path.
Exit codes: 0 ok, 1 failure, 2 usage / not root.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from tests.lab import lab as labmod
from tests.lab import oldbash, rootfs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="boot a lab and print its JSON description")
    up.add_argument("--controllers", type=int, default=1)
    up.add_argument("--spares", type=int, default=0)
    up.add_argument("--bootstrapped-spares", type=int, default=0,
                    help="freshly bootstrapped controllers boot0.. (own CA and UUID, controller model only)")
    up.add_argument("--machines", type=int, default=0, help="workload machines m0.. running Juju agents")
    up.add_argument("--profile", choices=labmod.PROFILES, default="juju-2.9")
    up.add_argument("--db-size", default="0", help="seed data size, e.g. 0, 512MiB, 1GiB")
    up.add_argument("--name", default="default", help="CLI lab name (one lab per name)")
    down = sub.add_parser("down", help="tear down a CLI lab")
    down.add_argument("--name", default="default")
    down.add_argument("--id", dest="lab_id", help="tear down this lab id instead (any kind)")
    sub.add_parser("status", help="list labs on this machine as JSON")
    rf = sub.add_parser("rootfs", help="build or restore the cached rootfs")
    rf.add_argument("--rebuild", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the lab CLI; return the exit code."""
    args = _parser().parse_args(argv)
    if os.geteuid() != 0:
        print("tests.lab: must run as root (network namespaces, overlay mounts, systemd-nspawn); "
              "use sudo", file=sys.stderr)
        return 2
    try:
        labmod.parse_size(getattr(args, "db_size", "0"))
        counts = (args.controllers, args.spares, args.bootstrapped_spares) if args.cmd == "up" else (1, 0)
        if min(counts) < 0 or sum(counts) == 0:
            raise ValueError("--controllers, --spares and --bootstrapped-spares must be >= 0 and make at "
                             "least one host")
    except ValueError as err:
        print(f"tests.lab: {err}", file=sys.stderr)
        return 2
    try:
        if args.cmd == "rootfs":
            print(rootfs.ensure_rootfs(rebuild=args.rebuild))
            for profile in oldbash.SOURCES:  # built here once, not in the first lab of a test run
                oldbash.binary_for(profile)
        elif args.cmd == "up":
            t0 = time.monotonic()
            lab = labmod.Lab.create(controllers=args.controllers, spares=args.spares, profile=args.profile,
                                    db_size=args.db_size, cli_name=args.name, machines=args.machines,
                                    bootstrapped_spares=args.bootstrapped_spares)
            lab.detach()
            phases = ", ".join(f"{k} {v:.2f} s" for k, v in lab.timings.items())
            labmod.log(f"lab {lab.id} ({args.name}) ready in {time.monotonic() - t0:.1f} s ({phases})")
            if lab.controllers:
                labmod.log(f"Juju client data for controller 'lab' (user admin): JUJU_DATA={lab.juju_data}")
            print(json.dumps(lab.describe(), indent=2))
        elif args.cmd == "down":
            target = labmod.Lab.find_cli(args.name) if not args.lab_id else None
            cleared = labmod.sweep_leftovers(cli_name=None if args.lab_id else args.name)
            if args.lab_id and args.lab_id not in cleared:
                labmod.Lab.load(args.lab_id).teardown()
                cleared.append(args.lab_id)
            if target is None and not args.lab_id:
                labmod.log(f"no CLI lab named {args.name!r} was running")
            for lab_id in cleared:
                labmod.log(f"removed lab {lab_id}")
        elif args.cmd == "status":
            print(json.dumps(labmod.lab_status(), indent=2))
    except (labmod.LabError, RuntimeError) as err:
        print(f"tests.lab: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
