"""Run python-libjuju (tests/libjuju/requirements.txt, in its own venv) against a controller and
print what it sees as one JSON document: {"server_version", "controller_uuid", "models": [names],
"machines": {model: [machine ids]},
"applications": {model: [names]}, "units": {model: [names]}}. Test code, never shipped.

    probe.py --controller NAME                    connect by name alone (JUJU_DATA's files)
    probe.py --endpoint HOST:PORT --cacert FILE --password-file FILE [--user admin]
    --server-prefix 2.8.   accept a 2.8 controller: libjuju 2.9.49.1 (the only 2.x libjuju that runs on
                           Python 3.10+; 2.8.6 passes asyncio `loop=`) refuses any server-version
                           not starting with its SUPPORTED_JUJU_API_PREFIX "2.9." right after a
                           good login (juju/client/connector.py); this replaces that one constant

The password comes from a file (never argv). Exit 0 with the JSON, 1 with libjuju's error on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from juju.controller import Controller


async def probe(args: argparse.Namespace) -> dict:
    if args.server_prefix:
        import juju.client.connector

        juju.client.connector.SUPPORTED_JUJU_API_PREFIX = args.server_prefix
    controller = Controller()
    if args.controller:
        await controller.connect(args.controller)
    else:
        await controller.connect(endpoint=args.endpoint, username=args.user,
                                 password=Path(args.password_file).read_text().strip(),
                                 cacert=Path(args.cacert).read_text())
    try:
        conn = controller.connection()
        out: dict = {"server_version": conn.info["server-version"],
                     "controller_uuid": controller.controller_uuid,
                     "endpoint": conn.endpoint, "models": await controller.list_models(), "machines": {},
                     "applications": {}, "units": {}}
        for name in out["models"]:
            model = await controller.get_model(name)
            try:
                out["machines"][name] = sorted(model.machines, key=lambda m: [int(p) for p in m.split("/")])
                out["applications"][name] = sorted(model.applications)
                out["units"][name] = sorted(model.units)
            finally:
                await model.disconnect()
        return out
    finally:
        await controller.disconnect()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--controller")
    p.add_argument("--endpoint")
    p.add_argument("--cacert")
    p.add_argument("--password-file")
    p.add_argument("--user", default="admin")
    p.add_argument("--server-prefix")
    args = p.parse_args()
    try:
        print(json.dumps(asyncio.run(asyncio.wait_for(probe(args), 120))))
    except Exception as exc:  # libjuju's error is the finding: say it and fail
        print(f"libjuju: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
