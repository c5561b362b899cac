"""The key manager keeps its IKE SAs and CHILD_SAs in a state store and, started again
from it, comes back as it was: the same SPIs and keys in the stack, the same Message IDs
on the wire (`larval.keymgr.persist`). Two key managers; one is "killed" (dropped
without a word) and a new one started from its store."""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import logging
from typing import Any

import pytest

import larval.node as node_module
from larval.daemon.config import parse_config
from larval.ike.state import IkeSaState
from larval.keymgr.manager import ChildRecord
from larval.keymgr.persist import ike_key
from larval.keymgr.road_warrior import host_state
from larval.pfkey import SadbMsgType
from larval.pfkey.requests import by_spi
from larval.stack import Stack
from larval.stack.packet_path import Datagram, PacketPath
from larval.store import CHILD_SA, ESP_SEQ, IKE_SA, LEASE, MemoryStore
from tests.ikev1 import test_client_vips as v1_vips
from tests.keymgr import test_manager as manager_test
from tests.keymgr import test_pools_ikev2 as pools_test
from tests.keymgr import test_road_warrior as rw_test
from tests.keymgr.test_manager import Host, advance, carry, udp_packet


def _up(version: int, store: MemoryStore) -> tuple[Host, Host]:
    a, b = Host("a", "b", "trap", version=version), Host("b", "a", "none", version=version)
    a.keymgr.attach_store(store)
    for host in (a, b):
        host.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)  # held: ACQUIRE
    carry(a, b, 0.0)
    advance(a, b, 0.0, 2.0)  # IKEv1: the outbound SA waits a round trip after QM3
    b.path.inbound(a.esp[0].payload, b.addr.packed, 2.0)
    assert len(b.delivered) == 1
    return a, b


def _restarted(version: int, store: MemoryStore, now: float) -> Host:
    a = Host("a", "b", "trap", version=version)
    a.keymgr.attach_store(store)
    a.keymgr.start(now)
    return a


def _soft_expired(a: Host) -> tuple[ChildRecord, float]:
    """a's one CHILD_SA, aged past its soft lifetime and the EXPIRE handled: the time."""
    (child,) = a.keymgr.children.values()
    sa = a.stack.sadb.lookup_esp(child.spi_in, a.addr.packed)
    assert sa is not None and sa.soft is not None
    now = float(sa.soft.addtime + 1)
    a.stack.age(now)
    a.pump(now)
    return child, now


@pytest.mark.parametrize("version", [2, 1])
def test_a_restarted_key_manager_has_the_same_sas_and_message_ids(
    version: int, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    a, b = _up(version, store)
    records = store.load()
    (ike,) = a.keymgr.sessions.values()
    assert list(records[IKE_SA]) == [f"{ike.spi_i.hex()}/{ike.spi_r.hex()}"]
    (child,) = a.keymgr.children.values()
    assert list(records[CHILD_SA]) == [f"{child.spi_in:08x}"]
    doc = json.loads(records[CHILD_SA][f"{child.spi_in:08x}"])
    assert set(doc["sas"]) == {"in", "out"} and doc["hard_at"] > doc["soft_at"] > 0
    assert doc["ike_sa"] == f"{ike.spi_i.hex()}/{ike.spi_r.hex()}"

    caplog.set_level(logging.INFO, "larval.keymgr")
    a2 = _restarted(version, store, 10.0)
    (ike2,) = a2.keymgr.sessions.values()
    assert (ike2.spi_i, ike2.spi_r) == (ike.spi_i, ike.spi_r)
    assert set(a2.keymgr.children) == {child.spi_in}
    assert "restored 1 IKE_SA(s) and 1 CHILD_SA(s)" in caplog.text
    if version == 2:  # how each end authenticated, for status, comes back too
        (before,), (after,) = a.keymgr.status()["ike_sas"], a2.keymgr.status()["ike_sas"]
        assert after["auth_remote"] is not None and after["auth_remote"]["method"] == "psk"
        assert after["auth_remote"] == before["auth_remote"]
        assert after["auth_local"] == before["auth_local"]
    # Both SAs are back in the stack, with the keys b uses: what b sends reaches a2.
    for spi, dst in ((child.spi_in, a2.addr), (child.spi_out, b.addr)):
        assert a2.stack.sadb.lookup_esp(spi, dst.packed) is not None
    b.path.outbound(udp_packet("203.0.113.9", "198.51.100.7"), 10.0)
    a2.path.inbound(b.esp[-1].payload, a2.addr.packed, 10.0)
    assert len(a2.delivered) == 1
    # An exchange after the restart takes the next Message ID: b accepts a2's DELETE.
    assert carry(a2, b, 10.0) == 0  # no new IKE_SA_INIT / Main Mode
    a2.keymgr.down("s2s", 11.0)
    carry(a2, b, 11.0)
    assert b.keymgr.status()["ike_sas"] == []
    assert b.keymgr.children == {}
    # And what went is gone from the store.
    assert store.load() == {}


@pytest.mark.parametrize("version", [2, 1])
def test_an_acquire_queued_before_the_restore_added_its_sa_starts_no_child_sa(
    version: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The restore ADDs the SAs while packets flow (a daemon's dataplane, a takeover's):
    a packet sent before the outbound SA is there again is held and its ACQUIRE queued.
    The ADD sends the packet; the ACQUIRE, read after, starts no second CHILD_SA."""
    store = MemoryStore()
    a, b = _up(version, store)
    (child,) = a.keymgr.children.values()
    a2 = Host("a", "b", "trap", version=version)
    a2.keymgr.attach_store(store)
    a2.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 10.0)
    assert a2.node.pending and a2.esp == []  # held, its ACQUIRE not yet read
    a2.keymgr.start(10.0)
    assert len(a2.esp) == 1  # the restore's ADD sent it
    caplog.set_level(logging.INFO, "larval.keymgr")
    assert carry(a2, b, 10.0) == 0  # the ACQUIRE read: nothing to negotiate
    assert not a2.node.pending
    assert set(a2.keymgr.children) == {child.spi_in} and len(b.keymgr.children) == 1
    assert f"CHILD_SA {child.spi_in:08x}/{child.spi_out:08x}, installed since it was sent" in (
        caplog.text
    )
    assert a2.esp[0].payload[:4] == child.spi_out.to_bytes(4, "big")  # the restored SA


@pytest.mark.parametrize("version", [2, 1])
def test_an_acquire_for_a_child_sa_whose_outbound_sa_the_stack_lost_negotiates_again(
    version: int,
) -> None:
    """The key manager still holds the CHILD_SA, but the stack has no outbound SA for it
    (another PF_KEY socket deleted it): the ACQUIRE brings up a new one, as racoon does
    for an EXPIRE it may have missed."""
    store = MemoryStore()
    a, b = _up(version, store)
    (child,) = a.keymgr.children.values()
    delete = by_spi(SadbMsgType.DELETE, child.spi_out, b.addr)
    assert not any(r.message.errno for r in a.stack.handle_pfkey(delete, 5.0))
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 5.0)
    assert len(a.esp) == 1  # held: only what `_up` sent went out
    assert carry(a, b, 5.0) > 0
    advance(a, b, 5.0, 7.0)  # IKEv1: the outbound SA waits a round trip after QM3
    assert len(a.keymgr.children) == 2 and len(a.esp) == 2
    b.path.inbound(a.esp[-1].payload, b.addr.packed, 7.0)
    assert len(b.delivered) == 2


@pytest.mark.parametrize("version", [2, 1])
def test_a_child_sa_expired_while_down_is_deleted_with_the_peer(version: int) -> None:
    store = MemoryStore()
    a, b = _up(version, store)
    (child,) = a.keymgr.children.values()
    doc = json.loads(store.load()[CHILD_SA][f"{child.spi_in:08x}"])
    a2 = _restarted(version, store, doc["hard_at"] + 1)
    assert a2.keymgr.children == {}
    assert a2.stack.sadb.lookup_esp(child.spi_in, a2.addr.packed) is None
    carry(a2, b, doc["hard_at"] + 1)
    assert b.keymgr.children == {}  # the DELETE reached b
    assert [s["state"] for s in b.keymgr.status()["ike_sas"]] == ["established"]
    assert set(store.load()) == {IKE_SA}


def test_an_ike_sa_of_a_connection_no_longer_configured_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    _up(2, store)
    (key,) = store.load()[IKE_SA]
    doc = json.loads(store.load()[IKE_SA][key])
    store.write({(IKE_SA, key): json.dumps(dict(doc, connection="gone")).encode()})
    a2 = _restarted(2, store, 5.0)
    assert a2.keymgr.sessions == {} and a2.keymgr.children == {}
    assert "connection 'gone', which is not configured" in caplog.text
    assert store.load() == {}


def test_a_record_that_is_not_json_is_dropped_and_named(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    store.write({(IKE_SA, "00/11"): b"\xff not json"})
    a2 = _restarted(2, store, 5.0)
    assert a2.keymgr.sessions == {}
    assert "ike_sa record 00/11 is not a JSON object" in caplog.text
    assert store.load() == {}


def test_nothing_leaves_when_the_store_cannot_write(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    a, b = _up(2, store)
    store.close()  # every write fails from now on
    b.keymgr.down("s2s", 1.0)
    ((request, _),) = b.keymgr.datagrams_to_send()
    a.keymgr.receive_ike(request, (str(b.addr), 4500), a.addr, 1.0)
    # a's answer would leave its IKE SA's record behind it: it waits for the store.
    assert a.keymgr.datagrams_to_send() == []
    assert "holding back what would have been sent" in caplog.text


def test_after_a_restart_the_peer_takes_what_is_sent_above_the_stored_mark(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the stack's sequence numbers in the same store, the re-ADDed outbound SA
    sends above every number it sent before: the peer's replay window takes them."""
    store = MemoryStore()
    with monkeypatch.context() as m:
        m.setattr(node_module, "Stack", functools.partial(Stack, store=store))
        a = Host("a", "b", "trap")
    b = Host("b", "a", "none")
    a.keymgr.attach_store(store)
    for host in (a, b):
        host.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)  # held: ACQUIRE
    carry(a, b, 0.0)
    writer = a.stack.esp_state
    assert writer is not None
    writer.run_once()  # the first block of sequence numbers
    for _ in range(5):
        a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 1.0)
    for datagram in a.esp:
        b.path.inbound(datagram.payload, b.addr.packed, 1.0)
    accepted = len(b.delivered)
    assert accepted >= 5

    with monkeypatch.context() as m:
        m.setattr(node_module, "Stack", functools.partial(Stack, store=store))
        a2 = Host("a", "b", "trap")
    store.write({(ESP_SEQ, "0badf00d@192.0.2.2"): (1).to_bytes(8, "big")})  # of no SA
    a2.keymgr.attach_store(store)
    a2.keymgr.start(2.0)
    assert list(store.load()[ESP_SEQ]) == [f"{a.keymgr.children[spi].spi_out:08x}@192.0.2.2"
                                           for spi in a.keymgr.children]  # fmt: skip
    assert a2.stack.esp_state is not None
    a2.stack.esp_state.run_once()
    a2.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 2.0)
    a2.stack.esp_state.run_once()
    a2.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 2.0)
    assert a2.esp
    for datagram in a2.esp:
        b.path.inbound(datagram.payload, b.addr.packed, 2.0)
    assert len(b.delivered) == accepted + len(a2.esp)  # none taken for a replay


@pytest.mark.parametrize("version", [2, 1])
def test_rekeyed_ike_sas_are_what_the_store_holds_and_what_comes_back(version: int) -> None:
    """IKEv2's IKE SA rekey (IKEv1's reauthentication) replaces the IKE SA's record: after
    a restart the IKE SA is the new one, its CHILD_SA with it, and the peer talks to it."""
    store = MemoryStore()
    a, b = (
        Host("a", "b", "trap", version=version, ike_rekey="100s"),
        Host("b", "a", "none", version=version),
    )
    a.keymgr.attach_store(store)
    for host in (a, b):
        host.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    carry(a, b, 0.0)
    first = set(store.load()[IKE_SA])
    now = advance(a, b, 0.0, 150.0)
    ike_keys = {f"{s.spi_i.hex()}/{s.spi_r.hex()}" for s in a.keymgr.sessions.values()
                if s.phase.name == "ESTABLISHED"}  # fmt: skip
    child_keys = {f"{spi:08x}" for spi in a.keymgr.children}
    records = store.load()
    assert set(records[IKE_SA]) == ike_keys and set(records[CHILD_SA]) == child_keys
    assert len(ike_keys) == 1 and not ike_keys & first  # rekeyed, and the old record gone
    a2 = _restarted(version, store, now + 1)
    assert {f"{spi:08x}" for spi in a2.keymgr.children} == child_keys
    a2.keymgr.down("s2s", now + 2)
    carry(a2, b, now + 2)
    assert b.keymgr.children == {}


@pytest.mark.parametrize("version", [2, 1])
def test_start_action_start_does_not_initiate_what_was_restored(version: int) -> None:
    store = MemoryStore()
    a, b = Host("a", "b", "start", version=version), Host("b", "a", "none", version=version)
    a.keymgr.attach_store(store)
    for host in (a, b):
        host.keymgr.start(0.0)
    carry(a, b, 0.0)
    advance(a, b, 0.0, 2.0)
    assert len(a.keymgr.children) == 1
    a2 = Host("a", "b", "start", version=version)
    a2.keymgr.attach_store(store)
    a2.keymgr.start(5.0)
    assert a2.keymgr.datagrams_to_send() == []  # no IKE_SA_INIT, no Main Mode
    assert set(a2.keymgr.children) == set(a.keymgr.children)


def test_an_ikev1_outbound_sa_not_yet_added_at_the_kill_is_added_at_restart() -> None:
    store = MemoryStore()
    a, b = Host("a", "b", "trap", version=1), Host("b", "a", "none", version=1)
    a.keymgr.attach_store(store)
    for host in (a, b):
        host.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    carry(a, b, 0.0)  # QM3 sent; the outbound SA waits a round trip
    (child,) = a.keymgr.children.values()
    assert a.stack.sadb.lookup_esp(child.spi_out, b.addr.packed) is None
    a2 = _restarted(1, store, 5.0)
    assert a2.stack.sadb.lookup_esp(child.spi_out, b.addr.packed) is not None


def test_an_outbound_sa_moved_to_the_peers_new_nat_port_comes_back_there() -> None:
    store = MemoryStore()
    a = Host("a", "b", "trap", ike_rekey="100s")
    b = Host("b", "a", "none")
    b.keymgr.attach_store(store)
    for host in (a, b):
        host.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    carry(a, b, 0.0)
    a.keymgr.handle_timer(100.0)  # an IKE SA rekey, from a port A's NAT gave it anew
    carry(a, b, 100.0, a_port=31000)
    (child,) = b.keymgr.children.values()
    assert child.natt_port == 31000
    b2 = Host("b", "a", "none")
    b2.keymgr.attach_store(store)
    b2.keymgr.start(101.0)
    out_sa = b2.stack.sadb.lookup_esp(child.spi_out, a.addr.packed)
    assert out_sa is not None and out_sa.natt_rem is not None
    assert out_sa.natt_rem.port == 31000


class _Gateway(pools_test.Host):
    """The gateway of tests.keymgr.test_pools_ikev2, keeping its state in `store`."""

    def __init__(self, store: MemoryStore, now: float) -> None:
        cfg = parse_config(pools_test.gateway_config(), "gateway.toml")
        self.addr = ipaddress.ip_address(pools_test.GATEWAY)
        self.node = node_module.Node(cfg.connections, pools=cfg.pools)
        for policy in cfg.policies:
            self.node.stack.spd.add(policy)
        self.keymgr.attach_store(store)
        self.keymgr.start(now)


def test_a_restarted_gateway_keeps_its_clients_leases_until_their_ike_sas_go() -> None:
    store = MemoryStore()
    gateway = _Gateway(store, 0.0)
    carol = pools_test.Host(pools_test.client_config("carol"), pools_test.CLIENTS["carol"],
                            vips=("0.0.0.0",))  # fmt: skip
    dave = pools_test.Host(pools_test.client_config("dave"), pools_test.CLIENTS["dave"],
                           vips=("0.0.0.0",))  # fmt: skip
    pools_test.connect(gateway, carol)
    assert pools_test.ike(carol)["virtual_ips"] == ["10.3.0.1"]
    (doc,) = (json.loads(v) for v in store.load()[IKE_SA].values())
    assert doc["leases"] == [["rw", "10.3.0.1", b"192.0.2.1".hex(), True]]

    state = IkeSaState.from_json(doc["state"])
    assert state.virtual_ips == (ipaddress.ip_address("10.3.0.1"),)
    assert json.loads(doc["state"])["version"] == 3  # the oldest that holds virtual IPs
    again = _Gateway(store, 5.0)
    assert pools_test.ike(again)["virtual_ips"] == ["10.3.0.1"]
    online = pools_test.pool_status(again)["online"]
    assert [(e["identity"], e["address"]) for e in online] == [("192.0.2.1", "10.3.0.1")]
    pools_test.connect(again, dave, 6.0)  # another client: another address
    assert pools_test.ike(dave)["virtual_ips"] == ["10.3.0.2"]
    # The restored IKE SA's record keeps its lease, written again.
    docs = [json.loads(v) for v in store.load()[IKE_SA].values()]
    assert sorted(lease for d in docs for lease in d["leases"])[0][1] == "10.3.0.1"
    assert carol.keymgr.down("home", 7.0) == 1
    pools_test.carry([again, carol], 7.0)
    status = pools_test.pool_status(again)
    assert [e["address"] for e in status["online"]] == ["10.3.0.2"]
    assert status["offline"] == [{"identity": "192.0.2.1", "address": "10.3.0.1"}]
    leases = {k: json.loads(v) for k, v in store.load()[LEASE].items()}
    assert leases == {"rw/10.3.0.1": [b"192.0.2.1".hex(), True, False],
                      "rw/10.3.0.2": [b"192.0.2.3".hex(), True, True]}  # fmt: skip

    # Restarted once more: carol's offline lease is kept for her, dave's online one too.
    third = _Gateway(store, 10.0)
    status = pools_test.pool_status(third)
    assert [e["address"] for e in status["online"]] == ["10.3.0.2"]
    assert status["offline"] == [{"identity": "192.0.2.1", "address": "10.3.0.1"}]
    pools_test.connect(third, carol, 11.0)
    assert pools_test.ike(carol)["virtual_ips"] == ["10.3.0.1"]


def test_a_restarted_road_warrior_has_its_virtual_ip_and_dns_again() -> None:
    store = MemoryStore()
    gateway = pools_test.Host(pools_test.gateway_config(dns_domain=["home.example"]),
                              pools_test.GATEWAY)  # fmt: skip
    carol = pools_test.Host(pools_test.client_config("carol"), pools_test.CLIENTS["carol"],
                            vips=("0.0.0.0",))  # fmt: skip
    carol.keymgr.attach_store(store)
    pools_test.connect(gateway, carol)
    assert pools_test.ike(carol)["virtual_ips"] == ["10.3.0.1"]
    cfg = parse_config(pools_test.client_config("carol"), "carol.toml")
    conns = [dataclasses.replace(c, ike=dataclasses.replace(
        c.ike, vips=(ipaddress.ip_address("0.0.0.0"),))) for c in cfg.connections]  # fmt: skip
    node = node_module.Node(conns)
    node.keymgr.attach_store(store)
    node.keymgr.start(5.0)
    (ike,) = node.keymgr.status()["ike_sas"]
    assert ike["virtual_ips"] == ["10.3.0.1"] and ike["initiator"]
    # What it writes in its resolver's file comes back too.
    first, restored = host_state(carol.keymgr), host_state(node.keymgr)
    assert first.dns == (ipaddress.ip_address("10.3.0.1"),)
    assert first.domains == ("home.example",)
    assert (restored.dns, restored.domains) == (first.dns, first.domains)


def test_a_kill_during_an_exchange_of_ours_uses_no_message_id_or_iv_twice() -> None:
    """A CHILD_SA rekey of a's is under way at the kill (b has answered; a never saw it).
    The IKE SA's value could not be taken then, but the one written before it went out
    was moved on to its Message ID and AEAD IV counter: a2's next request is the one
    after, which b takes (not the retransmission of the rekey it would answer again)."""
    store = MemoryStore()
    a, b = _up(2, store)
    (session,) = a.keymgr.sessions.values()
    value = IkeSaState.from_json(json.loads(store.load()[IKE_SA][ike_key(session)])["state"])
    _, now = _soft_expired(a)  # soft EXPIRE: CREATE_CHILD_SA request
    ((request, _),) = a.keymgr.datagrams_to_send()
    b.keymgr.receive_ike(request, (str(a.addr), 4500), b.addr, now)
    b.keymgr.datagrams_to_send()  # b's answer, lost with a
    moved = IkeSaState.from_json(json.loads(store.load()[IKE_SA][ike_key(session)])["state"])
    assert moved.transport.next_message_id == value.transport.next_message_id + 1
    assert moved.ikev2 is not None and value.ikev2 is not None
    assert moved.ikev2.next_iv == (value.ikev2.next_iv or 0) + 1

    a2 = _restarted(2, store, now + 1)
    # a2's requests (the DELETE of the lost CHILD_SA's SPI, the rekey again) take the
    # Message IDs after the lost one's, and b takes them; then a2's DELETE of it all.
    carry(a2, b, now + 1)
    assert len(b.keymgr.children) == 1
    a2.keymgr.down("s2s", now + 1)
    carry(a2, b, now + 1)
    assert b.keymgr.status()["ike_sas"] == []


def test_an_isakmp_sa_expired_while_down_is_deleted_with_the_peer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    a, b = _up(1, store)
    (session,) = a.keymgr.sessions.values()
    assert session.expires_at is not None
    caplog.set_level(logging.INFO, "larval.keymgr")
    later = session.expires_at + 1
    a2 = _restarted(1, store, later)
    assert "expired while larval was down; deleting it" in caplog.text
    assert a2.stack.sadb.lookup_esp(next(iter(a.keymgr.children)), a2.addr.packed) is None
    carry(a2, b, later)
    assert b.keymgr.status()["ike_sas"] == [] and b.keymgr.children == {}
    assert store.load() == {}


class _V1Host(rw_test.Host):
    """A host of tests.ikev1.test_client_vips keeping its state in `store`, started at
    `now` (a restart from the store when it holds something)."""

    def __init__(self, data: dict[str, Any], addr: str, store: MemoryStore, now: float) -> None:
        cfg = parse_config(data, f"{addr}.toml")
        self.addr = ipaddress.ip_address(addr)
        self.node = node_module.Node(cfg.connections, pools=cfg.pools)
        for policy in cfg.policies:
            self.node.stack.spd.add(policy)
        self.esp: list[Datagram] = []
        self.delivered: list[bytes] = []
        self.path = PacketPath(self.node.stack, send=self.esp.append,
                               deliver=self.delivered.append)  # fmt: skip
        self.keymgr.attach_store(store)
        self.keymgr.start(now)


def test_an_isakmp_sas_mode_config_address_and_xauth_user_come_back_at_both_ends() -> None:
    """XAuth, then Mode Config, then Quick Mode; both ends restarted from their stores:
    the gateway has the client's virtual address (its pool lease taken again, for the
    XAuth user) and how it authenticated; the client has its address, its routes and
    its CHILD_SA, and traffic from the address goes through."""
    gw_store, client_store = MemoryStore(), MemoryStore()
    gateway = _V1Host(v1_vips.gateway_data(), rw_test.GATEWAY, gw_store, 0.0)
    client = _V1Host(v1_vips.client_data(), rw_test.CLIENT, client_store, 0.0)
    client.keymgr.initiate("home", "home", 0.0)
    v1_vips.run(gateway, client)
    (before,) = gateway.keymgr.status()["ike_sas"]
    assert before["virtual_ips"] == [str(rw_test.VIP)]
    assert before["auth_remote"]["identity"] == "carol"
    (doc,) = (json.loads(v) for v in gw_store.load()[IKE_SA].values())
    state = IkeSaState.from_json(doc["state"])
    assert state.ikev1 is not None and state.ikev1.xauth_user == "carol"
    assert json.loads(doc["state"])["version"] == 4
    assert doc["leases"] == [["rw", str(rw_test.VIP), b"carol".hex(), True]]

    gateway2 = _V1Host(v1_vips.gateway_data(), rw_test.GATEWAY, gw_store, 5.0)
    (after,) = gateway2.keymgr.status()["ike_sas"]
    assert after["virtual_ips"] == [str(rw_test.VIP)]
    assert after["auth_remote"] == before["auth_remote"]
    assert after["auth_local"] == before["auth_local"]
    (pool,) = (p.to_dict() for p in gateway2.keymgr.pools.status())
    assert [(e["identity"], e["address"]) for e in pool["online"]] == [("carol", str(rw_test.VIP))]

    client2 = _V1Host(v1_vips.client_data(), rw_test.CLIENT, client_store, 5.0)
    (ike,) = client2.keymgr.status()["ike_sas"]
    assert ike["virtual_ips"] == [str(rw_test.VIP)]
    restored, first = host_state(client2.keymgr), host_state(client.keymgr)
    assert restored.addresses == first.addresses == (rw_test.VIP,)
    assert restored.routes == first.routes
    assert first.dns == (ipaddress.ip_address("10.3.0.53"),) and first.domains
    assert (restored.dns, restored.domains) == (first.dns, first.domains)
    request = rw_test.icmp_echo(str(rw_test.VIP), "203.0.113.9")
    client2.path.outbound(request, 6.0)
    (sealed,) = client2.esp
    gateway2.path.inbound(sealed.payload, gateway2.addr.packed, 6.0)
    assert gateway2.delivered == [request]
    # A new Quick Mode of the restored client is for its address, and the restored
    # gateway, which checks it against the client's address, takes it.
    (old,) = client2.keymgr.children
    sa = client2.node.stack.sadb.lookup_esp(old, client2.addr.packed)
    assert sa is not None and sa.soft is not None
    later = 5.0 + sa.soft.addtime + 1  # its soft lifetime, counted from the re-ADD
    client2.node.stack.age(later)
    client2.node.deliver(later)  # soft EXPIRE: a new Quick Mode
    v1_vips.run(gateway2, client2, later + 2, start=later)
    children = client2.keymgr.status()["child_sas"]
    assert len(children) == 2 and all(c["local_ts"] == [f"{rw_test.VIP}/32"] for c in children)
    assert len(gateway2.keymgr.status()["child_sas"]) == 2


def test_a_byte_limited_sa_goes_on_from_the_bytes_it_carried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rekey_bytes and life_bytes count what an SA carried before the restart too (at its
    last checkpoint, `BYTES_EVERY` seconds apart): a2's re-ADDed SAs have that much less
    left, and the SA is rekeyed when the bytes of both runs reach rekey_bytes."""
    plain = manager_test.config

    def byte_limited(*args: Any, **kw: Any) -> dict[str, Any]:
        data = plain(*args, **kw)
        child = data["connections"]["s2s"]["children"]["net"]
        child.update(rekey_bytes=20_000, life_bytes=40_000)
        return data

    monkeypatch.setattr(manager_test, "config", byte_limited)
    store = MemoryStore()
    a, b = _up(2, store)
    (child,) = a.keymgr.children.values()
    packet = udp_packet("198.51.100.7", "203.0.113.9") + bytes(900)
    for _ in range(10):  # about 9,300 bytes out
        a.path.outbound(packet, 3.0)
    out_sa = a.stack.sadb.lookup_esp(child.spi_out, b.addr.packed)
    assert out_sa is not None and out_sa.soft is not None
    carried = out_sa.bytes
    assert 9_000 < carried < out_sa.soft.bytes
    a.keymgr.handle_timer(3.0)  # the checkpoint: GET, and the record written
    a.keymgr.datagrams_to_send()
    doc = json.loads(store.load()[CHILD_SA][f"{child.spi_in:08x}"])
    assert doc["bytes"] == {"out": carried}  # the inbound SA carried none: not written
    for _ in range(3):  # after the checkpoint: lost with a
        a.path.outbound(packet, 4.0)

    a2 = _restarted(2, store, 5.0)
    out2 = a2.stack.sadb.lookup_esp(child.spi_out, b.addr.packed)
    in2 = a2.stack.sadb.lookup_esp(child.spi_in, a2.addr.packed)
    assert out2 is not None and out2.soft is not None and out2.hard is not None
    assert (out2.soft.bytes, out2.hard.bytes) == (20_000 - carried, 40_000 - carried)
    assert in2 is not None and in2.soft is not None and in2.soft.bytes == 20_000
    # 11 more packets pass rekey_bytes counted from the start (not from the restart):
    # the soft EXPIRE, and a2 rekeys the CHILD_SA with b.
    for _ in range(12):
        a2.path.outbound(packet, 6.0)
    assert out2.bytes + carried > 20_000 > out2.bytes
    a2.stack.age(6.0)
    a2.pump(6.0)
    # CREATE_CHILD_SA { N(REKEY_SA), SA, Ni, [KEi,] TSi, TSr } -->  <-- { SA, Nr, ... }
    carry(a2, b, 6.0)
    (new,) = a2.keymgr.children.values()
    assert new.spi_in != child.spi_in and new.installed == 6.0
    assert set(b.keymgr.children) == {new.spi_out}


def test_a_child_sa_rekey_of_ours_lost_at_the_kill_is_retried_and_leaves_nothing_stale(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """a's CHILD_SA rekey is under way at the kill; b made the new CHILD_SA and answered,
    and a never saw the answer. Restarted, a2 deletes b's half of the lost CHILD_SA by
    the SPI kept with the IKE SA's record, and rekeys the old one again: one CHILD_SA
    at each end after, the same one, carrying traffic."""
    store = MemoryStore()
    a, b = _up(2, store)
    child, now = _soft_expired(a)  # soft EXPIRE
    # CREATE_CHILD_SA { N(REKEY_SA), SA, Ni, [KEi,] TSi, TSr } -->
    ((request, _),) = a.keymgr.datagrams_to_send()
    (session,) = a.keymgr.sessions.values()
    doc = json.loads(store.load()[IKE_SA][ike_key(session)])
    ((lost, renewed),) = doc["children_under_way"]  # durable before the request left
    assert renewed == child.spi_in
    b.keymgr.receive_ike(request, (str(a.addr), 4500), b.addr, now)
    b.keymgr.datagrams_to_send()  # <-- { SA, Nr, [KEr,] TSi, TSr }: lost with a
    assert len(b.keymgr.children) == 2  # b's half of the lost CHILD_SA among them
    stale = next(spi for spi, c in b.keymgr.children.items() if c.spi_out == lost)

    caplog.set_level(logging.INFO, "larval.keymgr")
    a2 = _restarted(2, store, now + 1)
    assert f"deleting SPI {lost:08x} with the peer" in caplog.text
    # INFORMATIONAL { D(ESP, lost) } -->  <-- { D(ESP, stale) }, then the rekey again,
    # and the old CHILD_SA's DELETE once the new one is up.
    carry(a2, b, now + 1)
    assert stale not in b.keymgr.children
    (new,) = a2.keymgr.children.values()
    assert new.spi_in not in (child.spi_in, lost)
    assert set(b.keymgr.children) == {new.spi_out}
    assert b.keymgr.children[new.spi_out].spi_out == new.spi_in
    assert set(store.load()[CHILD_SA]) == {f"{new.spi_in:08x}"}
    assert "children_under_way" not in json.loads(store.load()[IKE_SA][ike_key(session)])
    a2.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), now + 2)
    b.path.inbound(a2.esp[-1].payload, b.addr.packed, now + 2)
    assert len(b.delivered) == 2


def test_a_down_right_after_the_restart_still_deletes_the_ike_sa_with_the_peer() -> None:
    """The DELETE of the lost CHILD_SA's SPI and the rekey again are queued at the restart
    when `larval down` comes: the D(ESP)'s answer does not close the IKE SA before its
    own D(IKE) went, and the rekey not yet asked for is not asked for."""
    store = MemoryStore()
    a, b = _up(2, store)
    # soft EXPIRE: a CREATE_CHILD_SA request, lost with a with its answer
    _, now = _soft_expired(a)
    ((request, _),) = a.keymgr.datagrams_to_send()
    b.keymgr.receive_ike(request, (str(a.addr), 4500), b.addr, now)
    b.keymgr.datagrams_to_send()
    a2 = _restarted(2, store, now + 1)
    a2.keymgr.down("s2s", now + 1)
    # INFORMATIONAL { D(ESP) } -->  <--  then  INFORMATIONAL { D(IKE) } -->  <--
    carry(a2, b, now + 1)
    assert b.keymgr.status()["ike_sas"] == [] and b.keymgr.children == {}
    assert a2.keymgr.status()["ike_sas"] == [] and a2.keymgr.children == {}
    assert store.load() == {}


def test_an_ikev1_quick_mode_lost_at_the_kill_is_made_again_at_the_soft_lifetime() -> None:
    """IKEv1: a's Quick Mode renewing its CHILD_SA is under way at the kill (b answered
    QM1 with QM2 and waits for QM3, having installed nothing). Restarted, a2's re-ADDed
    SAs keep what remained of their soft lifetime (spent: 1 s), whose EXPIRE starts the
    Quick Mode again; b's QM2 sent again meets no Quick Mode and is dropped. After it,
    both ends hold the same CHILD_SAs: the old one (until its hard lifetime, RFC 2409
    §5.5) and the new one."""
    store = MemoryStore()
    a, b = _up(1, store)
    child, now = _soft_expired(a)  # soft EXPIRE
    # QM1 *{ HASH(1), SA, Ni, IDci, IDcr } -->  <-- QM2 (lost with a)
    ((qm1, _),) = a.keymgr.datagrams_to_send()
    b.keymgr.receive_ike(qm1, (str(a.addr), 4500), b.addr, now)
    assert len(b.keymgr.datagrams_to_send()) == 1
    assert set(b.keymgr.children) == {child.spi_out}  # nothing installed before QM3

    a2 = _restarted(1, store, now + 1)
    assert set(a2.keymgr.children) == {child.spi_in}
    a2.stack.age(now + 3)
    a2.pump(now + 3)  # the soft EXPIRE of the re-ADDed SA: QM1 again
    advance(a2, b, now + 3, now + 6)
    assert len(a2.keymgr.children) == 2 and child.spi_in in a2.keymgr.children
    assert set(b.keymgr.children) == {c.spi_out for c in a2.keymgr.children.values()}
