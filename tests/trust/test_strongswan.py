"""Certificates and a CRL strongSwan 5.9.8's own ``pki`` made (``strongswan/make.sh``), as
a charon peer sends them: TrustStore takes its chains, names its CAs in CERTREQ as
``pki --keyid`` does, and reads its revocations."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509

from larval.ike.auth_config import TrustError
from larval.ike.identity import certificate_key_ids, identity
from larval.trust import TrustStore, chain_for

HERE = Path(__file__).parent / "strongswan"
NOW = datetime.datetime(2026, 12, 3, tzinfo=datetime.UTC)  # all valid 2026-01-01 to 2036


def cert(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((HERE / f"{name}.pem").read_bytes())


@pytest.fixture(scope="module")
def store() -> TrustStore:
    crl = x509.load_pem_x509_crl((HERE / "inter.crl").read_bytes())
    return TrustStore([cert("root"), cert("edroot")], [cert("inter")], [crl])


@pytest.mark.parametrize(
    ("leaf", "peer_id", "chain"),
    [
        # ECDSA P-256 under an RSA intermediate under an ECDSA P-384 root; clientAuth
        ("carol", "carol@strongswan.org", ["carol", "inter", "root"]),
        ("carol", "C=CH, O=strongSwan, CN=carol@strongswan.org", ["carol", "inter", "root"]),
        # RSA signed with RSASSA-PSS; serverAuth and ikeIntermediate; a dNSName and an iPAddress
        ("moon", "moon.strongswan.org", ["moon", "inter", "root"]),
        ("moon", "192.168.0.1", ["moon", "inter", "root"]),
        # Ed25519 throughout
        ("sun", "sun.strongswan.org", ["sun", "edroot"]),
    ],
)
def test_strongswan_chains_are_trusted(
    store: TrustStore, leaf: str, peer_id: str, chain: list[str]
) -> None:
    peer = store.verify(cert(leaf), [], identity(peer_id), NOW)
    assert peer.chain == tuple(cert(name) for name in chain)


def test_the_intermediate_from_the_peer(store: TrustStore) -> None:
    alone = TrustStore([cert("root")])
    peer_id = identity("carol@strongswan.org")
    assert alone.verify(cert("carol"), [cert("inter")], peer_id, NOW).chain[1] == cert("inter")


def test_a_strongswan_crl_revokes(store: TrustStore) -> None:
    # pki --signcrl --reason key-compromise --date 1780000000 --cert dave.pem
    with pytest.raises(TrustError, match=r"^revoked \(keyCompromise\) on 2026-05-28 20:26:40 UTC$"):
        store.verify(cert("dave"), [], identity("dave@strongswan.org"), NOW)


def test_certreq_names_the_roots_as_pki_keyid_does(store: TrustStore) -> None:
    # pki --keyid --type x509 --in root.pem: "keyid (SHA-1 of subjectPublicKeyInfo)"
    assert store.certreq_keyids()[0].hex(":") == (
        "e5:d2:38:8a:aa:8d:73:84:87:0e:b7:4f:14:e8:8d:d4:3d:42:cc:6b"
    )


def test_key_ids_as_pki_keyid_gives_them() -> None:
    # pki --keyid --type x509 --in carol.pem: subjkey, then keyid
    ids = certificate_key_ids(cert("carol"))
    assert bytes.fromhex("6dc48a8cb8d81586f23edf57853796a82a4342cf") in ids
    assert bytes.fromhex("bc95f54831bd2b0e628ebf62f3c87a527d3318db") in ids


def test_chain_for_a_strongswan_leaf() -> None:
    assert chain_for(cert("carol"), [cert("root"), cert("inter"), cert("edroot")]) == (
        cert("inter"),
    )
