"""What the road-warrior interop tests on the harness's two sites share: the pool and
the virtual address it leases first (`POOL`, `VIP`), the harness's larval configuration
as a gateway leasing from that pool (`with_pool_a`) and as a road warrior asking for an
address (`as_road_warrior`), `vip_on_tun`, and `until`."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.interop.harness import NET, LarvalDaemon, Site

POOL, VIP = "10.3.0.0/24", "10.3.0.1"


def with_pool_a(config: str, extra: str = "") -> str:
    """Site a's configuration as a gateway leasing from pool ``rw`` (`POOL`, and its
    further TOML lines `extra`): connection s2s takes the pool, and its child's
    remote_ts is the pool."""
    config = config.replace('dpd_delay = "0s"', 'dpd_delay = "0s"\npools = ["rw"]')
    config = config.replace(f'remote_ts = ["{NET["b"]}"]', f'remote_ts = ["{POOL}"]')
    return config + f'\n[pools.rw]\naddrs = "{POOL}"\n{extra}'


def as_road_warrior(config: str, site: Site) -> str:
    """`site`'s configuration as a road warrior: its child names no local_ts, and it asks
    for an IPv4 address (``vips = ["0.0.0.0"]``)."""
    config = config.replace(f'local_ts = ["{NET[site.name]}"]\n', "")
    return config.replace('dpd_delay = "0s"', 'dpd_delay = "0s"\nvips = ["0.0.0.0"]')


def vip_on_tun(site: Site) -> bool:
    """Whether `VIP` is on `site`'s TUN device, larval0."""
    return f"inet {VIP}/32" in site.ns.run(["ip", "-o", "address", "show", "dev", "larval0"])


def until(what: str, check: Callable[[], bool], daemon: LarvalDaemon, timeout: float = 15) -> None:
    """Ask `check` every 0.2 s; after `timeout` seconds, fail with `what` and the end of
    `daemon`'s log."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not so within {timeout}s: {what}\n{daemon.log.read_text()[-4000:]}")
        time.sleep(0.2)
