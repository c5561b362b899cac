"""What a configuration offers that is weak, or that a peer is likely to refuse, and why.

What larval takes but a careful operator would not choose: ESP with NULL encryption,
AES-GCM with a short ICV in IKE, ESN without an alternative, IKEv1, Aggressive Mode with
a PSK, a short PSK accepted by ``short_psk``, EAP-MD5, SHA-1 signatures, keys saved for
Wireshark (``daemon.save_keys``), and metrics served beyond loopback (``daemon.metrics``).
Each is a
warning with the key it was written at; `larval check` shows them (``--strict`` fails on
them) and ``larval run`` logs them. The algorithms larval refuses outright are errors,
explained by `larval.daemon.weak`. The reasons cite RFC 8247 (IKEv2's algorithm
requirements) and RFC 8221 (ESP's).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from larval.crypto.ike_transforms import EncrId, EsnId, Transform, TransformType
from larval.daemon.config import MIN_PSK_LENGTH, AuthSide, DaemonConfig
from larval.ike.config import Suite
from larval.keymgr.manager import Connection

__all__ = ["weak_points"]


def weak_points(config: DaemonConfig) -> Iterator[tuple[str, str]]:
    """(key, why) for each weak or likely-refused choice of `config`'s connections, and
    ``daemon.save_keys``, which hands every key to whoever reads its files."""
    if config.save_keys is not None:
        yield ("daemon.save_keys",
               "on: the keys of every IKE SA and CHILD_SA set up are written to "
               f"{config.save_keys}, and whoever reads them can decrypt the traffic; "
               "for debugging only")  # fmt: skip
    if config.metrics is not None and not ipaddress.ip_address(config.metrics[0]).is_loopback:
        yield ("daemon.metrics",
               f"served on {config.metrics[0]}, not loopback: the endpoint is plain HTTP "
               "without authentication, and whoever reaches it reads the connection names "
               "and counters; keep it behind a firewall or on 127.0.0.1")  # fmt: skip
    for conn in config.connections:
        yield from _connection(config, conn)


def _connection(config: DaemonConfig, conn: Connection) -> Iterator[tuple[str, str]]:
    base = f"connections.{conn.ike.name}"
    for i, suite in enumerate(conn.ike.proposals):
        for t in _of(suite, TransformType.ENCR):
            if t.id in (EncrId.AES_GCM_8, EncrId.AES_GCM_12):
                octets = 8 if t.id == EncrId.AES_GCM_8 else 12
                yield (f"{base}.proposals[{i}]",
                       f"AES-GCM with a {octets}-octet ICV: RFC 8247 §2.1 lists only the "
                       "16-octet ICV for IKEv2, and strongSwan's default proposals do not "
                       "offer it, so a peer is likely to refuse it; use aes128gcm16")  # fmt: skip
    for child in conn.children:
        key = f"{base}.children.{child.name}.esp_proposals"
        for i, suite in enumerate(child.proposals):
            if any(t.id == EncrId.NULL for t in _of(suite, TransformType.ENCR)):
                yield (f"{key}[{i}]", "null encryption: the traffic goes in clear, "
                       "authenticated only (RFC 4303 §3.2); peers refuse it unless configured "
                       "for it")  # fmt: skip
        esn = [t.id for suite in child.proposals for t in _of(suite, TransformType.ESN)]
        if esn and all(e == EsnId.YES for e in esn):
            yield (key, "every proposal asks for ESN: a peer without 64-bit sequence numbers "
                   "(strongSwan's default is noesn) refuses them all; add an alternative "
                   "without esn")  # fmt: skip
    if conn.version == 1:
        yield (f"{base}.version", "IKEv1 is deprecated (RFC 9395): no new peer should need "
               "it, and some refuse it; use version = 2 where the peer has IKEv2")  # fmt: skip
    if conn.aggressive and conn.ike.psk:
        yield (f"{base}.aggressive", "Aggressive Mode with a PSK sends a hash of the PSK before "
               "either end is authenticated: anyone who asks can attack it offline")  # fmt: skip
    if conn.ike.psk and len(conn.ike.psk) < MIN_PSK_LENGTH:
        yield (f"{base}.short_psk", f"its PSK is {len(conn.ike.psk)} bytes, shorter than "
               f"{MIN_PSK_LENGTH}: one captured exchange lets an attacker guess it offline "
               "(RFC 7296 §2.15)")  # fmt: skip
    for eap in (conn.ike.local_eap, conn.ike.remote_eap):
        if eap is not None and eap.method == "eap-md5":
            yield (base, "EAP-MD5 neither authenticates the gateway nor derives keys, and a "
                   "captured exchange lets an attacker guess the password offline; use "
                   "eap-mschapv2 or eap-tls")  # fmt: skip
    cert_auth = config.cert_auth.get(conn.ike.name)
    for side in (cert_auth.local, cert_auth.remote) if cert_auth is not None else ():
        if side is not None and _sha1_signatures(side):
            yield (f"{side.key}.auth", "allows SHA-1 signatures, whose collisions are "
                   "practical (RFC 8247 §3.2); leave -sha1 out")  # fmt: skip


def _of(suite: Suite, ttype: TransformType) -> list[Transform]:
    return [t for t in suite if t.type == ttype]


def _sha1_signatures(side: AuthSide) -> bool:
    return any(scheme.endswith("-sha1") for scheme in side.schemes)
