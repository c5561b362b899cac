"""Extended sequence numbers (RFC 4303 §2.2.1) from the configuration to the wire: a
policy's ``-esn`` proposal reaches the key manager in the ACQUIRE (X_ESN in the
combination's flags), IKE offers and chooses the ESN transform (RFC 7296 §3.3.2), the SAs
are installed with SADB_X_SAFLAGS_ESN, and the packet path seals and opens them with
64-bit sequence numbers, whose high half the ICV covers."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

import tests.keymgr.test_manager as manager_tests
from larval.esp import EspSa
from larval.esp.errors import EspAuthError
from larval.pfkey import SaFlags, SaState
from larval.stack.packet_path import EspContext
from tests.keymgr.test_manager import Host, carry, udp_packet


@pytest.fixture
def esp_of(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Each host's child ESP proposals, by its name, set before the host is made."""
    chosen: dict[str, list[str]] = {}
    plain = manager_tests.config

    def config(me: str, *args: Any, **kw: Any) -> dict[str, Any]:
        cfg = plain(me, *args, **kw)
        cfg["connections"]["s2s"]["children"]["net"]["esp_proposals"] = chosen[me]
        return cfg

    monkeypatch.setattr(manager_tests, "config", config)
    return chosen


def child_sas(host: Host) -> list[Any]:
    """The host's inbound and outbound SA of its one CHILD_SA."""
    (child,) = host.keymgr.status()["child_sas"]
    peer = ipaddress.ip_address("192.0.2.2" if str(host.addr) == "192.0.2.1" else "192.0.2.1")
    return [
        host.stack.sadb.lookup_esp(int(child["spi_in"], 16), host.addr.packed),
        host.stack.sadb.lookup_outbound(host.addr.packed, peer.packed),
    ]


def bring_up(a: Host, b: Host) -> None:
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)  # held, ACQUIRE
    carry(a, b, 0.0)


@pytest.mark.parametrize("esp", ["aes128gcm16-esn", "aes256-sha256-esn"])
def test_esn_from_the_policy_to_the_packets(esp_of: dict[str, list[str]], esp: str) -> None:
    esp_of.update(a=[esp], b=[esp])
    a, b = Host("a", "b", "trap"), Host("b", "a", "none")
    bring_up(a, b)
    assert len(a.esp) == 1  # the held packet left on the new SA
    for host in (a, b):
        for sa in child_sas(host):
            assert sa is not None and sa.state == SaState.MATURE
            assert sa.flags & SaFlags.X_ESN, sa
    b.path.inbound(a.esp[0].payload, b.addr.packed, 0.0)
    assert len(b.delivered) == 1
    outbound = child_sas(a)[1]
    ctx = outbound.transform
    assert isinstance(ctx, EspContext) and ctx.esp.esn
    # The ICV covers the high half: an SA of 32-bit numbers with the same keys refuses
    # what the ESN SA sealed.
    narrow = EspSa(outbound.spi, outbound.encrypt, outbound.encrypt_key, outbound.auth,
                   outbound.auth_key, mode="tunnel")  # fmt: skip
    with pytest.raises(EspAuthError):
        narrow.decrypt(a.esp[0].payload)


def test_without_esn_the_sas_have_32_bit_numbers(esp_of: dict[str, list[str]]) -> None:
    esp_of.update(a=["aes128gcm16"], b=["aes128gcm16-esn", "aes128gcm16"])
    a, b = Host("a", "b", "trap"), Host("b", "a", "none")
    bring_up(a, b)
    for host in (a, b):
        for sa in child_sas(host):
            assert sa is not None and not sa.flags & SaFlags.X_ESN
    assert len(a.esp) == 1


def test_a_peer_that_insists_on_esn_gets_no_child_sa_without_it(
    esp_of: dict[str, list[str]],
) -> None:
    esp_of.update(a=["aes128gcm16-esn"], b=["aes128gcm16"])
    a, b = Host("a", "b", "trap"), Host("b", "a", "none")
    bring_up(a, b)
    assert a.esp == []  # NO_PROPOSAL_CHOSEN: nothing installed, nothing sent
    assert b.keymgr.status()["child_sas"] == []
