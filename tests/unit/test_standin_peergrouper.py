"""The jujud stand-in's peergrouper computes the peer group as Juju's worker/peergrouper desired.go
does (tests/lab/standins/peergrouper.py): the cases a restore can leave behind."""

from __future__ import annotations

from typing import Any

import pytest

from tests.lab.standins import peergrouper as pg

PORT = 37017


def ctl(cid: str, ip: str, wants: bool = True, has: bool = True) -> pg.Controller:
    return pg.Controller(cid, wants, has, ((ip, "local-cloud"), ("127.0.0.1", "local-machine")))


def member(mid: int, cid: str, ip: str, votes: int | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {"_id": mid, "host": f"{ip}:{PORT}", "tags": {pg.JUJU_MACHINE_KEY: cid}}
    if votes is not None:
        m["votes"], m["priority"] = votes, float(votes)
    return m


def test_a_restored_sole_controller_is_left_alone() -> None:
    d = pg.desired_peer_group({"3": ctl("3", "10.0.0.9")}, [member(1, "3", "10.0.0.9")],
                              {1: (True, pg.PRIMARY)}, PORT)
    assert not d.is_changed and d.voting == {"3": True}


def test_dead_old_controllers_only_in_controller_ids_become_non_voting_members() -> None:
    controllers = {"0": ctl("0", "10.0.0.9"), "1": ctl("1", "10.0.0.1"), "2": ctl("2", "10.0.0.2")}
    d = pg.desired_peer_group(controllers, [member(1, "0", "10.0.0.9")], {1: (True, pg.PRIMARY)}, PORT)
    assert d.is_changed and d.voting == {"0": True, "1": False, "2": False}
    assert d.members["1"] == {"_id": 2, "host": f"10.0.0.1:{PORT}", "tags": {pg.JUJU_MACHINE_KEY: "1"},
                              "votes": 0, "priority": 0.0}
    assert d.members["2"]["_id"] == 3 and not pg.is_voting(d.members["2"])


def test_dead_old_controllers_that_are_voting_members_keep_their_votes() -> None:
    controllers = {"0": ctl("0", "10.0.0.9"), "1": ctl("1", "10.0.0.1"), "2": ctl("2", "10.0.0.2")}
    members = [member(1, "0", "10.0.0.9"), member(2, "1", "10.0.0.1"), member(3, "2", "10.0.0.2")]
    d = pg.desired_peer_group(controllers, members, {1: (True, pg.SECONDARY), 2: (False, 8), 3: (False, 8)},
                              PORT)
    assert d.voting == {"0": True, "1": True, "2": True} and not d.is_changed


def test_a_member_no_controller_owns_that_votes_is_an_error() -> None:
    with pytest.raises(pg.PeerGroupError, match="voting non-machine member"):
        pg.desired_peer_group({"1": ctl("1", "10.0.0.1")}, [member(1, "0", "10.0.0.9")],
                              {1: (True, pg.PRIMARY)}, PORT)


def test_a_non_voting_stranger_is_dropped() -> None:
    d = pg.desired_peer_group({"0": ctl("0", "10.0.0.9")},
                              [member(1, "0", "10.0.0.9"), member(2, "5", "10.0.0.5", votes=0)],
                              {1: (True, pg.PRIMARY)}, PORT)
    assert d.is_changed and list(d.members) == ["0"]


def test_a_controller_that_does_not_want_the_vote_loses_it_unless_it_is_the_last_primary() -> None:
    alone = pg.desired_peer_group({"0": ctl("0", "10.0.0.9", wants=False)}, [member(1, "0", "10.0.0.9")],
                                  {1: (True, pg.PRIMARY)}, PORT)
    assert alone.voting == {"0": True} and not alone.step_down_primary
    three = {"0": ctl("0", "10.0.0.9"), "1": ctl("1", "10.0.0.1"), "2": ctl("2", "10.0.0.2", wants=False)}
    members = [member(1, "0", "10.0.0.9"), member(2, "1", "10.0.0.1"), member(3, "2", "10.0.0.2")]
    d = pg.desired_peer_group(three, members, {1: (True, pg.PRIMARY), 2: (True, 2), 3: (True, 2)}, PORT)
    # removing 2 leaves two voters: the odd-number rule takes the vote of non-primary 1 as well
    assert d.voting == {"0": True, "1": False, "2": False}


def test_the_member_address_follows_the_machine_addresses() -> None:
    d = pg.desired_peer_group({"0": ctl("0", "10.0.0.50")}, [member(1, "0", "10.0.0.9")],
                              {1: (True, pg.PRIMARY)}, PORT)
    assert d.is_changed and d.members["0"]["host"] == f"10.0.0.50:{PORT}"


def test_two_cloud_local_addresses_without_the_members_one_need_an_ha_space() -> None:
    two = pg.Controller("0", True, True, (("10.0.0.50", "local-cloud"), ("10.0.0.51", "local-cloud")))
    with pytest.raises(pg.PeerGroupError, match="juju-ha-space is not set"):
        pg.desired_peer_group({"0": two}, [member(1, "0", "10.0.0.9")], {1: (True, pg.PRIMARY)}, PORT)
    kept = pg.Controller("0", True, True, (("10.0.0.9", "local-cloud"), ("10.0.0.51", "local-cloud")))
    assert not pg.desired_peer_group({"0": kept}, [member(1, "0", "10.0.0.9")], {1: (True, pg.PRIMARY)},
                                     PORT).is_changed
