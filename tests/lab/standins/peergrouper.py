"""The peergrouper of the jujud stand-in: the mongo replica set and the controllerNodes votes kept in
step with the controllers the database names, as Juju's worker/peergrouper does. Test code.

Imitates juju/juju worker/peergrouper/worker.go (updateControllerNodes, updateReplicaSet, setHasVote)
and desired.go (newPeerGroupInfo, checkExtraMembers, possiblePeerGroupChanges,
reviewPeerGroupChanges, createNonVotingMember, adjustVotes, updateAddressesFromInternal), read at the
2.9-era revision (controllerTracker, ControllerIds/ControllerNode/ControllerHost, errors.IsNotFound:
the search index does not pin it to a tag) and compared with a later 3.x/4.x revision (jujuNodeKey,
`non juju voting member`, members of unknown ids `toRemove`d). The 2.9 behaviour is modelled:

* the controllers are the ids in controllers `e` `controller-ids` that have a controllerNodes document
  and a machine whose status is not `pending` (updateControllerNodes; a missing one is skipped with
  the warning "controller %q from controller list not found");
* a replica-set member is that controller's when its tag `juju-machine-id` names it; any other member
  that votes is an error, "voting non-machine member %v found in peer group" (checkExtraMembers): the
  worker fails and changes nothing. So a controller whose id is not in `controller-ids` keeps a
  member nobody owns and the peergrouper never works; a non-voting stranger is dropped;
* a controller that wants a vote keeps a vote it has; one without a vote gets it only when its
  member is healthy PRIMARY/SECONDARY (isReady), else it is added as a NON-voting member (a dead old
  controller is never voted in this way); one that does not want a vote loses it, unless that would
  leave no voter and it is the primary; an even number of voters loses one non-primary voter
  (reviewPeerGroupChanges). So dead old controllers that are VOTING members of the set stay voters,
  and the set, whose majority is dead, has no primary;
* every member's address becomes its controller's one internal (cloud-local, else public) address
  with the mongo port (updateAddressesFromInternal: two or more and none the member's current one is
  the error "juju-ha-space is not set and these machines have more than one usable address");
  mongod itself refuses a config that does not name it ("No host described in new configuration
  ... maps to this node"), so a controller whose database addresses name another host is refused by
  the replica set: the peergrouper logs "cannot set replicaset" and retries;
* controllerNodes `has-vote` is set true for new voters before the reconfig and false for removed
  ones after it (updateReplicaSet), for every member of the desired set.
Not modelled: stepping the primary down (logged as Juju logs it, then nothing), juju-ha-space.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

JUJU_MACHINE_KEY = "juju-machine-id"  # desired.go jujuMachineKey
PRIMARY, SECONDARY = 1, 2  # replSetGetStatus member states


class PeerGroupError(Exception):
    """The desired peer group cannot be computed (the worker fails; nothing changes)."""


@dataclass(frozen=True)
class Controller:
    """A controller the peergrouper tracks: its id, its node's vote wishes and its machine's
    addresses as (value, scope) pairs (Machine.Addresses: provider and machine addresses merged)."""

    id: str
    wants_vote: bool
    has_vote: bool
    addresses: tuple[tuple[str, str], ...]


@dataclass
class Desired:
    """desiredChanges: whether the set must change, the members by controller id, who votes."""

    is_changed: bool = False
    step_down_primary: bool = False
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    voting: dict[str, bool] = field(default_factory=dict)


def _int_key(v: str) -> tuple[int, int | str]:
    """sortAsInts: numbers as numbers first, then the rest as strings."""
    return (0, int(v)) if v.isdigit() else (1, v)


def is_voting(member: dict[str, Any]) -> bool:
    """isVotingMember: `votes` unset or above 0."""
    v = member.get("votes")
    return v is None or int(v) > 0


def _set_voting(member: dict[str, Any], voting: bool) -> None:
    """setMemberVoting: a voter has neither votes nor priority set; a non-voter has both 0."""
    if voting:
        member.pop("votes", None)
        member.pop("priority", None)
    else:
        member["votes"] = 0
        member["priority"] = 0.0


def internal_addresses(c: Controller) -> list[str]:
    """network.SelectInternalHostPorts(hostPorts, false): the cloud-local addresses, else the public
    ones, else those of unknown scope; never machine-local or link-local ones."""
    by_scope: dict[str, list[str]] = {}
    for value, scope in c.addresses:
        if value and value not in by_scope.setdefault(scope or "", []):
            by_scope[scope or ""].append(value)
    for scope in ("local-cloud", "public", ""):
        if by_scope.get(scope):
            return by_scope[scope]
    return []


def _host_port(addr: str, port: int) -> str:
    try:
        if ipaddress.ip_address(addr).version == 6:
            return f"[{addr}]:{port}"
    except ValueError:
        pass
    return f"{addr}:{port}"


def desired_peer_group(
    controllers: dict[str, Controller],
    members: list[dict[str, Any]],
    states: dict[int, tuple[bool, int]],
    mongo_port: int,
) -> Desired:
    """Given the tracked controllers, the replica-set config's members and each member's
    (healthy, state) by member `_id`, return the desired peer group (desired.go
    computeDesiredPeerGroup). Raise PeerGroupError as the worker fails."""
    if not members:
        raise PeerGroupError("current member set is empty")
    recognised: dict[str, dict[str, Any]] = {}
    statuses: dict[str, tuple[bool, int]] = {}
    extra: list[dict[str, Any]] = []
    max_id = -1
    for m in members:
        mid = str((m.get("tags") or {}).get(JUJU_MACHINE_KEY, ""))
        if mid and mid in controllers:
            recognised[mid] = m
            if m.get("_id") in states:
                statuses[mid] = states[m["_id"]]
        else:
            extra.append(m)
        max_id = max(max_id, int(m.get("_id", 0)))
    d = Desired()
    for m in extra:  # checkExtraMembers
        if is_voting(m):
            raise PeerGroupError(f"voting non-machine member {m} found in peer group")
    if extra:
        d.is_changed = True
    d.members = {mid: dict(m) for mid, m in recognised.items()}

    def primary(mid: str) -> bool:
        return statuses.get(mid, (False, 0))[1] == PRIMARY

    keep_voting: list[str] = []
    add_vote: list[str] = []
    remove_vote: list[str] = []
    keep_non_voting: list[str] = []
    create_non_voting: list[str] = []
    for mid in sorted(controllers, key=_int_key):  # possiblePeerGroupChanges
        member = d.members.get(mid)
        voting = member is not None and is_voting(member)
        wants = controllers[mid].wants_vote
        if wants and voting:
            keep_voting.append(mid)
        elif wants:
            healthy, state = statuses.get(mid, (False, 0))
            if healthy and state in (PRIMARY, SECONDARY):
                add_vote.append(mid)
            elif member is not None:
                keep_non_voting.append(mid)
            else:
                create_non_voting.append(mid)
        elif voting:
            remove_vote.append(mid)
            if primary(mid):
                d.step_down_primary = True
        else:
            keep_non_voting.append(mid)
    # reviewPeerGroupChanges
    kept = sum(1 for m in d.members.values() if is_voting(m)) - len(remove_vote)
    if kept == 0:
        for mid in [x for x in remove_vote if primary(x)]:
            remove_vote.remove(mid)
            d.step_down_primary = False
    if (kept + len(add_vote)) % 2 == 0:
        if add_vote:
            add_vote.pop()
        else:
            for mid in keep_voting:
                if not primary(mid):
                    keep_voting.remove(mid)
                    remove_vote.append(mid)
                    break
    for mid in create_non_voting + [x for x in keep_non_voting if x not in d.members]:
        max_id += 1  # createNonVotingMember
        d.members[mid] = {"_id": max_id, "host": "", "tags": {JUJU_MACHINE_KEY: mid}}
        _set_voting(d.members[mid], False)
    d.voting = {mid: is_voting(m) for mid, m in d.members.items()}  # getMachinesVoting
    if add_vote or remove_vote or create_non_voting:  # adjustVotes
        d.is_changed = True
    for mid in add_vote:
        _set_voting(d.members[mid], True)
        d.voting[mid] = True
    for mid in remove_vote + create_non_voting:
        _set_voting(d.members[mid], False)
        d.voting[mid] = False
    multiple = []
    for mid in sorted(d.members, key=_int_key):  # updateAddressesFromInternal
        addrs = [_host_port(a, mongo_port) for a in internal_addresses(controllers[mid])]
        member = d.members[mid]
        if len(addrs) == 1:
            if member.get("host") != addrs[0]:
                member["host"] = addrs[0]
                d.is_changed = True
        elif len(addrs) > 1 and not (mid in recognised and member.get("host") in addrs):
            multiple.append(mid)
    if multiple:
        raise PeerGroupError(
            "juju-ha-space is not set and these machines have more than one usable address: "
            + ", ".join(multiple)
        )
    return d
