"""The MS-CHAP-V2 computations (RFC 2759 §8) and its keys (RFC 3079 §3), in the RFCs' names.

A password is hashed as Unicode (UTF-16LE) with MD4 (NtPasswordHash, §8.3), the user
name and both challenges with SHA-1 (ChallengeHash, §8.2), and the 8-byte hash is
encrypted three times with single DES under 7-byte pieces of the password hash
(ChallengeResponse, §8.5). `cryptography` offers single DES only as TripleDES: with the
one 8-byte key repeated three times, EDE is E(k) D(k) E(k) = E(k), so that is single
DES. The server proves it knows the password too (GenerateAuthenticatorResponse, §8.7).

The keys follow RFC 3079 §3.4 with 128-bit session keys, and the 64-byte MSK is laid
out as strongSwan builds it (``eap_mschapv2.c``, GenerateMSK): first the key RFC 3079
calls the server's receive key (the peer's send key, the magic "On the client side,
this is the send key..."), then the server's send key (the peer's receive key), then
32 zero bytes. Both ends build the same 64 bytes, whatever
their role, since IKEv2's AUTH needs one shared key (RFC 7296 §2.16).

Only the user name is hashed, without a ``DOMAIN\\`` in front (RFC 2759 §8.2), while
the whole name goes on the wire and is looked up.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from .md4 import md4

__all__ = [
    "CHALLENGE_SIZE",
    "MSK_SIZE",
    "NT_RESPONSE_SIZE",
    "challenge_hash",
    "challenge_response",
    "check_authenticator_response",
    "generate_authenticator_response",
    "generate_msk",
    "generate_nt_response",
    "get_asymmetric_start_key",
    "get_master_key",
    "hash_nt_password_hash",
    "nt_password_hash",
    "user_name_for_hash",
]

CHALLENGE_SIZE = 16
NT_RESPONSE_SIZE = 24
MSK_SIZE = 64
_SESSION_KEY_SIZE = 16  # RFC 3079 §3.4: 128-bit keys

# RFC 2759 §8.7
_AUTH_MAGIC1 = b"Magic server to client signing constant"
_AUTH_MAGIC2 = b"Pad to make it do more than one iteration"
# RFC 3079 §3.4
_MASTER_MAGIC = b"This is the MPPE Master Key"
_SEND_MAGIC_CLIENT = (
    b"On the client side, this is the send key; on the server side, it is the receive key."
)
_RECEIVE_MAGIC_CLIENT = (
    b"On the client side, this is the receive key; on the server side, it is the send key."
)
_SHS_PAD1 = bytes(40)
_SHS_PAD2 = b"\xf2" * 40


def _sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def user_name_for_hash(name: bytes) -> bytes:
    """The user name as ChallengeHash takes it: without a ``DOMAIN\\`` prefix (§8.2)."""
    return name.split(b"\\", 1)[-1]


def nt_password_hash(password: str) -> bytes:
    """NtPasswordHash (RFC 2759 §8.3): MD4 of the password in UTF-16LE."""
    return md4(password.encode("utf-16-le"))


def hash_nt_password_hash(password_hash: bytes) -> bytes:
    """HashNtPasswordHash (RFC 2759 §8.4)."""
    return md4(password_hash)


def challenge_hash(
    peer_challenge: bytes, authenticator_challenge: bytes, user_name: bytes
) -> bytes:
    """ChallengeHash (RFC 2759 §8.2): the first 8 bytes of SHA-1 over both challenges and
    the user name (already without its domain)."""
    return _sha1(peer_challenge, authenticator_challenge, user_name)[:8]


def _des_key(key7: bytes) -> bytes:
    """The 7-byte key spread over 8 bytes, 7 bits each, with odd parity in the low bit
    (RFC 2759 §8.6 DesEncrypt; DES ignores the parity bits)."""
    bits = int.from_bytes(key7, "big")
    out = bytearray()
    for i in range(8):
        byte = ((bits >> (49 - 7 * i)) & 0x7F) << 1
        out.append(byte | (bin(byte).count("1") + 1) % 2)
    return bytes(out)


def _des_encrypt(clear: bytes, key7: bytes) -> bytes:
    key = _des_key(key7)
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(clear) + encryptor.finalize()


def challenge_response(challenge: bytes, password_hash: bytes) -> bytes:
    """ChallengeResponse (RFC 2759 §8.5): the 8-byte challenge under three DES keys cut
    from the password hash padded with zeros to 21 bytes."""
    z = password_hash.ljust(21, b"\0")
    return b"".join(_des_encrypt(challenge, z[i : i + 7]) for i in (0, 7, 14))


def generate_nt_response(
    authenticator_challenge: bytes, peer_challenge: bytes, user_name: bytes, password_hash: bytes
) -> bytes:
    """GenerateNTResponse (RFC 2759 §8.1), from the NT hash of the password."""
    challenge = challenge_hash(peer_challenge, authenticator_challenge, user_name)
    return challenge_response(challenge, password_hash)


def _authenticator_digest(
    password_hash: bytes,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    user_name: bytes,
) -> bytes:
    digest = _sha1(hash_nt_password_hash(password_hash), nt_response, _AUTH_MAGIC1)
    challenge = challenge_hash(peer_challenge, authenticator_challenge, user_name)
    return _sha1(digest, challenge, _AUTH_MAGIC2)


def generate_authenticator_response(
    password_hash: bytes,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    user_name: bytes,
) -> str:
    """GenerateAuthenticatorResponse (RFC 2759 §8.7): ``"S="`` and 40 upper-case hex
    digits, from the NT hash of the password."""
    digest = _authenticator_digest(
        password_hash, nt_response, peer_challenge, authenticator_challenge, user_name
    )
    return "S=" + digest.hex().upper()


def check_authenticator_response(
    password_hash: bytes,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    user_name: bytes,
    received: bytes,
) -> bool:
    """CheckAuthenticatorResponse (RFC 2759 §8.8): does ``received``, the 20 bytes the
    S= of the server's Success carried, prove the server knows the password? Compared in
    constant time."""
    expected = _authenticator_digest(
        password_hash, nt_response, peer_challenge, authenticator_challenge, user_name
    )
    return hmac.compare_digest(expected, received)


def get_master_key(password_hash_hash: bytes, nt_response: bytes) -> bytes:
    """GetMasterKey (RFC 3079 §3.4): 16 bytes."""
    return _sha1(password_hash_hash, nt_response, _MASTER_MAGIC)[:16]


def get_asymmetric_start_key(master_key: bytes, is_send: bool, is_server: bool) -> bytes:
    """GetAsymmetricStartKey (RFC 3079 §3.4) for a 128-bit session key: the peer's send
    key is the server's receive key, and the other way round."""
    magic = _SEND_MAGIC_CLIENT if is_send != is_server else _RECEIVE_MAGIC_CLIENT
    return _sha1(master_key, _SHS_PAD1, magic, _SHS_PAD2)[:_SESSION_KEY_SIZE]


def generate_msk(password_hash: bytes, nt_response: bytes) -> bytes:
    """The 64-byte MSK as strongSwan builds it, the same on both ends: the server's
    receive key, the server's send key, 32 zero bytes (see the module's docstring)."""
    master_key = get_master_key(hash_nt_password_hash(password_hash), nt_response)
    receive_key = get_asymmetric_start_key(master_key, is_send=False, is_server=True)
    send_key = get_asymmetric_start_key(master_key, is_send=True, is_server=True)
    return receive_key + send_key + bytes(MSK_SIZE - 2 * _SESSION_KEY_SIZE)
