"""Status and log lines name suites in strongSwan's words, never as Python reprs."""

from __future__ import annotations

import json
import logging
import warnings

import pytest

from larval.crypto.ike_proposals import esp_proposal_transforms, parse_ike_proposal
from tests.keymgr.test_manager import Host, carry, udp_packet

warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.mark.parametrize(
    ("version", "ike", "esp"),
    [(2, "aes128gcm16-prfsha256-x25519", "aes128gcm16"), (1, "aes128-sha256-modp2048",
                                                          "aes128-sha256")],
)  # fmt: skip
def test_suites_in_status_and_log(
    version: int, ike: str, esp: str, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = Host("a", "b", "trap", version=version), Host("b", "a", "none", version=version)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    with caplog.at_level(logging.INFO, logger="larval"):
        a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
        carry(a, b, 0.0)
    for host in (a, b):
        status = host.keymgr.status()
        (sa,) = status["ike_sas"]
        (child,) = status["child_sas"]
        assert sa["suite"] == ike and child["esp"] == esp
        assert parse_ike_proposal(sa["suite"]) == parse_ike_proposal(ike)
        assert esp_proposal_transforms(child["esp"]) == esp_proposal_transforms(esp)
        assert "Transform(" not in json.dumps(status, default=str)
    assert f"established ({ike})" in caplog.text and f"out, {esp}" in caplog.text
    assert "Transform(" not in caplog.text and "Phase1Choice(" not in caplog.text
