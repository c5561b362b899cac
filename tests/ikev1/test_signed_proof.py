"""The CERT and SIG payloads of Phase 1, built in one place (`signed_proof`) for the
signature authenticator and the hybrid gateway alike: the same key, method and HASH give
the same payloads, and ``send_cert`` decides which certificates go with them."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives import serialization

from larval.crypto.ikev1_keys import Ikev1Prf
from larval.ikev1.auth import (
    HybridAuthenticator,
    Phase1Material,
    SignatureAuthenticator,
    signed_proof,
)
from larval.ikev1.constants import IkeAuthMethod
from larval.ikev1.payloads import CertPayload, SigPayload
from larval.trust import TrustStore

from .certs import end, root, signing_config

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")


def _material(method: int) -> Phase1Material:
    return Phase1Material(Ikev1Prf("sha256"), b"\x01" * 32, b"\x02" * 256, b"\x03" * 256,
                          b"\x04" * 8, b"\x05" * 8, b"\x06" * 40, method)  # fmt: skip


def test_the_hybrid_gateway_and_rsa_signatures_build_the_same_cert_and_sig() -> None:
    gw, client = (
        end("192.0.2.2", "vpn.example.org", "rsa", number=7),
        end("192.0.2.1", "carol.example.org", "rsa", number=8),
    )
    config = signing_config(gw, client, TrustStore([root().cert]))
    assert config.local_auth is not None and config.remote_auth is not None
    signature = SignatureAuthenticator(config.local_auth, config.remote_auth)
    hybrid = HybridAuthenticator(config.local_auth, None)
    id_b = b"\x02\x00\x00\x00vpn.example.org"
    plain = signature.build(_material(IkeAuthMethod.RSA_SIGNATURES), id_b, False, True)
    mixed = hybrid.build(_material(IkeAuthMethod.HYBRID_INIT_RSA), id_b, False, True)
    assert plain == mixed
    cert, sig = plain
    der = gw.cert.public_bytes(serialization.Encoding.DER)
    assert isinstance(cert, CertPayload) and cert.data == der
    assert isinstance(sig, SigPayload) and len(sig.data) == 256


@pytest.mark.parametrize(
    ("send_cert", "asked", "certs"),
    [("ifasked", False, 0), ("ifasked", True, 1), ("always", False, 1), ("never", True, 0)],
)
def test_send_cert_decides_the_cert_payloads(send_cert: str, asked: bool, certs: int) -> None:
    me = end("192.0.2.2", "vpn.example.org", "p256", number=9)
    config = signing_config(me, me, TrustStore([root().cert]))
    assert config.local_auth is not None
    local = dataclasses.replace(config.local_auth, send_cert=send_cert)  # type: ignore[arg-type]
    out = signed_proof(local, asked, IkeAuthMethod.ECDSA_SHA256_P256, b"\x07" * 32)
    assert [type(p) for p in out] == [CertPayload] * certs + [SigPayload]
    assert len(out[-1].data) == 64  # type: ignore[attr-defined]  # raw r | s on P-256
