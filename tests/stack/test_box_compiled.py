"""The inbound policy check's IPv4 box kept in a compiled SA's C block (`sa_box`), judged
by `open_boxed` in the many-SA receive (`PacketPath._opened_each`).

The flags themselves against what the box says, packet by packet (networks and shifts,
/0 and /32, the generation, options, short and IPv6 plaintexts, dummies, forgeries); the
receive with SPD changes, UPDATE's new inner selectors, packets outside the box and
boxes whose verdict is a refusal; and, over random SPDs, boxes and packets, the compiled
many-SA receive against the Python path and the reference check of RFC 4301 §5.2 step 4
(`tests/stack/test_inbound_box.py`): the packets delivered, every drop counter and each
SA's accounting."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.esp import EspSa, helper
from larval.esp.helper import open_boxed, sa_box, sa_unbox
from larval.esp.ip import IPPROTO_IPV4, IPPROTO_IPV6
from larval.esp.run import EspRun
from larval.esp.sa import IPPROTO_NONE
from larval.pfkey import (
    EncryptAlg,
    ExtType,
    PfkeyMessage,
    SadbAddress,
    SadbLifetime,
    SadbMsgType,
    SadbSa,
    SaFlags,
    SaState,
)
from larval.pfkey.requests import keyed
from larval.sadb import SecurityAssociation
from larval.spd import Action, Direction, Policy
from larval.stack import Stack, packet_path
from larval.stack.packet_path import EspContext, PacketPath, inbound_udp_run
from tests.sadb.test_expiry import expired
from tests.spd.support import policy
from tests.stack.test_inbound_box import (
    ADDRS,
    GATEWAY,
    OTHER,
    PEER,
    TUNNELS,
    ext,
    make_packet,
    packet_specs,
    policies,
    reference,
    wide_policies,
)

GATEWAY_P = ipaddress.ip_address(GATEWAY).packed
PEER_P = ipaddress.ip_address(PEER).packed


def _compiled_or_skip() -> None:
    ok, why_not = helper.built()
    if not ok:
        pytest.skip(f"the compiled ESP helper is {why_not}")


@contextmanager
def _esp_path(name: str) -> Iterator[None]:
    """SAs made inside take the ESP path `name` (``LARVAL_ESP_HELPER``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(helper.HELPER_ENV, name)
        yield


def _key(k: int) -> bytes:
    return bytes((k * 37 + i) % 256 for i in range(20 if k % 2 else 36))


def ipv4(src: str, dst: str, options: bytes = b"", body: bytes = bytes(12)) -> bytes:
    a, b = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    header = struct.pack("!BBHHHBBH4s4s", 0x45 + len(options) // 4, 0,
                         20 + len(options) + len(body), 1, 0x4000, 64, 17, 0, a, b)  # fmt: skip
    return header + options + body


# -- the flags -------------------------------------------------------------------------------


def _box_of(prefix: str) -> tuple[int, int]:
    """`prefix` as the box keeps it: (network, shift)."""
    net = ipaddress.IPv4Network(prefix)
    shift = 32 - net.prefixlen
    return int(net.network_address) >> shift, shift


@pytest.mark.parametrize(
    ("src_box", "dst_box", "src", "dst", "passes"),
    [
        ("10.1.0.0/16", "10.2.0.0/16", "10.1.9.9", "10.2.0.1", True),
        ("10.1.0.0/16", "10.2.0.0/16", "10.3.9.9", "10.2.0.1", False),
        ("10.1.0.0/16", "10.2.0.0/16", "10.1.9.9", "10.4.0.1", False),
        ("10.1.0.0/16", "10.2.0.0/16", "10.2.0.1", "10.1.9.9", False),
        ("0.0.0.0/0", "0.0.0.0/0", "255.255.255.255", "0.0.0.0", True),
        ("0.0.0.0/0", "10.2.0.7/32", "192.0.2.9", "10.2.0.7", True),
        ("0.0.0.0/0", "10.2.0.7/32", "192.0.2.9", "10.2.0.6", False),
        ("10.1.0.1/32", "0.0.0.0/0", "10.1.0.1", "203.0.113.5", True),
        ("10.1.0.1/32", "0.0.0.0/0", "10.1.0.0", "203.0.113.5", False),
        ("128.0.0.0/1", "0.0.0.0/1", "200.1.1.1", "100.1.1.1", True),
        ("128.0.0.0/1", "0.0.0.0/1", "100.1.1.1", "100.1.1.1", False),
    ],
)
def test_open_boxed_flags_the_packets_inside_the_box(
    src_box: str, dst_box: str, src: str, dst: str, passes: bool
) -> None:
    _compiled_or_skip()
    receiver = EspSa(0x1077, EncryptAlg.AES_GCM_16, _key(1), esp_path="compiled")
    sender = EspSa(0x1077, EncryptAlg.AES_GCM_16, _key(1))
    handle = receiver.handle
    sa_box(handle, 9, *_box_of(src_box), *_box_of(dst_box))
    inside = sender.encrypt(ipv4(src, dst), IPPROTO_IPV4)
    at_other = sender.encrypt(ipv4(src, dst), IPPROTO_IPV4)
    with_options = sender.encrypt(ipv4(src, dst, options=bytes(4)), IPPROTO_IPV4)
    short = sender.encrypt(ipv4(src, dst)[:19], IPPROTO_IPV4)
    dummy = sender.encrypt(ipv4(src, dst), IPPROTO_NONE)
    forged = bytearray(sender.encrypt(ipv4(src, dst), IPPROTO_IPV4))
    forged[-1] ^= 1
    packets = [inside, with_options, short, dummy, bytes(forged)]
    *_, status, _, next_headers, _, boxed = open_boxed([handle] * 5, packets, None, 9)
    assert status == bytes([0, 0, 0, 0, helper.OPEN_AUTH])
    assert next_headers[3] == IPPROTO_NONE
    assert list(boxed) == [int(passes), 0, 0, 0, 0]
    # Another generation: no packet is flagged.
    *_, boxed = open_boxed([handle], [at_other], None, 10)
    assert boxed == b"\x00"
    # Nor once the box is gone.
    sa_box(handle, 10, *_box_of(src_box), *_box_of(dst_box))
    sa_unbox(handle)
    *_, boxed = open_boxed([handle], [sender.encrypt(ipv4(src, dst), IPPROTO_IPV4)], None, 10)
    assert boxed == b"\x00"


def test_open_boxed_takes_each_packets_own_box() -> None:
    _compiled_or_skip()
    receivers = [EspSa(0x1080 + k, EncryptAlg.AES_GCM_16, _key(k), esp_path="compiled")
                 for k in range(3)]  # fmt: skip
    senders = [EspSa(0x1080 + k, EncryptAlg.AES_GCM_16, _key(k)) for k in range(3)]
    sa_box(receivers[0].handle, 3, *_box_of("10.1.0.0/16"), *_box_of("10.2.0.0/24"))
    sa_box(receivers[1].handle, 3, *_box_of("10.1.0.0/16"), *_box_of("10.2.1.0/24"))
    # A box of a generation past 64 bits, or of a shift past 32, is not kept.
    sa_box(receivers[2].handle, 1 << 64, *_box_of("0.0.0.0/0"), *_box_of("0.0.0.0/0"))
    order = [0, 1, 2, 0, 1, 2]
    inner = ipv4("10.1.0.5", "10.2.0.9")
    packets = [senders[k].encrypt(inner, IPPROTO_IPV4) for k in order]
    *_, status, _, _, _, boxed = open_boxed([receivers[k].handle for k in order], packets,
                                            None, 3)  # fmt: skip
    assert status == bytes(6)
    assert list(boxed) == [1, 0, 0, 1, 0, 0]
    sa_box(receivers[2].handle, 3, 0, 33, 0, 0)
    *_, boxed = open_boxed([receivers[2].handle], [senders[2].encrypt(inner, 4)], None, 3)
    assert boxed == b"\x00"
    # An IPv6 plaintext is never flagged.
    sa_box(receivers[2].handle, 3, 0, 32, 0, 32)
    six = struct.pack("!IHBB16s16s", 6 << 28, 8, 17, 64, bytes(16), bytes(16)) + bytes(8)
    packets = [senders[2].encrypt(six, IPPROTO_IPV6), senders[2].encrypt(inner, 4)]
    *_, boxed = open_boxed([receivers[2].handle] * 2, packets, None, 3)
    assert boxed == b"\x00\x01"


# -- the receive -----------------------------------------------------------------------------


class Receiver:
    """A gateway's stack and packet path receiving ESP from its peer on SAs with inner
    selectors, on the ESP path `path`; what it delivers in `got`, and the number of
    packets that took `_inbound_refusal` in `refused_asked`."""

    def __init__(self, path: str, pool: list[Policy] | None = None) -> None:
        self.esp_path = path
        self.stack = Stack()
        self.got: list[bytes] = []
        self.path = PacketPath(self.stack, send=lambda d: None, deliver=self.got.append)

        def deliver_many(buf: Any, starts: list[int], lengths: list[int]) -> None:
            self.got.extend(bytes(buf[s : s + n]) for s, n in zip(starts, lengths, strict=True))

        self.path.deliver_many = deliver_many
        self.asked = 0
        check = self.path._inbound_refusal

        def counted(sa: SecurityAssociation, ctx: EspContext, packet: bytes) -> str | None:
            self.asked += 1
            return check(sa, ctx, packet)

        self.path._inbound_refusal = counted  # type: ignore[method-assign]
        self.pool = pool or []
        self.present: dict[int, str] = {}

    def toggle(self, i: int) -> None:
        if i in self.present:
            self.stack.spd.remove(self.present.pop(i))
            return
        name = f"p{i}"
        self.stack.spd.add(replace(self.pool[i], name=name))
        self.present[i] = name

    def add_sa(
        self, spi: int, src: str, first: tuple[Any, Any], soft: SadbLifetime | None = None
    ) -> SecurityAssociation:
        msg = keyed(SadbMsgType.ADD, spi, src, GATEWAY, encrypt=EncryptAlg.AES_GCM_16,
                    encrypt_key=_key(spi), soft=soft)  # fmt: skip
        tunnel = SadbSa(spi, 32, SaState.MATURE, 0, EncryptAlg.AES_GCM_16, SaFlags.X_TUNNEL)
        added = PfkeyMessage(msg.msg_type, msg.satype, extensions=(tunnel, *msg.extensions[1:]))
        assert self.stack.handle_pfkey(added, 0.0)[0].message.errno == 0
        sa = self.sa(spi)
        self.set_inner(sa, first, "both")
        return sa

    def sa(self, spi: int) -> SecurityAssociation:
        found = self.stack.sadb.lookup_esp(spi, GATEWAY_P)
        assert found is not None
        return found

    @staticmethod
    def set_inner(sa: SecurityAssociation, pair: tuple[Any, Any], which: str) -> None:
        with sa.lock:  # as UPDATE sets them: one or both, the further pairs gone
            if which != "dst":
                sa.inner_src = pair[0]
            if which != "src":
                sa.inner_dst = pair[1]
            sa.inner_more = ()

    def receive(self, datagrams: list[bytes], entry: str) -> None:
        """One receive of `datagrams` from the peer: a buffer of them back to back
        (`inbound_udp_run`, the spread receive) or a list (`inbound_udp_batch`)."""
        with _esp_path(self.esp_path):
            if entry == "run":
                run = EspRun(memoryview(bytearray(b"".join(datagrams))),
                             [len(d) for d in datagrams])  # fmt: skip
                inbound_udp_run(self.path, run, [(len(datagrams), PEER_P, 4500)], GATEWAY_P, 1.0)
            else:
                items = [(d, PEER_P, 4500) for d in datagrams]
                self.path.inbound_udp_batch(items, GATEWAY_P, 1.0)

    def drops(self) -> dict[str, int]:
        return {k: v for k, v in self.path.counters().items() if v and k != "delivered"}


def _inbound_protect(stack: Stack, name: str, tunnel: tuple[str, str] | None) -> None:
    stack.spd.add(policy(name, "10.2.0.0/16", "10.1.0.0/16", direction=Direction.IN,
                         tunnel=tunnel))  # fmt: skip


def _src(p: str) -> SadbAddress:
    net = ipaddress.ip_network(p)
    return SadbAddress(ExtType.ADDRESS_PROXY, net.network_address, prefixlen=net.prefixlen)


def _dst(p: str) -> SadbAddress:
    net = ipaddress.ip_network(p)
    return SadbAddress(ExtType.X_ADDRESS_INNER_DST, net.network_address, prefixlen=net.prefixlen)


class Scene:
    """A compiled receiver with three SAs from the peer, inner source 10.1.0.0/16 and
    destinations 10.2.k.0/24, under a PROTECT policy of the tunnel to that peer; and their
    senders."""

    def __init__(self) -> None:
        _compiled_or_skip()
        self.rx = Receiver("compiled")
        _inbound_protect(self.rx.stack, "in", TUNNELS["peer"])
        self.sas = [
            self.rx.add_sa(0x500 + k, PEER, (_src("10.1.0.0/16"), _dst(f"10.2.{k}.0/24")))
            for k in range(3)
        ]
        self.senders = [EspSa(0x500 + k, EncryptAlg.AES_GCM_16, _key(0x500 + k)) for k in range(3)]

    def batch(self, inners: list[tuple[int, bytes]], entry: str = "run") -> list[bytes]:
        """Each (SA, inner packet) sealed by its sender and received in one receive; the
        packets delivered of it."""
        before = len(self.rx.got)
        self.rx.receive([self.senders[k].encrypt(p, 4) for k, p in inners], entry)
        return self.rx.got[before:]

    @staticmethod
    def spread(
        last: int = 9, order: tuple[int, ...] = (0, 1, 2, 0, 1, 2)
    ) -> list[tuple[int, bytes]]:
        """A packet inside each SA's box, for the SAs of `order`."""
        return [(k, ipv4("10.1.0.7", f"10.2.{k}.{last}")) for k in order]


@pytest.mark.parametrize("entry", ["run", "list"])
def test_a_packet_inside_a_kept_box_passes_without_the_python_check(entry: str) -> None:
    """The list entry's many-SA batch has one packet per SA (more of one SA make a run);
    the spread receive takes an SA's several packets in one call."""
    scene = Scene()
    rx = scene.rx
    order = (0, 1, 2) if entry == "list" else (0, 1, 2, 0, 1, 2)
    first = scene.spread(order=order)
    assert scene.batch(first, entry) == [p for _, p in first]
    made = rx.asked
    # The first packets of each SA make its box (the block's flags come at the opening).
    assert made == len(order)
    again = scene.spread(last=10, order=order)
    assert scene.batch(again, entry) == [p for _, p in again]
    assert rx.asked == made
    assert rx.drops() == {}


def test_an_spd_change_between_batches_judges_the_packets_afresh() -> None:
    scene = Scene()
    rx = scene.rx
    assert len(scene.batch(scene.spread())) == 6
    rx.stack.spd.add(policy("stop", "10.2.1.0/24", "10.1.0.0/16", direction=Direction.IN,
                            action=Action.DISCARD, priority=5))  # fmt: skip
    got = scene.batch(scene.spread(last=11))
    # SA 1's box now lies under the DISCARD policy: refused under inbound_policy.
    assert got == [p for k, p in scene.spread(last=11) if k != 1]
    assert rx.drops() == {"inbound_policy": 2}
    rx.stack.spd.remove("stop")
    assert len(scene.batch(scene.spread(last=12))) == 6
    assert rx.drops() == {"inbound_policy": 2}


def test_new_inner_selectors_from_update_are_checked() -> None:
    scene = Scene()
    rx = scene.rx
    assert len(scene.batch(scene.spread())) == 6
    # UPDATE moves SA 2 to 10.2.7.0/24: its packets to 10.2.2.x lie outside.
    Receiver.set_inner(scene.sas[2], (None, _dst("10.2.7.0/24")), "dst")
    got = scene.batch(scene.spread(last=13))
    assert got == [p for k, p in scene.spread(last=13) if k != 2]
    assert rx.drops() == {"inbound_policy": 2}
    moved = [(2, ipv4("10.1.0.7", "10.2.7.1")), (0, ipv4("10.1.0.7", "10.2.0.1"))]
    assert scene.batch(moved) == [p for _, p in moved]
    # Equal selectors, but other objects: asked afresh, and still passed.
    Receiver.set_inner(scene.sas[0], (_src("10.1.0.0/16"), _dst("10.2.0.0/24")), "both")
    asked = rx.asked
    again = [(k, p) for k, p in scene.spread(last=14) if k != 2]
    assert scene.batch(again) == [p for _, p in again]
    assert rx.asked == asked + 2  # SA 0's two packets: the first makes its box again
    assert rx.drops() == {"inbound_policy": 2}
    assert len(scene.batch(again)) == 4
    assert rx.asked == asked + 2


def test_a_packet_outside_the_box_is_dropped_by_name() -> None:
    scene = Scene()
    rx = scene.rx
    outside = [
        (0, ipv4("10.1.0.7", "10.2.1.1")),  # SA 1's destination on SA 0
        (1, ipv4("10.9.0.7", "10.2.1.1")),  # a source outside every box
        (2, ipv4("10.1.0.7", "10.2.2.1")),
    ]
    assert scene.batch(outside) == [outside[2][1]]
    assert rx.drops() == {"inbound_policy": 2}
    assert scene.batch(outside) == [outside[2][1]]
    assert rx.drops() == {"inbound_policy": 4}


def test_a_tunnel_to_any_peer_names_a_foreign_address() -> None:
    _compiled_or_skip()
    rx = Receiver("compiled")
    _inbound_protect(rx.stack, "any", TUNNELS["any"])
    rx.add_sa(0x600, PEER, (_src("10.1.0.5/32"), _dst("10.2.0.0/16")))
    rx.add_sa(0x601, PEER, (_src("10.1.0.6/32"), _dst("10.2.0.0/16")))
    senders = [EspSa(0x600 + k, EncryptAlg.AES_GCM_16, _key(0x600 + k)) for k in range(2)]
    for _ in range(2):
        packets = [
            senders[0].encrypt(ipv4("10.1.0.5", "10.2.3.4"), 4),
            senders[1].encrypt(ipv4("10.1.0.5", "10.2.3.4"), 4),  # SA 0's address on SA 1
            senders[1].encrypt(ipv4("10.1.0.6", "10.2.3.4"), 4),
        ]
        rx.receive(packets, "run")
    assert len(rx.got) == 4
    assert rx.drops() == {"inner_outside_sa": 2}


@pytest.mark.parametrize(
    ("src", "dst", "inside", "outside"),
    [
        ("0.0.0.0/0", "0.0.0.0/0", ("10.1.0.1", "10.2.0.1"), ("10.3.0.1", "10.2.0.1")),
        (None, "10.2.0.9/32", ("10.1.200.1", "10.2.0.9"), ("10.1.200.1", "10.2.0.8")),
        ("10.1.0.9/32", None, ("10.1.0.9", "10.2.5.5"), ("10.1.0.8", "10.2.5.5")),
        ("10.1.0.9/32", "10.2.0.9/32", ("10.1.0.9", "10.2.0.9"), ("10.1.0.9", "10.2.0.10")),
    ],
)
def test_boxes_of_every_prefix_length(
    src: str | None, dst: str | None, inside: tuple[str, str], outside: tuple[str, str]
) -> None:
    """/0 and a missing selector (a shift of 32: every address; the SPD's policy still
    bounds the packet) and /32."""
    _compiled_or_skip()
    rx = Receiver("compiled")
    _inbound_protect(rx.stack, "in", TUNNELS["peer"])
    pair = (None if src is None else _src(src), None if dst is None else _dst(dst))
    rx.add_sa(0x700, PEER, pair)
    rx.add_sa(0x701, PEER, (_src("10.1.0.0/16"), _dst("10.2.0.0/16")))
    senders = [EspSa(0x700 + k, EncryptAlg.AES_GCM_16, _key(0x700 + k)) for k in range(2)]
    for _ in range(3):
        rx.receive([
            senders[0].encrypt(ipv4(*inside), 4),
            senders[1].encrypt(ipv4("10.1.1.1", "10.2.1.1"), 4),
            senders[0].encrypt(ipv4(*outside), 4),
        ], "run")  # fmt: skip
    assert rx.got == [ipv4(*inside), ipv4("10.1.1.1", "10.2.1.1")] * 3
    assert rx.drops() == {"inbound_policy": 3}


def test_ipv4_with_options_takes_the_full_check() -> None:
    scene = Scene()
    rx = scene.rx
    assert len(scene.batch(scene.spread())) == 6
    asked = rx.asked
    packets = [(0, ipv4("10.1.0.7", "10.2.0.1", options=bytes([1, 1, 1, 0]))),
               (1, ipv4("10.1.0.7", "10.2.1.1", options=bytes(4))),
               (2, ipv4("10.1.0.7", "10.2.0.1", options=bytes(4)))]  # fmt: skip
    assert scene.batch(packets) == [p for _, p in packets[:2]]
    assert rx.asked == asked + 3
    assert rx.drops() == {"inbound_policy": 1}


def test_a_box_whose_verdict_is_a_refusal_drops_each_packet() -> None:
    """The SPD gives SA 1's box a tunnel to another peer: its kept verdict is a refusal,
    and the block keeps no box."""
    scene = Scene()
    rx = scene.rx
    rx.stack.spd.add(policy("other", "10.2.1.0/24", "10.1.0.0/16", direction=Direction.IN,
                            tunnel=TUNNELS["other"], priority=5))  # fmt: skip
    for last in (1, 2, 3):
        got = scene.batch(scene.spread(last=last))
        assert got == [p for k, p in scene.spread(last=last) if k != 1]
    assert rx.drops() == {"inbound_policy": 6}
    ctx = scene.sas[1].transform
    assert isinstance(ctx, EspContext)
    assert ctx.policy_memo[8] == "inbound_policy"


# -- the compiled receive against the Python path --------------------------------------------

_SA_ADDRS = (*ADDRS[4], "0.0.0.0")
_v4_prefixes = st.tuples(st.sampled_from(_SA_ADDRS), st.sampled_from([0, 1, 8, 16, 24, 31, 32]))


@st.composite
def _boxes(draw: st.DrawFn) -> tuple[SadbAddress | None, SadbAddress | None]:
    """An SA's first inner pair, mostly IPv4 (where the block keeps boxes)."""
    if draw(st.integers(0, 7)) == 0:
        v6 = st.tuples(st.sampled_from(ADDRS[6]), st.sampled_from([0, 48, 128]))
        return (ext(ExtType.ADDRESS_PROXY, draw(st.one_of(st.none(), v6))),
                ext(ExtType.X_ADDRESS_INNER_DST, draw(v6)))  # fmt: skip
    src = draw(st.one_of(st.none(), _v4_prefixes, _v4_prefixes))
    dst = draw(st.one_of(st.none(), _v4_prefixes, _v4_prefixes))
    return ext(ExtType.ADDRESS_PROXY, src), ext(ExtType.X_ADDRESS_INNER_DST, dst)


_packets = st.tuples(st.integers(0, 3), packet_specs, st.integers(0, 15))
_batches = st.lists(_packets, min_size=1, max_size=10)
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("toggle"), st.integers(0, 9)),
        st.tuples(st.just("inner"), st.integers(0, 3), _boxes(),
                  st.sampled_from(["both", "src", "dst"])),
        st.tuples(st.just("batch"), st.sampled_from(["run", "list"]), _batches, st.none()),
        st.tuples(st.just("batch"), st.just("run"), _batches, st.none()),
        # Packets made for the selectors of the SA of the first, received after UPDATE
        # changed them.
        st.tuples(st.just("batch"), st.sampled_from(["run", "run", "list"]), _batches,
                  st.one_of(st.none(),
                            st.tuples(_boxes(), st.sampled_from(["both", "src", "dst"])))),
    ),
    max_size=16,
)  # fmt: skip


class FlagWatch:
    """`open_boxed` as the packet path calls it, each flag held to what the memo of the
    packet's SA, as it stood at the opening, says of the plaintext (the check the
    receive made in Python before the block kept the box): a flag only for an opened
    IPv4 packet without options, not a dummy, inside a box kept at that generation
    whose verdict is to pass; and every such packet flagged."""

    def __init__(self, receiver: Receiver, spis: list[int]) -> None:
        self.receiver = receiver
        self.spis = spis
        self.wrong: list[tuple[int, int, bytes]] = []
        self.flagged = 0

    def __call__(
        self, handles: list[Any], packets: list[bytes], at: Any, generation: int
    ) -> tuple[Any, ...]:
        contexts = {}
        for spi in self.spis:
            ctx = self.receiver.sa(spi).transform
            if isinstance(ctx, EspContext):
                contexts[id(ctx.handle)] = ctx
        memos = [contexts[id(h)].policy_memo for h in handles]
        opened = open_boxed(handles, packets, at, generation)
        plain, offsets, status, lengths, next_headers, _, boxed = opened
        for k, memo in enumerate(memos):
            start, length = offsets[k], lengths[k]
            ip = bytes(plain[start : start + min(length, 20)])
            passes = (
                status[k] == 0
                and next_headers[k] != IPPROTO_NONE
                and memo[3] == 4
                and memo[8] is None
                and memo[0] == generation
                and len(ip) == 20
                and ip[0] == 0x45
                and int.from_bytes(ip[12:16], "big") >> memo[5] == memo[4]
                and int.from_bytes(ip[16:20], "big") >> memo[7] == memo[6]
            )
            self.flagged += boxed[k]
            if boxed[k] != passes:
                self.wrong.append((k, boxed[k], ip))
        return opened


@settings(max_examples=300, deadline=None)
@given(
    pool=st.lists(st.one_of(policies(), *[wide_policies()] * 4), min_size=9,
                  max_size=9),
    start=st.lists(st.sampled_from([False, True, True]), min_size=10, max_size=10),
    firsts=st.lists(_boxes(), min_size=4, max_size=4),
    peers=st.lists(st.sampled_from([PEER, PEER, PEER, OTHER]), min_size=4, max_size=4),
    steps=_steps,
)  # fmt: skip
def test_the_compiled_receive_judges_as_the_python_path(
    pool: list[Policy],
    start: list[bool],
    firsts: list[tuple[Any, Any]],
    peers: list[str],
    steps: list[tuple[Any, ...]],
) -> None:
    _compiled_or_skip()
    # The last: every IPv4 packet from any peer, in transport mode (boxes under it pass).
    pool = [*pool, policy("all", "0.0.0.0/0", "0.0.0.0/0", direction=Direction.IN)]
    worlds = [Receiver("compiled", pool), Receiver("python", pool)]
    for world in worlds:
        for i, on in enumerate(start):
            if on:
                world.toggle(i)
        for k in range(4):
            world.add_sa(0x900 + k, peers[k], firsts[k])
    senders = [EspSa(0x900 + k, EncryptAlg.AES_GCM_16, _key(0x900 + k)) for k in range(4)]
    expected: list[bytes] = []
    reference_sas = [worlds[1].sa(0x900 + k) for k in range(4)]
    watch = FlagWatch(worlds[0], [0x900 + k for k in range(4)])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(packet_path, "open_boxed", watch)
        _run_steps(worlds, senders, reference_sas, steps, expected)
    assert watch.wrong == []
    compiled_ctx = worlds[0].sa(0x900).transform
    python_ctx = worlds[1].sa(0x900).transform
    if isinstance(compiled_ctx, EspContext):
        assert compiled_ctx.handle is not None
    if isinstance(python_ctx, EspContext):
        assert python_ctx.handle is None
    _FLAGGED.append(watch.flagged)


#: How many packets the C blocks flagged in each example (for a look at the test's reach).
_FLAGGED: list[int] = []


def _run_steps(
    worlds: list[Receiver],
    senders: list[EspSa],
    reference_sas: list[SecurityAssociation],
    steps: list[tuple[Any, ...]],
    expected: list[bytes],
) -> None:
    for step in steps:
        if step[0] == "toggle":
            for world in worlds:
                world.toggle(step[1])
        elif step[0] == "inner":
            for world in worlds:
                Receiver.set_inner(world.sa(0x900 + step[1]), step[2], step[3])
        else:
            made = [(k, make_packet(spec, reference_sas[k]), dummy) for k, spec, dummy in step[2]]
            if step[3] is not None:  # on the SA of the batch's first packet
                for world in worlds:
                    Receiver.set_inner(world.sa(0x900 + made[0][0]), step[3][0], step[3][1])
            datagrams = []
            for k, inner, dummy in made:
                sa = reference_sas[k]
                if dummy == 0:
                    datagrams.append(senders[k].encrypt(inner, IPPROTO_NONE))
                    continue
                datagrams.append(senders[k].encrypt(inner, IPPROTO_IPV4))
                if reference(worlds[1].stack.spd, sa, inner) is None:
                    expected.append(inner)
            for world in worlds:
                world.receive(datagrams, step[1])
            compiled, python = worlds
            assert compiled.got == python.got
            assert compiled.path.counters() == python.path.counters()
            assert sorted(compiled.got) == sorted(expected)
            for k in range(4):
                ours, theirs = compiled.sa(0x900 + k), python.sa(0x900 + k)
                assert (ours.packets, ours.bytes) == (theirs.packets, theirs.bytes)


def _counted(sa: SecurityAssociation, traffic: list[SecurityAssociation]) -> tuple[object, ...]:
    return (sa.bytes, sa.packets, sa.usetime, sa.lastuse, sa.notice_at, traffic.count(sa))


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 200)), min_size=1, max_size=24),
    st.integers(0, 24),
    st.integers(1, 4000),
    st.sampled_from(["run", "list"]),
)
def test_the_compiled_receive_counts_against_lifetimes_as_the_python_path(
    packets: list[tuple[int, int]], cut: int, soft_bytes: int, entry: str
) -> None:
    """Packets the compiled receive flags inside their SA's box are counted against the
    SA's lifetimes in its C block, the others by `account`: in two receives (the first
    makes the boxes), each SA's counts, use times, notice and the wheel's news of it,
    and the EXPIREs of an aging pass after, are those of the Python path."""
    _compiled_or_skip()
    senders = [EspSa(0x500 + k, EncryptAlg.AES_GCM_16, _key(0x500 + k)) for k in range(3)]
    datagrams = [
        senders[k].encrypt(ipv4("10.1.0.7", f"10.2.{k}.9", body=bytes(size)), 4)
        for k, size in packets
    ]
    soft = SadbLifetime(ExtType.LIFETIME_SOFT, bytes=soft_bytes)
    seen: dict[str, list[object]] = {}
    for path in ("compiled", "python"):
        rx = Receiver(path)
        _inbound_protect(rx.stack, "in", TUNNELS["peer"])
        sas = [
            rx.add_sa(0x500 + k, PEER, (_src("10.1.0.0/16"), _dst(f"10.2.{k}.0/24")), soft)
            for k in range(3)
        ]
        traffic = rx.stack.sadb._expiry.traffic
        found: list[object] = []
        for part in (datagrams[:cut], datagrams[cut:]):
            if part:
                rx.receive(part, entry)
            found.append([_counted(sa, traffic) for sa in sas])
        found.append(list(rx.got))
        found.append(expired(rx.stack.sadb.age(1.5)))
        found.append([(sa.state, sa.notice_at) for sa in sas])
        seen[path] = found
    assert seen["compiled"] == seen["python"]


@pytest.mark.parametrize("tunnel", [True, False])
def test_only_a_tunnel_sa_keeps_a_box_in_its_block(tunnel: bool) -> None:
    """A transport SA's plaintext is a transport payload, not an IP packet: its block
    keeps no box, so the compiled receive flags (and counts against the lifetimes) none
    of its packets, however their bytes look; a tunnel SA's keeps the box its memo says."""
    _compiled_or_skip()
    with _esp_path("compiled"):
        esp = EspSa(0x777, EncryptAlg.AES_GCM_16, _key(0x777), replay_window=32)
    ctx = EspContext(esp, 4500, tunnel, None)
    assert ctx.handle is not None
    net, shift = _box_of("10.1.0.0/16")
    ctx.set_memo((7, None, None, 4, net, shift, net, shift, None))
    box = [ctx.handle.box_shift[0], ctx.handle.box_shift[1]]
    assert box == ([shift, shift] if tunnel else [0xFF, 0xFF])
    sender = EspSa(0x777, EncryptAlg.AES_GCM_16, _key(0x777))
    inside = ipv4("10.1.0.7", "10.1.2.3")  # inside the box, as bytes
    flags = open_boxed([ctx.handle], [sender.encrypt(inside, 4)], None, 7)[6]
    assert flags == (b"\x01" if tunnel else b"\x00")
    life = helper.sa_life(ctx.handle)
    assert life.tolist()[:2] == ([len(inside), 1] if tunnel else [0, 0])
