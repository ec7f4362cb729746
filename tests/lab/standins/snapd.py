"""Stand-ins for `snap` and `snapctl` (snapd) as far as the juju-db snap and Juju use them, and for
the juju-db snap's daemon command. Test code, never shipped.

The juju-db snap (juju/juju-db-snap, branches 4.0 @c990f2f and 4.4 @b4171cf; snap/snapcraft.yaml
`apps.daemon.command: commands/daemon.start`):
* snap/hooks/install copies $SNAP/default.conf to $SNAP_COMMON/default.config and runs
  `snapctl set configpath=$SNAP_COMMON/default.config`;
* snap/local/commands/daemon.start reads `snapctl get configpath`; a path that is not a file ends
  it with "error: file configpath <path> does not exist." (exit 1), else it execs
  `$SNAP/bin/mongod --config <path>`.
So the daemon runs whatever config `configpath` names, and Juju points it at its own: mongo.EnsureServer
writes <SNAP_COMMON>/juju-db.config, runs `snap set juju-db configpath=<that>` (service/snap/snap.go
SetSnapConfig) and restarts the service (juju/juju mongo/mongo.go ensureServer, 2.9 era:
`service.ManuallyRestart(svc)`; 3.x: `svc.Restart()`), at every machine agent start on a controller
(cmd/jujud/agent/machine.go ensureMongoServer, once per process).

snapd keeps a snap's configuration in its state (/var/lib/snapd/state.json, root only); here one
JSON file a snap under CONFIG_DIR (0600). `snap run <snap>.<app>` runs the app's command with the
snap's environment (SNAP, SNAP_COMMON, SNAP_NAME, SNAP_REVISION); `snap restart|start|stop <snap>`
act on the snap's daemons' systemd units (snap.<snap>.<app>.service), printing what snap prints.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

CONFIG_DIR = "/var/lib/snapd/lab-config"
SNAPS = {"juju-db": {"daemons": ("daemon",), "commands": {"daemon": "commands/daemon.start"}}}
"""The snaps the lab installs: their daemons and their apps' commands (relative to $SNAP)."""
KEY = re.compile(r"^[a-z0-9](?:-?[a-z0-9])*$")  # snapd overlord/configstate/config: a key's parts


def _path(snap: str) -> str:
    return os.path.join(CONFIG_DIR, f"{snap}.json")


def get_config(snap: str) -> dict[str, str]:
    """Return the snap's configuration ({} when none is set)."""
    try:
        with open(_path(snap)) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def set_config(snap: str, values: dict[str, str]) -> None:
    """Merge `values` into the snap's configuration (written 0600, atomically)."""
    data = {**get_config(snap), **values}
    os.makedirs(CONFIG_DIR, mode=0o700, exist_ok=True)
    tmp = _path(snap) + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, _path(snap))


def snap_env(snap: str) -> dict[str, str]:
    """The environment `snap run` gives a snap's app (the revision `current` points at)."""
    revision = os.readlink(f"/snap/{snap}/current")
    return {**os.environ, "SNAP": f"/snap/{snap}/{revision}", "SNAP_COMMON": f"/var/snap/{snap}/common",
            "SNAP_DATA": f"/var/snap/{snap}/{revision}", "SNAP_NAME": snap, "SNAP_REVISION": revision}


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 1


def _pairs(args: list[str], snap: str) -> dict[str, str] | str:
    """Parse `key=value` arguments; return them, or snap's error text."""
    out: dict[str, str] = {}
    for arg in args:
        key, eq, value = arg.partition("=")
        if not eq:
            return f'invalid configuration: "{arg}" (want key=value)'
        if not all(KEY.match(part) for part in key.split(".")):
            return f"cannot set {snap!r} option: invalid option name: {key!r}"
        out[key] = value
    return out


def _get(snap: str, keys: list[str]) -> int:
    config = get_config(snap)
    for key in keys:
        if key not in config:
            return _fail(f'snap "{snap}" has no "{key}" configuration option')
    if len(keys) == 1:
        print(config[keys[0]])
    else:
        print(json.dumps({k: config[k] for k in keys}, indent=1))
    return 0


def snap_main(argv: list[str] | None = None) -> int:
    """`snap set|get|run|restart|start|stop|services`, for the lab's snaps."""
    args = sys.argv[1:] if argv is None else argv
    verb, rest = (args[0], args[1:]) if args else ("", [])
    if verb == "run" and rest:
        snap, _, app = rest[0].partition(".")
        command = SNAPS.get(snap, {}).get("commands", {}).get(app or snap)
        if command is None:
            return _fail(f'snap "{snap}" has no app "{app or snap}"')
        env = snap_env(snap)
        path = os.path.join(env["SNAP"], command)
        os.execve(path, [path, *rest[1:]], env)
    if not rest or rest[0].partition(".")[0] not in SNAPS:
        return _fail(f"snap {rest[0] if rest else ''!r} is not installed" if rest else "unknown command")
    snap, app = rest[0].partition(".")[0], rest[0].partition(".")[2]
    if verb == "set" and os.geteuid() != 0:
        return _fail("access denied (try with sudo)")
    if verb == "set":
        values = _pairs(rest[1:], snap)
        if isinstance(values, str):
            return _fail(values)
        set_config(snap, values)
        return 0
    if verb == "get":
        return _get(snap, rest[1:]) if rest[1:] else _fail("get which option?")
    daemons = [app] if app else list(SNAPS[snap]["daemons"])
    units = [f"snap.{snap}.{d}.service" for d in daemons]
    if verb in ("restart", "start", "stop"):
        r = subprocess.run(["systemctl", verb, *units], capture_output=True, text=True)
        if r.returncode:
            return _fail(f"cannot perform the following tasks:\n- Run service command \"{verb}\" for "
                         f"services {daemons} of snap \"{snap}\" ({r.stderr.strip()})")
        print({"restart": "Restarted.", "start": "Started.", "stop": "Stopped."}[verb])
        return 0
    if verb == "services":
        print("Service  Startup  Current  Notes")
        for d, unit in zip(daemons, units, strict=True):
            enabled = subprocess.run(["systemctl", "is-enabled", unit], capture_output=True, text=True)
            active = subprocess.run(["systemctl", "is-active", unit], capture_output=True, text=True)
            print(f"{snap}.{d}  {enabled.stdout.strip() or 'disabled'}  {active.stdout.strip()}  -")
        return 0
    return _fail(f"unknown command {verb!r}, see 'snap help'")


def snapctl_main(argv: list[str] | None = None) -> int:
    """`snapctl get KEY` / `snapctl set KEY=VALUE` inside a snap's app or hook ($SNAP_NAME)."""
    args = sys.argv[1:] if argv is None else argv
    snap = os.environ.get("SNAP_NAME", "")
    if snap not in SNAPS:
        return _fail("snapctl: cannot use outside of a snap's app or hook")
    if args[:1] == ["get"] and args[1:]:
        config = get_config(snap)
        print(config.get(args[1], "") if len(args) == 2 else json.dumps({k: config.get(k) for k in args[1:]}))
        return 0
    if args[:1] == ["set"]:
        values = _pairs(args[1:], snap)
        if isinstance(values, str):
            return _fail(values)
        set_config(snap, values)
        return 0
    return _fail(f"snapctl: unknown command {' '.join(args)!r}")


def daemon_start_main() -> int:
    """juju-db's commands/daemon.start: run $SNAP/bin/mongod with the config `configpath` names."""
    got = subprocess.run(["snapctl", "get", "configpath"], capture_output=True, text=True)
    config_path = got.stdout.strip()
    if not os.path.isfile(config_path):
        print(f"error: file configpath {config_path} does not exist.")
        return 1
    mongod = os.path.join(os.environ["SNAP"], "bin", "mongod")
    os.execv(mongod, [mongod, "--config", config_path])
    return 1  # not reached
