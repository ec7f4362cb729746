"""Stand-in for a Juju workload agent (jujud 2.9.42 / 2.8.10 on a machine without JobManageModel):
the machine agent `jujud machine --machine-id K` and, on 2.9, the unit agents it runs inside itself
(the deployer's nested unit agents, one per /var/lib/juju/agents/unit-* dir); on 2.8 each unit agent
is its own service `jujud unit --unit-name A/N`. Test code, never shipped.

What each agent does, as Juju's api-caller does (worker/apicaller/connect.go, api/apiclient.go):
  * reads its agent.conf ONCE at start (a changed file takes effect only after a restart, as for
    the real agent, which writes apiaddresses itself but reads them at start);
  * dials its `apiaddresses` in order, the first that answers wins (api/apiclient.go dialAll);
  * logs in with `apipassword` (and the machine's nonce) through api.py's websocket JSON-RPC;
  * logs `[<model[:6]>] "<tag>" successfully connected to "<host:port>"` at INFO (connect.go:163)
    or the failure at ERROR, and retries every second while it fails;
  * while connected, calls Pinger.Ping every 2 s and reconnects when the connection drops.
Its state goes to /var/lib/juju-lab/agents/<tag>.json for tests: {"tag", "state": "connected" |
"failing", "address", "error", "pid", "updated"} (the lab's window on the agent; not Juju's).
"""

from __future__ import annotations

import datetime
import json
import os
import threading
import time
from typing import Any

from . import api

STATUS_DIR = "/var/lib/juju-lab/agents"


class Agent:
    """One workload agent (machine-K or unit-A-N) talking to the API."""

    def __init__(self, data_dir: str, tag: str, parse: Any) -> None:
        self.tag = tag
        path = os.path.join(data_dir, "agents", tag, "agent.conf")
        with open(path) as f:
            self.conf = parse(f.read())
        self.log_path = os.path.join(self.conf.get("logdir", "/var/log/juju"), f"{tag}.log")
        self.model = str(self.conf.get("model", "")).removeprefix("model-")

    def log(self, level: str, module: str, msg: str) -> None:
        ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        with open(self.log_path, "a") as f:
            f.write(f"{ts} {level} {module} {msg}\n")

    def status(self, state: str, address: str = "", error: str = "") -> None:
        os.makedirs(STATUS_DIR, exist_ok=True)
        doc = {"tag": self.tag, "state": state, "address": address, "error": error, "pid": os.getpid(),
               "updated": time.time()}
        tmp = os.path.join(STATUS_DIR, f".{self.tag}.tmp")
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, os.path.join(STATUS_DIR, f"{self.tag}.json"))

    def connect_once(self) -> tuple[Any, str]:
        """Dial the addresses in order and log in; return (socket, address). Raise Exception with
        the last reason when none works."""
        addresses = self.conf.get("apiaddresses") or []
        if not isinstance(addresses, list) or not addresses:
            raise api.LoginError("no API addresses to connect to")
        last: Exception = api.LoginError("no API addresses to connect to")
        for address in addresses:
            try:
                sock = api.dial(address, self.conf.get("cacert", ""), self.model)
            except (OSError, api.WSClosed) as exc:
                last = OSError(f"dial tcp {address}: {exc}")
                continue
            try:
                params = {"auth-tag": self.tag, "credentials": self.conf.get("apipassword", ""),
                          "nonce": self.conf.get("nonce", "")}
                api.call(sock, 1, "Admin", 3, "Login", params)
            except BaseException:
                sock.close()
                raise
            return sock, address
        raise last

    def run(self) -> None:
        """Connect, keep the connection, reconnect when it drops; never returns."""
        short = self.model[:6]
        while True:
            try:
                sock, address = self.connect_once()
            except (OSError, api.WSClosed, api.LoginError, ValueError) as exc:
                self.log("ERROR", "juju.worker.apicaller",
                         f"connect.go:105 [{short}] failed to connect: {exc}")
                self.status("failing", error=str(exc))
                time.sleep(1)
                continue
            self.log("INFO", "juju.worker.apicaller",
                     f'connect.go:163 [{short}] "{self.tag}" successfully connected to "{address}"')
            self.status("connected", address=address)
            rid = 2
            try:
                while True:
                    time.sleep(2)
                    api.call(sock, rid, "Pinger", 1, "Ping", {})
                    rid += 1
            except (OSError, api.WSClosed, api.LoginError, ValueError) as exc:
                self.log("ERROR", "juju.worker.dependency",
                         f'"api-caller" manifold worker returned unexpected error: connection to {address} '
                         f"lost: {exc}")
                self.status("failing", error=f"connection to {address} lost: {exc}")
            finally:
                sock.close()


def run_machine(data_dir: str, mid: str, parse: Any, version: str) -> int:
    """Run workload machine agent machine-<mid> and, from 2.9 on (`version` like 2.9.42-focal-amd64),
    the unit agents of the machine inside it. Never returns while it works."""
    agents = [Agent(data_dir, f"machine-{mid}", parse)]
    if not version.startswith(("2.8.", "2.7.")):
        for name in sorted(os.listdir(os.path.join(data_dir, "agents"))):
            if name.startswith("unit-"):
                agents.append(Agent(data_dir, name, parse))
    for a in agents[1:]:
        threading.Thread(target=a.run, daemon=True).start()
    agents[0].run()
    return 1


def run_unit(data_dir: str, unit_name: str, parse: Any) -> int:
    """Run unit agent `unit-<app>-<n>` (2.8: its own jujud-unit-* service). Never returns."""
    app, _, num = unit_name.partition("/")
    Agent(data_dir, f"unit-{app}-{num}", parse).run()
    return 1
