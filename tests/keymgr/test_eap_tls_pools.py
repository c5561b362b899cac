"""Two key managers from the configuration's words with EAP-TLS: carol proves herself
with her certificate (``local = { auth = "eap-tls", certs = ["carol.pem"] }``), the
gateway trusts its ``cacerts`` for her (``remote = { auth = "eap-tls", eap_id = "%any"
}``), and leases her virtual address to her EAP identity; revoked, she is refused with one
WARNING naming her and the reason, no lease, nothing installed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from larval.ike.identity import describe_subject
from tests.daemon.gateway import CAROL, GW, gateway_credentials
from tests.keymgr.test_eap_pools import PoolHost
from tests.keymgr.test_manager import carry

CAROL_ID = "carol@example.org"
POOLS = {"rw": {"addrs": "10.3.0.0/24"}}
GATEWAY: dict[str, Any] = {
    "top": {"pools": POOLS},
    "connection": {
        "pools": ["rw"],
        "remote": {"auth": "eap-tls", "eap_id": "%any", "cacerts": ["ca.pem"]},
    },
}
CLIENT: dict[str, Any] = {
    "vips": ["0.0.0.0"],
    "connection": {"local": {"auth": "eap-tls", "certs": ["carol.pem"], "id": CAROL_ID}},
}


def _hosts(tmp_path: Path) -> tuple[PoolHost, PoolHost]:
    gw = PoolHost("gw", "carol", tmp_path, GATEWAY)
    carol = PoolHost("carol", "gw", tmp_path, CLIENT)
    for host in (gw, carol):
        host.keymgr.start(0.0)
    carol.keymgr.initiate("home", "net", 0.0)
    carry(carol, gw, 0.0)
    return gw, carol


def test_an_eap_tls_client_gets_its_address_leased_to_its_eap_identity(tmp_path: Path) -> None:
    gateway_credentials(tmp_path, carol=True)
    gw, carol = _hosts(tmp_path)
    (gw_sa,) = gw.keymgr.status()["ike_sas"]
    (carol_sa,) = carol.keymgr.status()["ike_sas"]
    assert gw_sa["state"] == carol_sa["state"] == "established"
    assert (gw_sa["auth_remote"]["method"], gw_sa["auth_remote"]["identity"]) == (
        "eap-tls",
        CAROL_ID,
    )
    assert (carol_sa["auth_local"]["method"], carol_sa["auth_local"]["identity"]) == (
        "eap-tls",
        CAROL_ID,
    )
    assert carol_sa["auth_remote"]["subject"] == describe_subject(GW)
    assert carol_sa["virtual_ips"] == gw_sa["virtual_ips"] == ["10.3.0.1"]
    (pool,) = (p.to_dict() for p in gw.keymgr.pools.status())
    assert [lease["identity"] for lease in pool["online"]] == [CAROL_ID]


def test_a_revoked_client_gets_no_lease_and_nothing_is_installed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gateway_credentials(tmp_path, carol=True).crl([CAROL])
    with caplog.at_level(logging.INFO, logger="larval"):
        gw, carol = _hosts(tmp_path)
    for host in (gw, carol):
        status = host.keymgr.status()
        assert not [s for s in status["ike_sas"] if s["state"] == "established"]
        assert status["child_sas"] == []
    assert len(gw.stack.sadb) == 0
    (pool,) = (p.to_dict() for p in gw.keymgr.pools.status())
    assert pool["online"] == [] and pool["offline"] == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    (refusal,) = [w for w in warnings if "authentication of the initiator failed" in w]
    assert f"EAP identity '{CAROL_ID}'" in refusal
    assert "the peer's certificate refused" in refusal and "revoked (keyCompromise)" in refusal
