"""No datagram makes the key manager raise: during real IKEv2 and IKEv1 exchanges between
two key managers (each with its own stack), every message is also delivered damaged (bits
flipped, cut short, stretched, or a whole other message's bytes) before the real one. What
a peer or an attacker sends is counted and dropped or refused; nothing escapes as an
exception, which in the daemon would be a traceback in the log."""

from __future__ import annotations

import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from larval.ike import NAT_T_PORT
from tests.keymgr.test_manager import Host, udp_packet

warnings.filterwarnings("ignore", category=DeprecationWarning)

Damage = tuple[int, str, int, int]  # which message, how, where, what


def damaged(data: bytes, how: str, where: int, what: int) -> bytes:
    if not data:
        return data
    at = where % len(data)
    if how == "flip":
        return data[:at] + bytes([data[at] ^ (what or 1)]) + data[at + 1 :]
    if how == "cut":
        return data[:at]
    if how == "stretch":
        return data + bytes([what]) * (where % 64 + 1)
    # "length": the header's length field says something else (IKE: bytes 24-27).
    return data[:24] + (what * 97 % 0xFFFFFFFF).to_bytes(4, "big") + data[28:]


def exchange(version: int, damage: list[Damage], fragment_size: int = 1280) -> None:
    a = Host("a", "b", "trap", version=version, fragment_size=fragment_size)
    b = Host("b", "a", "none", version=version, fragment_size=fragment_size)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    plans = {index: (how, where, what) for index, how, where, what in damage}
    index = 0
    for now in (0.0, 5.0, 12.0, 30.0):  # and the retransmissions that follow
        for host in (a, b):
            host.keymgr.handle_timer(now)
        for _ in range(40):
            a.pump(now)
            b.pump(now)
            out = [(a, b, d) for d in a.keymgr.datagrams_to_send()]
            out += [(b, a, d) for d in b.keymgr.datagrams_to_send()]
            if not out:
                break
            for src, dst, (data, _) in out:
                plan = plans.get(index)
                index += 1
                peer = (str(src.addr), NAT_T_PORT)
                if plan is not None:
                    dst.keymgr.receive_ike(damaged(data, *plan), peer, dst.addr, now)
                dst.keymgr.receive_ike(data, peer, dst.addr, now)
    for host in (a, b):
        # Still answers, and keeps no session that garbage started and nothing finished.
        assert "idle" not in [s["state"] for s in host.keymgr.status()["ike_sas"]]


DAMAGE = st.lists(
    st.tuples(
        st.integers(0, 24),
        st.sampled_from(["flip", "cut", "stretch", "length"]),
        st.integers(0, 2000),
        st.integers(0, 255),
    ),
    min_size=1,
    max_size=4,
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(DAMAGE)
def test_ikev2_damaged_datagrams_raise_nothing(damage: list[Damage]) -> None:
    exchange(2, damage)


@FUZZ
@given(DAMAGE)
def test_ikev1_damaged_datagrams_raise_nothing(damage: list[Damage]) -> None:
    exchange(1, damage)


@FUZZ
@given(DAMAGE)
def test_fragments_damaged_raise_nothing(damage: list[Damage]) -> None:
    """Both versions with a 200-byte fragment size: the damage falls on fragments."""
    exchange(1, damage, fragment_size=200)
    exchange(2, damage, fragment_size=200)
