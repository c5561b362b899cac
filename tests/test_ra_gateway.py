"""`larval.ra_gateway`: the gateway and road warriors that the remote-access demo and
`bench ra` build, as configurations that parse, resolve and meet each other."""

from __future__ import annotations

import ipaddress

from larval.ra_gateway import RaGateway, eap_secrets

RA = RaGateway("192.0.2.2", "192.0.2.1", "vpn.test.example", "203.0.113.0/24",
               "10.3.0.0/24", dns=("203.0.113.53",), credentials_name="<test>")  # fmt: skip


def test_eap_secrets_one_per_user() -> None:
    assert eap_secrets({"carol": "pw1", "dave": "pw2"}) == {
        "eap-carol": {"id": "carol", "secret": "pw1"},
        "eap-dave": {"id": "dave", "secret": "pw2"},
    }


def test_gateway_pool_names_dns_only_when_given() -> None:
    assert RA.gateway_data({})["pools"] == {"rw": {"addrs": "10.3.0.0/24",
                                                   "dns": ["203.0.113.53"]}}  # fmt: skip
    bare = RaGateway("192.0.2.2", "192.0.2.1", "gw", "203.0.113.0/24", "10.3.0.0/16")
    assert bare.gateway_data({})["pools"] == {"rw": {"addrs": "10.3.0.0/16"}}


def test_gateway_and_clients_resolve_against_one_set_of_credentials() -> None:
    creds = RA.credentials("Test", "Test CA")
    gateway = RA.gateway_config({"carol": "pw"}, creds, "<gw>")
    (rw,) = gateway.connections
    assert rw.pools == ("rw",)
    assert [p.name for p in gateway.pools] == ["rw"]
    clients = RA.clients_config({"c1": "carol", "c2": "dave"}, {"carol": "pw", "dave": "pw2"},
                                  creds, "<c>")  # fmt: skip
    assert [c.ike.name for c in clients.connections] == ["c1", "c2"]
    for conn in clients.connections:
        assert conn.ike.vips == (ipaddress.ip_address("0.0.0.0"),)
    # The clients' side carries only the trust, not the gateway's own certificate.
    assert RA.clients_data({"c1": "carol"}, {})["connections"]["c1"]["remote"] == {
        "auth": "pubkey", "id": "vpn.test.example"
    }  # fmt: skip
