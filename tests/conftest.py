"""Shared pytest fixtures: the lab (systemd-nspawn hosts with real systemd + OpenSSH).

    @pytest.mark.lab
    def test_x(lab_factory):            # fresh hosts, torn down after the test (also on failure)
        lab = lab_factory(controllers=1, spares=1, profile="juju-2.9", db_size=0)
        ctl = lab.host("ctl0")          # LabHost: .name .ip .role .machine_id .profile .root .ssh(cmd)

    @pytest.mark.lab
    def test_y(shared_lab):             # session-wide: 1 controller (juju-2.9) + 1 spare; read-only use

Lab tests need root: they fail (never skip) without it. The session clears leftovers of killed runs
before its first lab; labs are torn down by fixture finalizers, and by an atexit hook (SIGTERM is
turned into KeyboardInterrupt so finalizers run) if the session is interrupted.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Protocol

import pytest

from tests.lab import rootfs
from tests.lab.lab import Lab, LabError, sweep_leftovers


class LabFactory(Protocol):
    """Type of the `lab_factory` fixture."""

    def __call__(self, controllers: int = 1, spares: int = 0, profile: str = "juju-2.9",
                 db_size: int | str = 0, machines: int = 0, bootstrapped_spares: int = 0) -> Lab: ...


def _sigterm_to_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def lab_session() -> Iterator[None]:
    """Session prerequisites for lab tests: root, leftovers of killed runs cleared, rootfs ready."""
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces, overlay mounts, systemd-nspawn): "
                    "run `sudo make test`", pytrace=False)
    sweep_leftovers()
    rootfs.ensure_rootfs()
    previous = signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def lab_factory(lab_session: None) -> Iterator[LabFactory]:
    """Return `make(controllers=1, spares=0, profile="juju-2.9", db_size=0, machines=0,
    bootstrapped_spares=0) -> Lab`.

    Every lab it made is torn down after the test, also when the test failed.
    """
    labs: list[Lab] = []

    def make(controllers: int = 1, spares: int = 0, profile: str = "juju-2.9", db_size: int | str = 0,
             machines: int = 0, bootstrapped_spares: int = 0) -> Lab:
        lab = Lab.create(controllers=controllers, spares=spares, profile=profile, db_size=db_size,
                         machines=machines, bootstrapped_spares=bootstrapped_spares)
        labs.append(lab)
        return lab

    yield make
    errors = []
    for lab in labs:
        try:
            lab.teardown()
        except LabError as err:
            errors.append(str(err))
    if errors:
        pytest.fail("lab teardown left things behind: " + "; ".join(errors), pytrace=False)


@pytest.fixture(scope="session")
def shared_lab(lab_session: None) -> Iterator[Lab]:
    """One session-wide lab: ctl0 (juju-2.9 controller, machine 0) + spare0. Do not change its state."""
    lab = Lab.create(controllers=1, spares=1, profile="juju-2.9")
    try:
        yield lab
    finally:
        lab.teardown()


@pytest.fixture(scope="session", autouse=True)
def private_config_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The stamp key (jujubackup/stamp.py) of a test run lives in a throwaway config dir, never in
    the operator's ~/.config; CLI subprocesses inherit it."""
    previous = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config"))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("XDG_CONFIG_HOME", None)
        else:
            os.environ["XDG_CONFIG_HOME"] = previous
