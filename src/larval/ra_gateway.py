"""The remote-access gateway that `larval demo --remote-access` and `larval bench ra`
both build, and the road warriors that dial it.

The gateway proves itself with an ECDSA P-256 certificate made here with `larval.pki`
(its identity as dNSName, signed by a CA that is the road warriors' trust), asks each user
by EAP-MSCHAPv2 (``remote = { auth = "eap-mschapv2", eap_id = "%any" }``: EAP-Identity
first) and leases an address of its pool ``rw`` (swanctl's ``pools``). A road warrior has
one connection ``local = { auth = "eap-mschapv2", eap_id = USER }`` asking for an address
(``vips = 0.0.0.0``). The configurations are in DESIGN.md's format, resolved against the
credentials in memory.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from larval import pki
from larval.credentials import CertificateWithKey, Credentials, PrivateKeyFile
from larval.daemon.auth import resolve
from larval.daemon.config import DaemonConfig, parse_config

IKE_PROPOSAL = "aes128gcm16-prfsha256-x25519"
ESP_PROPOSAL = "aes128gcm16"
_ANY4 = (ipaddress.ip_address("0.0.0.0"),)


@dataclass(frozen=True)
class RaGateway:
    """One gateway (`gateway`, `gateway_id`) guarding `home_net` for road warriors that
    come from `clients`, leasing them addresses of `pool` (with `dns` servers)."""

    gateway: str
    clients: str
    gateway_id: str
    home_net: str
    pool: str
    dns: tuple[str, ...] = ()
    credentials_name: str = "<memory>"  # the `[daemon] credentials` the configs name

    def credentials(self, org: str, ca_name: str) -> Credentials:
        """A CA (``C=CH, O=org, CN=ca_name``) and the gateway's certificate, in memory."""
        ca_key = pki.generate_key("ecdsa")
        ca = pki.make_certificate(
            pki.CertRequest(pki.parse_dn(f"C=CH, O={org}, CN={ca_name}"), ca=True),
            ca_key.public_key(), ca_key,
        )  # fmt: skip
        key = pki.generate_key("ecdsa")
        request = pki.CertRequest(pki.parse_dn(f"C=CH, O={org}, CN={self.gateway_id}"),
                                  sans=[pki.parse_san(self.gateway_id)])  # fmt: skip
        cert = pki.make_certificate(request, key.public_key(), ca_key, ca)
        gw = CertificateWithKey("x509/gw.pem", cert, PrivateKeyFile("private/gw.pem", key))
        return Credentials(certs=(gw,), cacerts=(ca,), cacert_paths=("x509ca/ca.pem",))

    def gateway_data(self, users: Mapping[str, str]) -> dict[str, Any]:
        """The gateway's configuration: connection ``rw``, pool ``rw`` and an EAP secret
        for each of `users` (name → password)."""
        rw = {
            "local_addrs": [self.gateway], "remote_addrs": [self.clients],
            "proposals": [IKE_PROPOSAL], "encap": True, "pools": ["rw"],
            "local": {"auth": "pubkey", "certs": ["gw.pem"], "id": self.gateway_id},
            "remote": {"auth": "eap-mschapv2", "eap_id": "%any"},
            "children": {"net": {"local_ts": [self.home_net], "remote_ts": [self.pool],
                                 "esp_proposals": [ESP_PROPOSAL]}},
        }  # fmt: skip
        pool: dict[str, Any] = {"addrs": self.pool}
        if self.dns:
            pool["dns"] = list(self.dns)
        return {"daemon": {"credentials": self.credentials_name}, "pools": {"rw": pool},
                "connections": {"rw": rw}, "secrets": eap_secrets(users)}  # fmt: skip

    def client_connection(self, user: str) -> dict[str, Any]:
        """A road warrior's connection to the gateway as `user`."""
        return {
            "local_addrs": [self.clients], "remote_addrs": [self.gateway],
            "proposals": [IKE_PROPOSAL], "encap": True,
            "local": {"auth": "eap-mschapv2", "eap_id": user},
            "remote": {"auth": "pubkey", "id": self.gateway_id},
            "children": {"net": {"local_ts": ["0.0.0.0/0"], "remote_ts": [self.home_net],
                                 "esp_proposals": [ESP_PROPOSAL]}},
        }  # fmt: skip

    def clients_data(
        self, connections: Mapping[str, str], users: Mapping[str, str]
    ) -> dict[str, Any]:
        """Road warriors' configuration: a connection of each name in `connections`
        (name → user) and the EAP secrets of `users` (name → password)."""
        conns = {name: self.client_connection(user) for name, user in connections.items()}
        return {"daemon": {"credentials": self.credentials_name}, "connections": conns,
                "secrets": eap_secrets(users)}  # fmt: skip

    def gateway_config(
        self, users: Mapping[str, str], creds: Credentials, source: str
    ) -> DaemonConfig:
        """`gateway_data` parsed and resolved against `creds`."""
        return resolve(parse_config(self.gateway_data(users), source), creds, source)

    def clients_config(
        self,
        connections: Mapping[str, str],
        users: Mapping[str, str],
        creds: Credentials,
        source: str,
    ) -> DaemonConfig:
        """`clients_data` parsed and resolved against `creds` (without the gateway's own
        certificate), each connection asking for an IPv4 address (``vips = 0.0.0.0``)."""
        config = parse_config(self.clients_data(connections, users), source)
        config = resolve(config, dataclasses.replace(creds, certs=()), source)
        conns = [dataclasses.replace(c, ike=dataclasses.replace(c.ike, vips=_ANY4))
                 for c in config.connections]  # fmt: skip
        return dataclasses.replace(config, connections=conns)


def eap_secrets(users: Mapping[str, str]) -> dict[str, Any]:
    """``[secrets.eap-NAME]`` for each user (name → password)."""
    return {f"eap-{user}": {"id": user, "secret": password} for user, password in users.items()}
