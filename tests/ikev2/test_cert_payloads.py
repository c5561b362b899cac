"""CERT and CERTREQ from the wire: decoding raises nothing but the codec's error and
round-trips; whatever a peer puts in CERT and AUTH, checking it raises nothing but
`AuthenticationFailed`."""

from __future__ import annotations

import contextlib

from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from larval.crypto.prf import Prf
from larval.ike.auth_config import RemoteAuth
from larval.ike.identity import IdType
from larval.ikev2 import IkeProtocolError
from larval.ikev2.auth import AuthenticationFailed, PeerClaim, PubkeyVerifier
from larval.ikev2.constants import AuthMethod, CertEncoding
from larval.ikev2.payloads import AuthPayload, CertPayload, CertReqPayload
from tests.ikev2.certs import NOW, leaf, trust

FUZZ = settings(max_examples=300, deadline=None)


@FUZZ
@given(st.binary(max_size=300))
def test_cert_and_certreq_decode_or_raise_the_codec_error(body: bytes) -> None:
    for kind in (CertPayload, CertReqPayload):
        try:
            payload = kind.decode_body(body)
        except IkeProtocolError:
            continue
        assert payload.encode_body() == body
        if isinstance(payload, CertReqPayload):
            assert b"".join(payload.authorities) in (payload.data, b"")


VERIFIER = PubkeyVerifier(RemoteAuth(trust()))
GOOD = CertPayload(
    CertEncoding.X509_SIGNATURE, leaf("p256", "192.0.2.1").cert.public_bytes(Encoding.DER)
)
PEER = (IdType.ID_IPV4_ADDR, bytes([192, 0, 2, 1]))


@FUZZ
@given(
    st.lists(st.tuples(st.sampled_from([1, 4, 12, 200]), st.binary(max_size=200)), max_size=3),
    st.booleans(),
    st.sampled_from([1, 2, 9, 10, 11, 14, 201]),
    st.binary(max_size=150),
)
def test_any_cert_and_auth_from_a_peer_fail_only_as_authentication_failed(
    certs: list[tuple[int, bytes]], good_leaf: bool, method: int, data: bytes
) -> None:
    payloads = [CertPayload(CertEncoding(e), d) for e, d in certs]
    if good_leaf:
        payloads.insert(0, GOOD)
    auth = AuthPayload(AuthMethod(method), data)
    with contextlib.suppress(AuthenticationFailed):
        VERIFIER.verify(Prf(5), b"octets", PeerClaim(PEER, auth, tuple(payloads)), NOW)
        raise AssertionError("garbage AUTH verified")
