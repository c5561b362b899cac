"""Policies for SPD tests, and the brute-force reference lookup."""

from __future__ import annotations

from larval.crypto.proposals import parse_esp_proposal
from larval.spd import Action, Direction, Mode, Policy, Selector, Spd, Tunnel
from larval.spd.selector import AddressLike, to_address

GCM = parse_esp_proposal("aes128gcm16")
CBC = parse_esp_proposal("aes128-sha256-ecp256")


def policy(
    name: str,
    local: str,
    remote: str,
    *,
    direction: Direction = Direction.OUT,
    action: Action = Action.PROTECT,
    proto: int = 0,
    local_ports: tuple[int, int] | int = 0,
    remote_ports: tuple[int, int] | int = 0,
    icmp_type: int | None = None,
    priority: int = -1,
    tunnel: tuple[str, str] | None = None,
) -> Policy:
    sel = Selector.of(local, remote, proto, local_ports, remote_ports, icmp_type)
    return Policy(
        name,
        direction,
        sel,
        action,
        (GCM, CBC) if action is Action.PROTECT else (),
        Mode.TUNNEL if tunnel else Mode.TRANSPORT,
        Tunnel.of(*tunnel) if tunnel else None,
        priority=priority,
    )


class LinearScan:
    """Every policy tested in turn, best sort key kept: what the index must agree with.

    Uses `Selector.matches`, not the index's code; built once per SPD state.
    """

    def __init__(self, spd: Spd) -> None:
        self.by_slot: dict[tuple[Direction, int], list[tuple[int, Policy]]] = {}
        for index, p in enumerate(spd.policies()):
            slot = (p.direction, p.selector.version)
            self.by_slot.setdefault(slot, []).append((index, p))

    def __call__(
        self,
        direction: Direction,
        src: AddressLike,
        dst: AddressLike,
        proto: int = 0,
        sport: int = 0,
        dport: int = 0,
        icmp_type: int | None = None,
    ) -> Policy | None:
        if direction is Direction.OUT:
            local, remote, lport, rport = src, dst, sport, dport
        else:
            local, remote, lport, rport = dst, src, dport, sport
        la, ra = to_address(local), to_address(remote)
        best = None
        for index, p in self.by_slot.get((direction, la.version), ()):
            if p.selector.matches(la, ra, proto, lport, rport, icmp_type):
                key = p.sort_key(index)
                if best is None or key < best[0]:
                    best = (key, p)
        return None if best is None else best[1]


def brute_force(
    spd: Spd,
    direction: Direction,
    src: AddressLike,
    dst: AddressLike,
    proto: int = 0,
    sport: int = 0,
    dport: int = 0,
    icmp_type: int | None = None,
) -> Policy | None:
    """Every policy tested in turn, best sort key kept: what the index must agree with."""
    if direction is Direction.OUT:
        local, remote, lport, rport = src, dst, sport, dport
    else:
        local, remote, lport, rport = dst, src, dport, sport
    la, ra = to_address(local), to_address(remote)
    best = None
    for index, p in enumerate(spd.policies()):
        if p.direction is not direction:
            continue
        if p.selector.matches(la, ra, proto, lport, rport, icmp_type):
            key = p.sort_key(index)
            if best is None or key < best[0]:
                best = (key, p)
    return None if best is None else best[1]
