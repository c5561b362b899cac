"""SPD benchmark: outbound lookups per second for random flows against 10,000 policies and
against 100 (same shape), beside a linear scan of the 10,000, to show lookup cost does not
grow with the number of policies."""

from __future__ import annotations

import ipaddress
import random
import time
from typing import Any

from larval.crypto.proposals import parse_esp_proposal
from larval.spd import Action, Direction, Mode, Policy, Selector, Spd, Tunnel

_PROPOSALS = (parse_esp_proposal("aes128gcm16"), parse_esp_proposal("aes128-sha256"))
_TUNNEL = Tunnel.of("192.0.2.2", "192.0.2.1")
# Prefix lengths a site-to-site gateway sees: hosts, subnets, sites, "everything".
_LOCAL_LENGTHS = (16, 24, 24, 32)
_REMOTE_LENGTHS = (0, 16, 24, 24, 32)
_PROTOS = (0, 0, 0, 6, 17)


def _policies(n: int, rng: random.Random) -> list[Policy]:
    out = []
    for i in range(n):
        local = ipaddress.ip_network(((10 << 24) | rng.getrandbits(24), 32))
        remote = ipaddress.ip_network((rng.getrandbits(32), 32))
        llen, rlen = rng.choice(_LOCAL_LENGTHS), rng.choice(_REMOTE_LENGTHS)
        proto = rng.choice(_PROTOS)
        sel = Selector(
            local.supernet(new_prefix=llen),
            remote.supernet(new_prefix=rlen),
            proto,
            remote_ports=(443, 443) if proto == 6 else (0, 65535),
        )
        action = Action.PROTECT if i % 10 else Action.BYPASS
        out.append(
            Policy(
                f"p{i}",
                Direction.OUT,
                sel,
                action,
                _PROPOSALS if action is Action.PROTECT else (),
                Mode.TUNNEL if action is Action.PROTECT else Mode.TRANSPORT,
                _TUNNEL if action is Action.PROTECT else None,
            )
        )
    return out


def _flows(policies: list[Policy], n: int, rng: random.Random) -> list[tuple[Any, ...]]:
    """Packets aimed inside random policies' selectors, so lookups find something."""
    flows = []
    for _ in range(n):
        sel = rng.choice(policies).selector
        src = sel.local.network_address + rng.randrange(sel.local.num_addresses)
        dst = sel.remote.network_address + rng.randrange(min(sel.remote.num_addresses, 1 << 24))
        proto = sel.proto or 6
        flows.append((src.packed, dst.packed, proto, rng.randrange(1024, 65536), 443))
    return flows


def _rate(spd: Spd, flows: list[tuple[Any, ...]]) -> tuple[float, int]:
    lookup = spd.lookup
    out = Direction.OUT
    found = 0
    start = time.perf_counter()
    for src, dst, proto, sport, dport in flows:
        if lookup(out, src, dst, proto, sport, dport) is not None:
            found += 1
    return len(flows) / (time.perf_counter() - start), found


def _linear_rate(policies: list[Policy], flows: list[tuple[Any, ...]]) -> float:
    ordered = sorted(enumerate(policies), key=lambda ip: ip[1].sort_key(ip[0]))
    rows = [
        (
            int(p.selector.local.network_address),
            int(p.selector.local.netmask),
            int(p.selector.remote.network_address),
            int(p.selector.remote.netmask),
            p.selector.proto,
            *p.selector.remote_ports,
            p,
        )
        for _, p in ordered
    ]
    start = time.perf_counter()
    for src, dst, proto, _sport, dport in flows:
        s, d = int.from_bytes(src, "big"), int.from_bytes(dst, "big")
        for lnet, lmask, rnet, rmask, pproto, rlo, rhi, _p in rows:
            if (
                s & lmask == lnet
                and d & rmask == rnet
                and (pproto == 0 or pproto == proto)
                and rlo <= dport <= rhi
            ):
                break
    return len(flows) / (time.perf_counter() - start)


def run(n_policies: int = 10_000, n_lookups: int = 200_000) -> dict[str, Any]:
    rng = random.Random(1)
    big = _policies(n_policies, rng)
    small = big[:100]

    spd = Spd()
    start = time.perf_counter()
    spd.add_all(big)
    add_elapsed = time.perf_counter() - start
    flows = _flows(big, n_lookups, rng)
    rate_big, found = _rate(spd, flows)

    spd_small = Spd()
    spd_small.add_all(small)
    rate_small, _ = _rate(spd_small, _flows(small, n_lookups, rng))

    linear = _linear_rate(big, flows[: max(1, n_lookups // 100)])
    return {
        "policies": n_policies,
        "lookups_per_s": round(rate_big),
        "lookups_per_s_100_policies": round(rate_small),
        "linear_scan_lookups_per_s": round(linear),
        "adds_per_s": round(n_policies / add_elapsed),
        "hit_ratio": round(found / n_lookups, 3),
        "note": (
            "outbound IPv4 lookups by packed addresses, flows aimed inside random policies; "
            "policies of prefix lengths /16-/32 local, /0-/32 remote, some TCP/443; "
            "the linear scan is a tight loop over int masks in priority order"
        ),
    }
