"""The MS-CHAP-V2 computations (`larval.eap.mschapv2_crypto`) against RFC 2759 §9.2 and
RFC 3079 §3.5, and the MSK laid out as strongSwan's eap_mschapv2.c lays it out."""

from __future__ import annotations

import pytest

from larval.eap.mschapv2_crypto import (
    challenge_hash,
    challenge_response,
    check_authenticator_response,
    generate_authenticator_response,
    generate_msk,
    generate_nt_response,
    get_asymmetric_start_key,
    get_master_key,
    hash_nt_password_hash,
    nt_password_hash,
    user_name_for_hash,
)

# DES through `cryptography`'s decrepit TripleDES must not warn.
pytestmark = pytest.mark.filterwarnings("error")

# RFC 2759 §9.2, "Hash Example".
USER = b"User"
PASSWORD = "clientPass"
AUTHENTICATOR_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
CHALLENGE = bytes.fromhex("D02E4386BCE91226")
PASSWORD_HASH = bytes.fromhex("44EBBA8D5312B8D611474411F56989AE")
NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
PASSWORD_HASH_HASH = bytes.fromhex("41C00C584BD2D91C4017A2A12FA59F3F")
AUTHENTICATOR_RESPONSE = "S=407A5589115FD0D6209F510FE9C04566932CDA56"
# RFC 3079 §3.5.1 step 3 and §3.5.3: the MasterKey, and the 128-bit send key of the
# server (GetAsymmetricStartKey(..., IsSend=TRUE, IsServer=TRUE)).
MASTER_KEY = bytes.fromhex("FDECE3717A8C838CB388E527AE3CDD31")
SERVER_SEND_KEY_128 = bytes.fromhex("8B7CDC149B993A1BA118CB153F56DCCB")


def test_rfc2759_password_hashes() -> None:
    assert nt_password_hash(PASSWORD) == PASSWORD_HASH
    assert hash_nt_password_hash(PASSWORD_HASH) == PASSWORD_HASH_HASH


def test_rfc2759_challenge_hash() -> None:
    assert challenge_hash(PEER_CHALLENGE, AUTHENTICATOR_CHALLENGE, USER) == CHALLENGE


def test_rfc2759_challenge_response_with_single_des() -> None:
    assert challenge_response(CHALLENGE, PASSWORD_HASH) == NT_RESPONSE


def test_rfc2759_nt_response() -> None:
    nt = generate_nt_response(AUTHENTICATOR_CHALLENGE, PEER_CHALLENGE, USER, PASSWORD_HASH)
    assert nt == NT_RESPONSE


def test_rfc2759_authenticator_response_and_its_check() -> None:
    args = (PASSWORD_HASH, NT_RESPONSE, PEER_CHALLENGE, AUTHENTICATOR_CHALLENGE, USER)
    assert generate_authenticator_response(*args) == AUTHENTICATOR_RESPONSE
    digest = bytes.fromhex(AUTHENTICATOR_RESPONSE[2:])
    assert check_authenticator_response(*args, digest)
    assert not check_authenticator_response(*args, bytes([digest[0] ^ 1]) + digest[1:])
    wrong_password = (nt_password_hash("clientpass"), *args[1:])
    assert not check_authenticator_response(*wrong_password, digest)


def test_rfc3079_master_key_and_start_keys() -> None:
    master = get_master_key(PASSWORD_HASH_HASH, NT_RESPONSE)
    assert master == MASTER_KEY
    assert get_asymmetric_start_key(master, is_send=True, is_server=True) == SERVER_SEND_KEY_128
    # The server's send key is the peer's receive key, and the other way round.
    assert get_asymmetric_start_key(master, is_send=False, is_server=False) == SERVER_SEND_KEY_128
    peer_send = get_asymmetric_start_key(master, is_send=True, is_server=False)
    assert peer_send == get_asymmetric_start_key(master, is_send=False, is_server=True)
    assert peer_send != SERVER_SEND_KEY_128


def test_msk_is_server_receive_key_then_server_send_key_then_32_zeros() -> None:
    msk = generate_msk(PASSWORD_HASH, NT_RESPONSE)
    server_receive = get_asymmetric_start_key(MASTER_KEY, is_send=False, is_server=True)
    assert len(msk) == 64
    assert msk[:16] == server_receive
    assert msk[16:32] == SERVER_SEND_KEY_128
    assert msk[32:] == bytes(32)


@pytest.mark.parametrize(
    ("name", "hashed"),
    [
        (b"carol", b"carol"),
        (b"EXAMPLE\\carol", b"carol"),
        (b"A\\B\\carol", b"B\\carol"),  # only the first backslash ends the domain
        (b"EXAMPLE\\", b""),
    ],
)
def test_user_name_is_hashed_without_its_domain(name: bytes, hashed: bytes) -> None:
    assert user_name_for_hash(name) == hashed


def test_domain_does_not_change_the_nt_response() -> None:
    plain = generate_nt_response(AUTHENTICATOR_CHALLENGE, PEER_CHALLENGE, USER, PASSWORD_HASH)
    domain = user_name_for_hash(b"CORP\\User")
    assert (
        generate_nt_response(AUTHENTICATOR_CHALLENGE, PEER_CHALLENGE, domain, PASSWORD_HASH)
        == plain
    )


def test_non_ascii_password_is_hashed_as_utf16() -> None:
    assert nt_password_hash("pässwört") != nt_password_hash("passwort")
    assert len(nt_password_hash("pässwört")) == 16
