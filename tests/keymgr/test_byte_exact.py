"""Stacks and key managers drawing from seeded sources: what a trapped packet sets off
(IKE, a COOKIE round included, the SPIs GETSPI hands out, the first ESP packet) is the
same bytes run after run, and other bytes under another seed."""

from __future__ import annotations

import pytest

from tests.keymgr.test_manager import Host, advance, udp_packet
from tests.seeded import SeededRandom

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")


def run(seed: str, version: int) -> tuple[list[bytes], list[bytes]]:
    """The IKE datagrams both ways, in order, and the ESP that left A."""
    a = Host("a", "b", "trap", version=version, random_bytes=SeededRandom(seed + "/a"))
    # No half-open allowance: B answers the first IKE_SA_INIT with a COOKIE (IKEv2).
    b = Host("b", "a", "none", version=version, cookie_threshold=0,
             random_bytes=SeededRandom(seed + "/b"))  # fmt: skip
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)  # held; ACQUIRE
    ike: list[bytes] = []
    for _ in range(100):
        a.pump(0.0)
        b.pump(0.0)
        out = [(a, b, d) for d in a.keymgr.datagrams_to_send()]
        out += [(b, a, d) for d in b.keymgr.datagrams_to_send()]
        if not out:
            break
        for src, dst, (data, _) in out:
            ike.append(data)
            dst.keymgr.receive_ike(data, (str(src.addr), 4500), dst.addr, 0.0)
    # IKEv1's outbound SA waits for QM3 to reach B; by then the held packet has left.
    advance(a, b, 0.0, 2.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 2.0)
    return ike, [d.payload for d in a.esp]


@pytest.mark.parametrize(("version", "ike_datagrams"), [(2, 6), (1, 9)])
def test_a_trapped_packet_sets_off_the_same_bytes_under_the_same_seeds(
    version: int, ike_datagrams: int
) -> None:
    ike, esp = run("seed-1", version)
    assert len(ike) == ike_datagrams and len(esp) == 2  # the held packet, then one more
    assert run("seed-1", version) == (ike, esp)
    other_ike, other_esp = run("seed-2", version)
    assert len(other_ike) == ike_datagrams
    assert all(x != y for x, y in zip(ike, other_ike, strict=True))
    assert all(x != y for x, y in zip(esp, other_esp, strict=True))
