"""Two nodes, each a key manager joined to its own stack by PF_KEY bytes only, IKE carried
in memory: a trap policy's ACQUIRE brings up the SAs in both stacks; COOKIEs under load."""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import logging
import struct
import warnings
from typing import Any

import pytest

from larval.crypto.randomness import RandomBytes, system_random
from larval.daemon.config import parse_config
from larval.keymgr.manager import KeyManager
from larval.node import Node
from larval.pfkey import Diagnostic, SadbMsgType, SaState, decode
from larval.stack.packet_path import Datagram, PacketPath

warnings.filterwarnings("ignore", category=DeprecationWarning)

OUTER = {"a": "192.0.2.1", "b": "192.0.2.2"}
NET = {"a": "198.51.100.0/24", "b": "203.0.113.0/24"}


def config(
    me: str,
    peer: str,
    start_action: str,
    version: int = 2,
    ike_rekey: str = "4h",
    child_rekey: str = "1h",
    suites: int | None = None,
    fragment_size: int = 1280,
) -> dict[str, Any]:
    """`suites`: the IKE version whose usual proposals to configure (default `version`)."""
    ike, esp = ("aes128gcm16-prfsha256-x25519", "aes128gcm16") if (suites or version) == 2 else (
        "aes128-sha256-modp2048", "aes128-sha256")  # fmt: skip
    return {
        "daemon": {"addresses": [OUTER[me]], "fragment_size": fragment_size},
        "connections": {
            "s2s": {
                "local_addrs": [OUTER[me]],
                "remote_addrs": [OUTER[peer]],
                "version": version,
                "proposals": [ike],
                "encap": True,
                "rekey_time": ike_rekey,
                "children": {
                    "net": {
                        "local_ts": [NET[me]],
                        "remote_ts": [NET[peer]],
                        "esp_proposals": [esp],
                        "start_action": start_action,
                        "rekey_time": child_rekey,
                    }
                },
            }
        },
        "secrets": {"ike-s2s": {"ids": list(OUTER.values()), "secret": "a-test-psk-01234567"}},
    }


class Host:
    def __init__(
        self,
        me: str,
        peer: str,
        start_action: str,
        cookie_threshold: int = 10,
        version: int = 2,
        ike_rekey: str = "4h",
        retransmit_tries: int = 5,
        retransmit_timeout: float = 4.0,
        child_rekey: str = "1h",
        suites: int | None = None,
        fragment_size: int = 1280,
        random_bytes: RandomBytes = system_random,
    ) -> None:
        """`random_bytes`: what the stack (SPIs, IVs) and the key manager draw from."""
        cfg = parse_config(
            config(me, peer, start_action, version, ike_rekey, child_rekey, suites, fragment_size),
            f"{me}.toml",
        )
        conns = [
            dataclasses.replace(
                c,
                ike=dataclasses.replace(
                    c.ike,
                    cookie_threshold=cookie_threshold,
                    retransmit_tries=retransmit_tries,
                    retransmit_timeout=retransmit_timeout,
                ),
            )
            for c in cfg.connections
        ]
        self.addr = ipaddress.ip_address(OUTER[me])
        self.node = Node(conns, random_bytes=random_bytes)
        self.stack = self.node.stack
        for policy in cfg.policies:
            self.stack.spd.add(policy)
        self.esp: list[Datagram] = []
        self.delivered: list[bytes] = []
        self.path = PacketPath(self.stack, send=self.esp.append, deliver=self.delivered.append)

    @property
    def keymgr(self) -> KeyManager:
        return self.node.keymgr

    def pump(self, now: float) -> None:
        """ACQUIREs and EXPIREs the stack sent since the last look, to the key manager."""
        while self.node.deliver(now):
            pass


def carry(a: Host, b: Host, now: float, *, a_port: int = 4500) -> int:
    """IKE datagrams both ways until quiet; A's arrive from `a_port` (a NAT's doing)."""
    moved = 0
    for _ in range(100):
        a.pump(now)
        b.pump(now)
        out = [(a, b, d) for d in a.keymgr.datagrams_to_send()]
        out += [(b, a, d) for d in b.keymgr.datagrams_to_send()]
        if not out:
            return moved
        for src, dst, (data, _) in out:
            port = a_port if src is a else 4500
            dst.keymgr.receive_ike(data, (str(src.addr), port), dst.addr, now)
            moved += 1
    raise AssertionError("IKE did not settle within 100 rounds")


def advance(a: Host, b: Host, now: float, end: float, *, drop: bool = False) -> float:
    """Let time pass to `end`, firing each key manager's timers when they fall due and
    carrying IKE both ways (or, with `drop`, losing all of it)."""
    while True:
        due = [t for t in (a.keymgr.get_timer(), b.keymgr.get_timer()) if t is not None]
        if not due or min(due) > end:
            return end
        now = max(now, min(due))
        for host in (a, b):
            host.keymgr.handle_timer(now)
        if drop:
            a.keymgr.datagrams_to_send(), b.keymgr.datagrams_to_send()
        else:
            carry(a, b, now)


def udp_packet(src: str, dst: str) -> bytes:
    udp = struct.pack("!HHHH", 4000, 53, 12, 0) + b"data"
    return struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 7, 0, 64, 17, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    ) + udp  # fmt: skip


def test_a_trapped_packet_brings_up_the_sas_in_both_stacks() -> None:
    a, b = Host("a", "b", "trap"), Host("b", "a", "none")
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)  # held, ACQUIRE
    assert carry(a, b, 0.0) == 4  # IKE_SA_INIT and IKE_AUTH, both ways
    assert len(a.esp) == 1  # the held packet left on the new SA
    b.path.inbound(a.esp[0].payload, b.addr.packed, 0.0)
    assert len(b.delivered) == 1
    for host in (a, b):
        status = host.keymgr.status()
        assert [s["state"] for s in status["ike_sas"]] == ["established"]
        (child,) = status["child_sas"]
        sa = host.stack.sadb.lookup_esp(int(child["spi_in"], 16), host.addr.packed)
        assert sa is not None and sa.state == SaState.MATURE


def test_cookies_under_load() -> None:
    # With no half-open allowance every IKE_SA_INIT without a valid COOKIE gets one.
    a, b = Host("a", "b", "trap"), Host("b", "a", "none", cookie_threshold=0)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    # IKE_SA_INIT -->  <-- N(COOKIE);  IKE_SA_INIT {N(COOKIE), ...} -->  <-- ...;  IKE_AUTH ...
    assert carry(a, b, 0.0) == 6
    assert b.keymgr.cookies_sent == 1
    assert a.keymgr.status()["ike_sas"][0]["state"] == "established"


def test_an_idle_child_sa_is_closed_after_its_inactivity_time() -> None:
    a, b = Host("a", "b", "trap"), Host("b", "a", "none")
    for host in (a, b):
        (conn,) = host.keymgr.connections.values()
        child = dataclasses.replace(conn.children[0], inactivity=30)
        host.keymgr.connections = {"s2s": dataclasses.replace(conn, children=(child,))}
        host.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    carry(a, b, 0.0)
    assert a.keymgr.status()["child_sas"]
    # No traffic for 30 s: the stack's idle EXPIRE makes the key manager DELETE the CHILD_SA.
    a.stack.age(31.0)
    carry(a, b, 31.0)
    assert a.keymgr.status()["child_sas"] == [] and b.keymgr.status()["child_sas"] == []
    assert len(a.stack.sadb) == 0 and len(b.stack.sadb) == 0


def test_a_refused_add_is_logged_with_the_stacks_errno_and_diagnostic(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The key manager reads only the base header of what answers its UPDATE and ADD: the
    stack's refusal of the outbound ADD is logged with its errno and diagnostic, the
    accepted UPDATE is not."""
    a, b = Host("a", "b", "trap"), Host("b", "a", "none")
    port = a.node.pfkey

    def no_adds(request: bytes) -> list[bytes]:
        msg = decode(request)
        if msg.msg_type == SadbMsgType.ADD:
            refusal = dataclasses.replace(
                msg, errno=errno.EEXIST, diagnostic=Diagnostic.DUPLICATE_SA, extensions=()
            )
            return [refusal.encode()]
        return port(request)

    a.node.keymgr = KeyManager(list(a.keymgr.connections.values()), no_adds)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    with caplog.at_level(logging.INFO, logger="larval"):
        carry(a, b, 0.0)
        a.pump(0.0)
    (child,) = a.keymgr.status()["child_sas"]
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused == [
        f"s2s: ADD of SPI {child['spi_out']} refused: errno {errno.EEXIST}, "
        f"diagnostic {Diagnostic.DUPLICATE_SA}"
    ]


def test_ikev1_quick_mode_when_the_stack_refuses_getspi(caplog: pytest.LogCaptureFixture) -> None:
    """The responder's stack refuses the GETSPI for QM1: QM1 is dropped and logged, nothing
    raises, the ISAKMP SA stays, and no LARVAL SA is left behind."""
    a, b = Host("a", "b", "trap", version=1), Host("b", "a", "none", version=1)
    port = b.node.pfkey

    def no_spis(request: bytes) -> list[bytes]:
        msg = decode(request)
        if msg.msg_type == SadbMsgType.GETSPI:
            return [dataclasses.replace(msg, errno=errno.ENOMEM, extensions=()).encode()]
        return port(request)

    b.node.keymgr = KeyManager(list(b.keymgr.connections.values()), no_spis)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    with caplog.at_level(logging.INFO, logger="larval"):
        carry(a, b, 0.0)  # Main Mode, then QM1, which B cannot answer
    assert "the stack gave no SPI" in caplog.text
    for host in (a, b):
        assert [s["state"] for s in host.keymgr.status()["ike_sas"]] == ["established"]
        assert host.keymgr.status()["child_sas"] == []
    assert len(b.stack.sadb) == 0 and a.esp == []


def test_ikev1_soft_expire_starts_a_new_quick_mode() -> None:
    """IKEv1 has no rekey exchange: the soft EXPIRE makes a new Quick Mode on the same
    ISAKMP SA; the old IPsec SAs live on (DYING) to their hard lifetime."""
    a, b = Host("a", "b", "trap", version=1), Host("b", "a", "none", version=1)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    carry(a, b, 0.0)
    (old,) = [c["spi_in"] for c in a.keymgr.status()["child_sas"]]
    sa = a.stack.sadb.lookup_esp(int(old, 16), a.addr.packed)
    assert sa is not None and sa.soft is not None and sa.hard is not None
    assert sa.soft.addtime < sa.hard.addtime
    now = float(sa.soft.addtime + 1)  # past the soft lifetime, before the hard one
    a.stack.age(now)
    carry(a, b, now)
    assert len(a.keymgr.status()["ike_sas"]) == len(b.keymgr.status()["ike_sas"]) == 1
    for host in (a, b):
        assert len(host.keymgr.status()["child_sas"]) == 2
    new = next(c for c in a.keymgr.status()["child_sas"] if c["spi_in"] != old)
    sa_new = a.stack.sadb.lookup_esp(int(new["spi_in"], 16), a.addr.packed)
    assert sa_new is not None and sa_new.state == SaState.MATURE
    assert sa.state == SaState.DYING
    # B's old SAs reach their own soft lifetime later: the Quick Mode A started already
    # replaced them, so no second one follows.
    (old_out,) = [c["spi_out"] for c in a.keymgr.status()["child_sas"] if c["spi_in"] == old]
    sa_b = b.stack.sadb.lookup_esp(int(old_out, 16), b.addr.packed)
    assert sa_b is not None and sa_b.soft is not None and sa_b.hard is not None
    later = float(max(now, sa_b.soft.addtime) + 1)
    assert later < sa_b.hard.addtime
    b.stack.age(later)
    assert sa_b.state == SaState.DYING
    assert carry(a, b, later) == 0  # no Quick Mode
    for host in (a, b):
        assert len(host.keymgr.status()["child_sas"]) == 2


def test_ikev1_quick_mode_started_by_the_phase1_responder() -> None:
    """Either end may start a Quick Mode on the ISAKMP SA: here B, which answered Main
    Mode, renews the CHILD_SA when its own SAs reach their soft lifetime first."""
    a, b = Host("a", "b", "trap", version=1), Host("b", "a", "none", version=1)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    carry(a, b, 0.0)
    (old,) = [c["spi_in"] for c in b.keymgr.status()["child_sas"]]
    sa = b.stack.sadb.lookup_esp(int(old, 16), b.addr.packed)
    assert sa is not None and sa.soft is not None
    now = float(sa.soft.addtime + 1)
    b.stack.age(now)
    carry(a, b, now)
    for host in (a, b):
        assert len(host.keymgr.status()["child_sas"]) == 2
        new = next(c for c in host.keymgr.status()["child_sas"] if c["spi_in"] != old)
        sa_new = host.stack.sadb.lookup_esp(int(new["spi_in"], 16), host.addr.packed)
        assert sa_new is not None and sa_new.state == SaState.MATURE


def esp_flows(a: Host, b: Host, now: float) -> bool:
    """A packet from A's network reaches B's through the SAs in both stacks."""
    sent, delivered = len(a.esp), len(b.delivered)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), now)
    if len(a.esp) != sent + 1:
        return False
    b.path.inbound(a.esp[-1].payload, b.addr.packed, now)
    return len(b.delivered) == delivered + 1


def ike_states(host: Host) -> list[tuple[str, str]]:
    return sorted((s["state"], s["spi_i"]) for s in host.keymgr.status()["ike_sas"])


@pytest.mark.parametrize("reauthenticator", ["a", "b"])
def test_ikev1_reauthentication_replaces_the_isakmp_sa_and_keeps_the_child_sa(
    reauthenticator: str,
) -> None:
    """At its rekey_time an end starts a new Main Mode; when it is up, the new ISAKMP SA
    takes the CHILD_SA over at both ends, the IPsec SAs stay as they are, and the old
    ISAKMP SA is deleted 10 s later, alone. A is the Phase 1 initiator, B the responder."""
    rekey = {"a": "4h", "b": "4h", reauthenticator: "100s"}
    a = Host("a", "b", "trap", version=1, ike_rekey=rekey["a"])
    b = Host("b", "a", "none", version=1, ike_rekey=rekey["b"])
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    carry(a, b, 0.0)
    children = [h.keymgr.status()["child_sas"] for h in (a, b)]
    ((_, first),) = ike_states(a)
    assert ike_states(b) == [("established", first)]
    # The reauthenticating end's lifetime is 110 s (its rekey_time and a tenth; a responder
    # takes the shorter of the offer and its own), and it is due by 100 s or, bound by
    # that lifetime as B is, by 97% of it.
    (due,) = {"a": a, "b": b}[reauthenticator].keymgr.status()["ike_sas"]
    assert due["expires_at"] == pytest.approx(110.0, abs=0.1)
    assert 90.0 <= due["rekey_at"] <= 106.7
    # A reauthenticates at 90-100 s; B, bound by the 110 s lifetime it agreed, at 97% of
    # it, less up to 1%.
    now = 0.0
    while [s for s, _ in ike_states(a)] == ["established"] and now < 107.0:
        now = advance(a, b, now, now + 0.5)
    states = ike_states(a)
    assert [s for s, _ in states] == ["established", "rekeyed"] and ike_states(b) == states
    ((_, second),) = [(s, spi) for s, spi in states if s == "established"]
    assert second != first
    assert [h.keymgr.status()["child_sas"] for h in (a, b)] == children  # untouched
    assert len(a.stack.sadb) == len(b.stack.sadb) == 2
    assert esp_flows(a, b, now)
    # The old ISAKMP SA goes with a D(ISAKMP) alone.
    now = advance(a, b, now, now + 10.5)
    assert ike_states(a) == ike_states(b) == [("established", second)]
    assert [h.keymgr.status()["child_sas"] for h in (a, b)] == children
    assert esp_flows(a, b, now)
    # The CHILD_SA belongs to the new ISAKMP SA: deleting that deletes the SAs.
    assert a.keymgr.down("s2s", now) == 1
    carry(a, b, now)
    assert len(a.stack.sadb) == len(b.stack.sadb) == 0


def test_ikev1_reauthentication_again_and_again() -> None:
    """Every ~100 s for an hour: each new ISAKMP SA takes the CHILD_SA over from the last."""
    a = Host("a", "b", "trap", version=1, ike_rekey="100s")
    b = Host("b", "a", "none", version=1)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    carry(a, b, 0.0)
    children = [h.keymgr.status()["child_sas"] for h in (a, b)]
    seen = set()
    now = 0.0
    for minute in range(1, 51):
        now = advance(a, b, now, minute * 60.0)
        seen.update(spi for _, spi in ike_states(a))
        assert [h.keymgr.status()["child_sas"] for h in (a, b)] == children
    assert len(seen) >= 30  # 3000 s at 90-100 s each
    assert len(ike_states(a)) <= 2 and len(ike_states(b)) <= 2
    assert esp_flows(a, b, now)


def test_ikev1_reauthentication_that_fails_is_tried_again() -> None:
    a = Host("a", "b", "trap", version=1, ike_rekey="1000s", retransmit_tries=1)
    b = Host("b", "a", "none", version=1)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    carry(a, b, 0.0)
    ((_, first),) = ike_states(a)
    # The new Main Mode (at 900-1000 s) gets no answer, twice, and is given up.
    now = advance(a, b, 0.0, 1012.0, drop=True)
    assert ike_states(a) == [("established", first)]
    # A tries again halfway to the end of the old ISAKMP SA's 1100 s (B's timers, which
    # would reauthenticate too, are left alone here), and this time it is carried.
    retry = a.keymgr.get_timer()
    assert retry is not None and now < retry < 1099.0
    a.keymgr.handle_timer(retry)
    carry(a, b, retry)
    ((_, second),) = [(s, spi) for s, spi in ike_states(a) if s == "established"]
    assert second != first and ike_states(b) == ike_states(a)
    assert esp_flows(a, b, retry)


def test_ikev1_initial_contact_clears_what_the_restarted_peer_forgot() -> None:
    """A restarts with nothing: its first Main Mode carries INITIAL-CONTACT, and B deletes
    the old ISAKMP SA and its IPsec SAs instead of keeping them beside the new ones."""
    a, b = Host("a", "b", "trap", version=1), Host("b", "a", "none", version=1)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    carry(a, b, 0.0)
    ((old_child,),) = [[c["spi_in"] for c in b.keymgr.status()["child_sas"]]]
    restarted = Host("a", "b", "trap", version=1)
    restarted.keymgr.start(5.0)
    restarted.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 5.0)
    carry(restarted, b, 5.0)
    assert [s for s, _ in ike_states(b)] == ["established"]
    (child,) = b.keymgr.status()["child_sas"]
    assert child["spi_in"] != old_child
    assert b.stack.sadb.lookup_esp(int(old_child, 16), b.addr.packed) is None
    assert len(b.stack.sadb) == 2
    now = advance(restarted, b, 5.0, 5.5)  # the outbound SA waits for QM3's delivery
    assert esp_flows(restarted, b, now)


def test_ikev1_quick_mode_in_flight_when_the_isakmp_sa_is_replaced() -> None:
    """B renews the CHILD_SA with a Quick Mode on the ISAKMP SA that A reauthenticates
    meanwhile: the Quick Mode finishes on the replaced ISAKMP SA (REKEYED at both ends), and
    its CHILD_SA goes to the new one with the others; the old one's DELETE takes none."""
    a = Host("a", "b", "trap", version=1, ike_rekey="100s")
    # B's CHILD_SA reaches its soft lifetime at 75-80 s; QM1 is resent only after 30 s.
    b = Host("b", "a", "none", version=1, child_rekey="80s", retransmit_timeout=30.0)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    carry(a, b, 0.0)
    b.stack.age(81.0)
    b.pump(81.0)
    qm1 = b.keymgr.datagrams_to_send()
    assert len(qm1) == 1  # held back while A reauthenticates (at 90-100 s)
    now = 81.0
    while [s for s, _ in ike_states(a)] == ["established"] and now < 101.0:
        now = advance(a, b, now, now + 0.5)
    assert [s for s, _ in ike_states(a)] == [s for s, _ in ike_states(b)] == [
        "established", "rekeyed"]  # fmt: skip
    a.keymgr.receive_ike(qm1[0][0], (str(b.addr), 4500), a.addr, now)
    carry(a, b, now)  # <-- QM2 on the replaced ISAKMP SA, QM3 -->
    for host in (a, b):
        assert len(host.keymgr.status()["child_sas"]) == 2
    now = advance(a, b, now, now + 10.5)  # the replaced ISAKMP SAs go
    assert len(ike_states(a)) == len(ike_states(b)) == 1
    for host in (a, b):
        assert len(host.keymgr.status()["child_sas"]) == 2
        assert len(host.stack.sadb) == 4
    assert a.keymgr.down("s2s", now) == 1  # the new ISAKMP SA holds both CHILD_SAs
    carry(a, b, now)
    assert len(a.stack.sadb) == len(b.stack.sadb) == 0


@pytest.mark.parametrize(("initiator", "responder"), [(2, 1), (1, 2)])
def test_an_ike_version_the_responder_has_no_connection_for_is_refused(
    initiator: int, responder: int, caplog: pytest.LogCaptureFixture
) -> None:
    """As strongSwan: IKE_SA_INIT (or MM1) for which no connection of that version exists
    gets NO_PROPOSAL_CHOSEN at once, and the initiator gives up instead of retransmitting."""
    a = Host("a", "b", "trap", version=initiator)
    b = Host("b", "a", "none", version=responder)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    with caplog.at_level(logging.INFO, logger="larval"):
        assert carry(a, b, 0.0) == 2  # the opening message, and the refusal
    assert "sending NO_PROPOSAL_CHOSEN" in caplog.text
    assert "CHILD_SA net failed" in caplog.text and "refused: NO_PROPOSAL_CHOSEN" in caplog.text
    assert a.keymgr.status()["ike_sas"] == [] and b.keymgr.status()["ike_sas"] == []
    assert a.keymgr.get_timer() is None  # nothing left to retransmit


@pytest.mark.parametrize("initiator", [1, 2])
def test_version_0_answers_both_ike_versions(initiator: int) -> None:
    """swanctl's `version = 0`: the responder takes IKEv1 and IKEv2 alike."""
    a = Host("a", "b", "trap", version=initiator)
    b = Host("b", "a", "none", version=0, suites=initiator)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    carry(a, b, 0.0)
    for host in (a, b):
        (ike,) = host.keymgr.status()["ike_sas"]
        assert ike["state"] == "established" and ike["version"] == initiator
        assert len(host.keymgr.status()["child_sas"]) == 1
    now = advance(a, b, 0.0, 0.5)  # IKEv1: the outbound SA waits for QM3 to land
    assert esp_flows(a, b, now)


@pytest.mark.parametrize("version", [2, 1])
def test_an_opening_message_that_does_not_decode_leaves_nothing(version: int) -> None:
    """An IKE_SA_INIT or MM1 whose header is right and whose body is garbage: dropped, and
    no session is kept for it (one per forged SPI would fill memory)."""
    b = Host("b", "a", "none", version=version)
    b.keymgr.start(0.0)
    first = (33, 0x20, 34, 0x08) if version == 2 else (1, 0x10, 2, 0)  # SA, version, INIT/MM
    for n in range(50):
        header = n.to_bytes(8, "big") + bytes(8) + bytes(first) + struct.pack("!II", 0, 32)
        b.keymgr.receive_ike(header + bytes([0, 0, 0, 4]), ("192.0.2.1", 500), b.addr, 0.0)
    assert b.keymgr.sessions == {} and b.keymgr.status()["ike_sas"] == []


@pytest.mark.parametrize("version", [2, 1])
def test_the_peers_nat_mapping_changes_and_esp_follows(version: int) -> None:
    """A's IKE comes from another port (its NAT forgot the old mapping): once a message
    from there proves itself, B answers there and moves its outbound SA's NAT-T port, so
    ESP in UDP follows (RFC 7296 §2.23); the SA is otherwise left as it is. What A sends
    from the new port: an IKE SA rekey (IKEv2), a Quick Mode renewing the CHILD_SA, whose
    old SAs live on (IKEv1)."""
    a = Host("a", "b", "trap", version=version, ike_rekey="100s" if version == 2 else "4h")
    b = Host("b", "a", "none", version=version)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    carry(a, b, 0.0)
    (child,) = b.keymgr.status()["child_sas"]
    b.path.outbound(udp_packet("203.0.113.9", "198.51.100.7"), 0.0)
    assert b.esp[-1].port == 4500
    if version == 2:
        now = 100.0  # A's IKE SA is due for rekeying by then
        a.keymgr.handle_timer(now)
    else:
        (a_child,) = a.keymgr.status()["child_sas"]
        sa = a.stack.sadb.lookup_esp(int(a_child["spi_in"], 16), a.addr.packed)
        assert sa is not None and sa.soft is not None
        now = float(sa.soft.addtime + 1)
        a.stack.age(now)
    assert carry(a, b, now, a_port=31000) >= 2
    ikes = [s for s in b.keymgr.status()["ike_sas"] if s["state"] == "established"]
    assert [s["remote_port"] for s in ikes] == [31000]
    out_sa = b.stack.sadb.lookup_esp(int(child["spi_out"], 16), a.addr.packed)
    assert out_sa is not None and out_sa.natt_rem is not None
    assert out_sa.natt_rem.port == 31000
    b.path.outbound(udp_packet("203.0.113.9", "198.51.100.7"), now)
    assert b.esp[-1].port == 31000


def _exchange_until_qm2(a: Host, b: Host, qm_rtt: float) -> float:
    """A's first packet ACQUIREs; Main Mode at once, then QM1 at 0.0 and QM2 back at
    `qm_rtt`; A has sent QM3 then, which is held. Returns the time QM2 arrived."""
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    for _ in range(20):
        a.pump(0.0)
        b.pump(0.0)
        out = [(a, b, d) for d in a.keymgr.datagrams_to_send()]
        out += [(b, a, d) for d in b.keymgr.datagrams_to_send()]
        qm = [m for m in out if len(m[2][0]) > 17 and m[2][0][18] == 32]  # Quick Mode
        for src, dst, (data, _) in out:
            if (src, dst, (data, _)) in qm and src is b:
                a.keymgr.receive_ike(data, (str(b.addr), 4500), a.addr, qm_rtt)  # QM2
                a.keymgr.datagrams_to_send()  # QM3, kept from B
                return qm_rtt
            dst.keymgr.receive_ike(data, (str(src.addr), 4500), dst.addr, 0.0)
    raise AssertionError("no QM2")


@pytest.mark.parametrize("qm_rtt", [0.0, 0.1, 5.0])
def test_ikev1_outbound_sa_waits_a_round_trip_after_qm3(qm_rtt: float) -> None:
    """QM2 --> A, QM3 <-- A: B fills its inbound SA in only when QM3 arrives, so A's
    outbound SA (and the first packet, held since the ACQUIRE) waits one QM1 -> QM2 round
    trip, within 20 ms and 300 ms; a peer without a LARVAL hold would drop it otherwise."""
    a, b = Host("a", "b", "trap", version=1), Host("b", "a", "none", version=1)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    at = _exchange_until_qm2(a, b, qm_rtt)
    wait = min(max(qm_rtt, 0.02), 0.3)
    (child,) = a.keymgr.status()["child_sas"]
    out_spi = int(child["spi_out"], 16)
    assert a.stack.sadb.lookup_esp(out_spi, b.addr.packed) is None and a.esp == []
    assert a.keymgr.get_timer() == pytest.approx(at + wait)
    a.keymgr.handle_timer(at + wait - 0.001)
    assert a.stack.sadb.lookup_esp(out_spi, b.addr.packed) is None and a.esp == []
    a.keymgr.handle_timer(at + wait)
    assert a.stack.sadb.lookup_esp(out_spi, b.addr.packed) is not None
    assert len(a.esp) == 1  # the first packet, held since the ACQUIRE, leaves now


def test_ikev1_a_child_sa_gone_before_its_outbound_sa_was_added_adds_none() -> None:
    a, b = Host("a", "b", "trap", version=1), Host("b", "a", "none", version=1)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    _exchange_until_qm2(a, b, 0.0)
    assert a.keymgr.down("s2s", 0.01) == 1
    a.keymgr.handle_timer(1.0)
    assert len(a.stack.sadb) == 0 and a.esp == []


def test_timers_come_due_one_ike_sa_at_a_time() -> None:
    """Each IKE SA is filed under its own next timer: `get_timer` is the earliest, and
    `handle_timer` retransmits what is due and nothing else (RFC 7296 §2.1), until the
    unanswered IKE_SA_INITs are given up and no timer is left."""
    a = Host("a", "b", "none", retransmit_tries=1)
    a.keymgr.start(0.0)
    for t in (0.0, 1.0, 2.0):
        a.keymgr.initiate("s2s", "net", t)
    assert len(a.keymgr.datagrams_to_send()) == 3
    assert a.keymgr.get_timer() == 4.0
    # The next wait is 1.8 times the first, from the retransmission (4.5 + 7.2).
    for now, due_next in ((4.5, 5.0), (5.0, 6.0), (6.5, 4.5 + 4.0 * 1.8)):
        a.keymgr.handle_timer(now)
        assert len(a.keymgr.datagrams_to_send()) == 1  # one IKE_SA_INIT once more
        assert a.keymgr.get_timer() == due_next
    a.keymgr.handle_timer(100.0)  # past every second timeout: all three given up
    assert a.keymgr.datagrams_to_send() == []
    assert a.keymgr.get_timer() is None and a.keymgr.sessions == {}


def test_the_responder_of_a_child_rekey_sends_on_the_new_sa_only_after_the_delete() -> None:
    """RFC 7296 §1.3.3, §2.8: the rekey's initiator installs its inbound SA when the answer
    arrives, so the responder keeps sending on the old CHILD_SA until the initiator's
    DELETE of it (as charon does); then on the new one. Nothing sent meanwhile is lost."""
    a, b = Host("a", "b", "trap", child_rekey="100s"), Host("b", "a", "none")
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    carry(a, b, 0.0)
    (old,) = b.keymgr.status()["child_sas"]

    def b_sends(now: float) -> bytes:
        b.path.outbound(udp_packet("203.0.113.9", "198.51.100.7"), now)
        esp = b.esp[-1].payload
        a.path.inbound(esp, a.addr.packed, now)
        return esp[:4]

    now = 101.0  # past A's soft lifetime (rekey_time less its jitter)
    a.stack.age(now)
    a.pump(now)
    (request,) = a.keymgr.datagrams_to_send()  # CREATE_CHILD_SA { N(REKEY_SA), ... } -->
    b.keymgr.receive_ike(request[0], (str(a.addr), 4500), b.addr, now)
    b.pump(now)
    (answer,) = b.keymgr.datagrams_to_send()  # <-- CREATE_CHILD_SA
    assert len(b.keymgr.status()["child_sas"]) == 2
    assert b_sends(now).hex() == old["spi_out"]  # A has no inbound SA of the new one yet
    a.keymgr.receive_ike(answer[0], (str(b.addr), 4500), a.addr, now)
    a.pump(now)
    assert b_sends(now).hex() == old["spi_out"]  # still, until A's DELETE arrives
    carry(a, b, now)  # INFORMATIONAL { D(old) } -->  <-- { D(old) }
    (new,) = b.keymgr.status()["child_sas"]
    assert new["spi_in"] != old["spi_in"]
    assert b_sends(now).hex() == new["spi_out"]
    assert len(a.delivered) == 3  # every packet B sent arrived
