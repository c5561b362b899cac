"""Two key managers, each joined to its own stack by PF_KEY bytes only, IKE carried in
memory: a trap policy's ACQUIRE brings up the SAs in both stacks; COOKIEs under load."""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import logging
import struct
import warnings
from typing import Any

import pytest

from larval.daemon.config import parse_config
from larval.keymgr.manager import KeyManager
from larval.pfkey import PfkeyMessage, SadbMsgType, SaState, decode
from larval.sadb import Audience, PfkeyReply
from larval.stack import Stack
from larval.stack.packet_path import Datagram, PacketPath

warnings.filterwarnings("ignore", category=DeprecationWarning)

OUTER = {"a": "192.0.2.1", "b": "192.0.2.2"}
NET = {"a": "198.51.100.0/24", "b": "203.0.113.0/24"}


def config(me: str, peer: str, start_action: str, version: int = 2) -> dict[str, Any]:
    ike, esp = ("aes128gcm16-prfsha256-x25519", "aes128gcm16") if version == 2 else (
        "aes128-sha256-modp2048", "aes128-sha256")  # fmt: skip
    return {
        "daemon": {"addresses": [OUTER[me]]},
        "connections": {
            "s2s": {
                "local_addrs": [OUTER[me]],
                "remote_addrs": [OUTER[peer]],
                "version": version,
                "proposals": [ike],
                "encap": True,
                "children": {
                    "net": {
                        "local_ts": [NET[me]],
                        "remote_ts": [NET[peer]],
                        "esp_proposals": [esp],
                        "start_action": start_action,
                    }
                },
            }
        },
        "secrets": {"ike-s2s": {"ids": list(OUTER.values()), "secret": "a-test-psk-01234567"}},
    }


class Host:
    def __init__(
        self, me: str, peer: str, start_action: str, cookie_threshold: int = 10, version: int = 2
    ) -> None:
        cfg = parse_config(config(me, peer, start_action, version), f"{me}.toml")
        conns = [
            dataclasses.replace(
                c, ike=dataclasses.replace(c.ike, cookie_threshold=cookie_threshold)
            )
            for c in cfg.connections
        ]
        self.addr = ipaddress.ip_address(OUTER[me])
        self.stack = Stack(emit=self._from_stack)
        for policy in cfg.policies:
            self.stack.spd.add(policy)
        self.esp: list[Datagram] = []
        self.delivered: list[bytes] = []
        self.path = PacketPath(self.stack, send=self.esp.append, deliver=self.delivered.append)
        self.keymgr = KeyManager(conns, self._pfkey)
        self.inbox: list[PfkeyMessage] = []
        self.now = 0.0  # the stack's clock for PF_KEY requests (an SA's add time)

    def _pfkey(self, msg: PfkeyMessage) -> list[PfkeyMessage]:
        replies = self.stack.handle_pfkey(decode(msg.encode()), self.now)
        keep = (Audience.SENDER, Audience.ALL)
        return [decode(r.message.encode()) for r in replies if r.audience in keep]

    def _from_stack(self, replies: list[PfkeyReply]) -> None:
        wanted = (Audience.REGISTERED, Audience.REGISTERED_EXTENDED)
        self.inbox += [decode(r.message.encode()) for r in replies if r.audience in wanted]

    def pump(self, now: float) -> None:
        while self.inbox:
            self.keymgr.pfkey_message(self.inbox.pop(0), now)


def carry(a: Host, b: Host, now: float) -> int:
    """IKE datagrams both ways until quiet."""
    moved = 0
    a.now = b.now = now
    for _ in range(100):
        a.pump(now)
        b.pump(now)
        out = [(a, b, d) for d in a.keymgr.datagrams_to_send()]
        out += [(b, a, d) for d in b.keymgr.datagrams_to_send()]
        if not out:
            return moved
        for src, dst, (data, _) in out:
            dst.keymgr.receive_ike(data, (str(src.addr), 4500), dst.addr, now)
            moved += 1
    raise AssertionError("IKE did not settle within 100 rounds")


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


def test_ikev1_quick_mode_when_the_stack_refuses_getspi(caplog: pytest.LogCaptureFixture) -> None:
    """The responder's stack refuses the GETSPI for QM1: QM1 is dropped and logged, nothing
    raises, the ISAKMP SA stays, and no LARVAL SA is left behind."""
    a, b = Host("a", "b", "trap", version=1), Host("b", "a", "none", version=1)
    refuse = b._pfkey

    def no_spis(msg: PfkeyMessage) -> list[PfkeyMessage]:
        if msg.msg_type == SadbMsgType.GETSPI:
            return [dataclasses.replace(msg, errno=errno.ENOMEM, extensions=())]
        return refuse(msg)

    b.keymgr = KeyManager(list(b.keymgr.connections.values()), no_spis)
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
