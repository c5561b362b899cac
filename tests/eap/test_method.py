"""`larval.eap.method`: what every method machine shares. The server's first Request
and the peer's end at EAP Success and EAP Failure, the same for each method."""

from __future__ import annotations

import pytest

from larval.eap import EapError, EapPacket, EapType
from larval.eap.identity import IdentityServer
from larval.eap.md5 import Md5Peer, Md5Server
from larval.eap.mschapv2 import MschapV2Peer, MschapV2Server
from tests.seeded import SeededRandom


def _lookup(user: str) -> str | None:
    return "pw" if user == "carol" else None


@pytest.mark.parametrize(
    ("server", "kind", "label"),
    [
        (lambda: IdentityServer(identifier=7), EapType.IDENTITY, "EAP-Identity"),
        (lambda: Md5Server("carol", _lookup, SeededRandom("m"), identifier=7),
         EapType.MD5_CHALLENGE, "EAP-MD5"),
        (lambda: MschapV2Server(_lookup, SeededRandom("s"), identifier=7),
         EapType.MSCHAPV2, "EAP-MSCHAPv2"),
    ],
)  # fmt: skip
def test_start_sends_the_first_request_once(server: object, kind: EapType, label: str) -> None:
    machine = server()  # type: ignore[operator]
    first = EapPacket.decode(machine.start())
    assert (first.identifier, first.type) == (7, kind)
    with pytest.raises(EapError, match=rf"^{label} server: start\(\) in state "):
        machine.start()


def test_a_server_without_an_identifier_draws_one() -> None:
    a = MschapV2Server(_lookup, SeededRandom("x"))
    b = MschapV2Server(_lookup, SeededRandom("x"))
    assert a.identifier == b.identifier == SeededRandom("x")(1)[0]


@pytest.mark.parametrize(
    ("peer", "reason"),
    [
        (Md5Peer("carol", "pw"), "EAP-MD5: the server refused user 'carol' (EAP Failure)"),
        (MschapV2Peer("carol", "pw"), "EAP-MSCHAPv2: the server sent EAP Failure"),
    ],
)
def test_a_peer_ends_at_eap_failure_with_its_methods_reason(peer: object, reason: str) -> None:
    assert peer.receive(EapPacket.failure(3).encode()) is None  # type: ignore[attr-defined]
    assert peer.done and peer.failed == reason and peer.msk is None  # type: ignore[attr-defined]


def test_a_peer_cannot_start() -> None:
    with pytest.raises(EapError, match="start"):
        Md5Peer("carol", "pw").start()
