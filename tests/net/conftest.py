"""Fixtures for the tests that need root: fresh network namespaces, always deleted."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator

import pytest

from larval.net.netns import Netns

_counter = itertools.count()


def root_and_tun() -> str | None:
    """Why namespace/TUN tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root and /dev/net/tun (not running as root)"
    if not os.path.exists("/dev/net/tun"):
        return "needs root and /dev/net/tun (no /dev/net/tun)"
    if shutil.which("ip") is None:
        return "needs root and /dev/net/tun, and the ip command (iproute2)"
    return None


def fresh_name() -> str:
    return f"lvnet{os.getpid()}x{next(_counter)}"


@pytest.fixture
def netns() -> Iterator[Netns]:
    reason = root_and_tun()
    if reason:
        pytest.skip(reason)
    with Netns(fresh_name()) as ns:
        yield ns


@pytest.fixture
def netns_pair() -> Iterator[tuple[Netns, Netns]]:
    reason = root_and_tun()
    if reason:
        pytest.skip(reason)
    with Netns(fresh_name()) as a, Netns(fresh_name()) as b:
        yield a, b
