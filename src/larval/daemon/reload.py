"""What a SIGHUP changes: the configuration file read again, compared with what runs.

The stack's policies have two origins. Those the configuration file makes (one pair per
CHILD_SA) are the file's: a reload adds, replaces and removes them to match it. Those
loaded over the control socket (`larval policy load`) are the operator's: a reload
leaves them alone, and only `larval policy flush` removes them.

A name held by both is the control socket's: loading a policy of a configured name
replaces the configuration's policy (as a second load of the same name replaces the
first), and a reload does not put the configuration's back over it; that is logged at
each reload. After a flush the name is free again and the next reload installs the
configuration's policy.

Pure functions over names: the daemon applies the result to its SPD and key manager.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from larval.pools import Pool, Pools

if TYPE_CHECKING:  # `larval stack` imports this module and runs no key manager
    from larval.daemon.config import DaemonConfig
    from larval.keymgr.manager import Connection
    from larval.spd import Policy

__all__ = [
    "Changes",
    "by_name",
    "connection_changes",
    "daemon_changes",
    "keep_pools",
    "keep_unchanged",
    "policy_changes",
]

# What a reload takes from the file (and the credentials directory it names); the rest
# of it ([daemon]: addresses, sockets, TUN) is bound to sockets and devices opened at start.
# ``daemon.save_keys`` opens nothing at start: a reload turns it on or off; nor do the
# log levels of ``[daemon.log]``.
RELOADED = (
    "connections",
    "policies",
    "cert_auth",
    "credentials",
    "key_passphrases",
    "pools",
    "auth_sides",
    "save_keys",
    "log_levels",
    "metrics",
)

_T = TypeVar("_T")


@dataclass(frozen=True)
class Changes:
    """Names added, removed and changed by a reload, each sorted; `kept` are the
    configured names left to the policies loaded over the control socket."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self, what: str) -> str:
        """``policies added a, b; removed c`` (empty when nothing changed)."""
        parts = [
            f"{verb} {', '.join(names)}"
            for verb, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("changed", self.changed),
            )
            if names
        ]
        return f"{what} {'; '.join(parts)}" if parts else ""


def by_name(policies: Iterable[Policy]) -> dict[str, tuple[Policy, ...]]:
    """Policies grouped by name (a name holds both directions), in the order given."""
    out: dict[str, list[Policy]] = {}
    for policy in policies:
        out.setdefault(policy.name, []).append(policy)
    return {name: tuple(group) for name, group in out.items()}


def _as_configured(installed: tuple[Policy, ...], configured: tuple[Policy, ...]) -> bool:
    """The SPD gives a policy configured with reqid 0 one of its own: that is no change."""
    if len(installed) != len(configured):
        return False
    return all(
        have == want or (want.reqid == 0 and dataclasses.replace(have, reqid=0) == want)
        for have, want in zip(installed, configured, strict=True)
    )


def policy_changes(
    installed: Mapping[str, tuple[Policy, ...]],
    configured: Mapping[str, tuple[Policy, ...]],
    control: Set[str],
) -> Changes:
    """`installed`: the SPD's policies by name; `configured`: the fresh file's;
    `control`: the names loaded over the control socket, which a reload leaves alone."""
    ours = {name: group for name, group in installed.items() if name not in control}
    wanted = {name: group for name, group in configured.items() if name not in control}
    return Changes(
        added=tuple(sorted(wanted.keys() - ours.keys())),
        removed=tuple(sorted(ours.keys() - wanted.keys())),
        changed=tuple(
            sorted(n for n in wanted.keys() & ours.keys() if not _as_configured(ours[n], wanted[n]))
        ),
        kept=tuple(sorted(configured.keys() & control)),
    )


def connection_changes(
    old: Mapping[str, Connection], new: Mapping[str, Connection], renewed: Set[str] = frozenset()
) -> Changes:
    """`renewed`: names changed even where equal (what they trust was loaded again)."""
    return Changes(
        added=tuple(sorted(new.keys() - old.keys())),
        removed=tuple(sorted(old.keys() - new.keys())),
        changed=tuple(
            sorted(n for n in new.keys() & old.keys() if n in renewed or new[n] != old[n])
        ),
    )


def keep_unchanged(
    old: Mapping[str, _T], new: Mapping[str, _T], renewed: Set[str] = frozenset()
) -> dict[str, _T]:
    """`new`, with the objects of `old` where they are equal and not `renewed`: the key
    manager knows its IKE SAs' connections by identity, and an unchanged connection
    stays the same one."""
    return {
        name: old[name] if name not in renewed and old.get(name) == value else value
        for name, value in new.items()
    }


def keep_pools(running: Pools, fresh: Pools) -> tuple[Pools, Changes]:
    """The pools after a reload: a pool defined as before (addresses, attributes,
    reserved addresses) is the running one, with its leases online and offline; a new
    or changed one starts empty. An IKE SA whose pool changed or went keeps its address
    until it closes; its release then finds no lease to give back."""

    def same(name: str) -> bool:
        return name in running and _definition(running[name]) == _definition(fresh[name])

    pools = Pools(running[p.name] if same(p.name) else p for p in fresh)
    names = {p.name for p in running}
    return pools, Changes(
        added=tuple(sorted(p.name for p in fresh if p.name not in names)),
        removed=tuple(sorted(names - {p.name for p in fresh})),
        changed=tuple(sorted(p.name for p in fresh if p.name in names and not same(p.name))),
    )


def _definition(pool: Pool) -> tuple[object, ...]:
    return (pool.addrs, pool.attributes, pool.status().reserved)


def daemon_changes(running: DaemonConfig, fresh: DaemonConfig) -> list[str]:
    """The settings of `[daemon]` the file changed, which only a restart applies."""
    return [
        f.name
        for f in dataclasses.fields(running)
        if f.name not in RELOADED and getattr(running, f.name) != getattr(fresh, f.name)
    ]
