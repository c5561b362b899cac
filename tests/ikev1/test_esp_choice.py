"""What a Quick Mode ESP choice's ENCAPSULATION_MODE says: UDP or not, tunnel or not
(RFC 2407 §4.5; RFC 3947 §5.1 and the NAT-T drafts' numbers for the UDP modes)."""

from __future__ import annotations

import pytest

from larval.ikev1.config import EspChoice
from larval.ikev1.constants import EncapsulationMode, EspTransformId

M = EncapsulationMode


@pytest.mark.parametrize(
    ("mode", "udp", "tunnel"),
    [
        (M.TUNNEL, False, True),
        (M.TRANSPORT, False, False),
        (M.UDP_TUNNEL, True, True),
        (M.UDP_TRANSPORT, True, False),
        (M.UDP_TUNNEL_DRAFT, True, True),
        (M.UDP_TRANSPORT_DRAFT, True, False),
        (M(99), False, False),  # a number of no registry: neither
    ],
)
def test_mode_says_udp_and_tunnel(mode: int, udp: bool, tunnel: bool) -> None:
    choice = EspChoice(EspTransformId.ESP_AES, 128, None, None, mode=mode)
    assert (choice.udp, choice.tunnel) == (udp, tunnel)
    # The plain number read off the wire means the same as the enum member.
    plain = EspChoice(EspTransformId.ESP_AES, 128, None, None, mode=int(mode))
    assert (plain.udp, plain.tunnel) == (udp, tunnel)
