"""The IKEv2 Diffie-Hellman groups: key pairs, KE payload encodings and shared secrets.

What goes into a KE payload and what comes out as g^ir (RFC 7296 §3.4, §2.14):

* MODP groups 14 and 15 (RFC 3526): g^x big-endian, left-padded with zeros to the length
  of the prime; g^ir likewise (RFC 7296 §2.14: "represented as a string of octets in
  big endian order padded with zeros if necessary to make it the length of the modulus").
* ECP groups 19, 20, 21 (RFC 5903 §7): the public value is x | y, each coordinate
  fixed-length big-endian, without the SEC1 0x04 prefix; the shared secret is the x
  coordinate of the product point alone.
* Curve25519 and Curve448 (RFC 8031 §2): the 32- or 56-byte RFC 7748 encodings, for the
  public value and the shared secret alike.

A peer's public value is checked before use (RFC 8031 §4, RFC 5903 §7 and RFC 6989
§2.1): wrong length, a point off the curve, 0, 1 or p-1 for MODP, or an all-zero
X25519/X448 result raise `IkeCryptoError`.

A private value is drawn from the `RandomBytes` the caller passes (RFC 7296 §2.12: a
fresh one per exchange) and turned into a key by `cryptography`, which does all the
group arithmetic; `from_private` takes a chosen one, for known-answer tests. Private
values are never shown by a repr.
"""

from __future__ import annotations

import hmac
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from cryptography.hazmat.primitives.asymmetric import dh, ec, x448, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.utils import CryptographyDeprecationWarning

from larval.crypto.ike_errors import IkeCryptoError
from larval.crypto.ike_transforms import DhId
from larval.crypto.randomness import RandomBytes, random_int, system_random

__all__ = ["DhGroup", "DhKeyPair"]

# MODP group 14 stays mandatory to implement (RFC 8247 §2.4) while cryptography warns
# that its finite-field DH is deprecated. The groups stay until a release drops them,
# so the warning is silenced here rather than shown on every exchange.
warnings.filterwarnings(
    "ignore",
    message="Diffie-Hellman over finite fields",
    category=CryptographyDeprecationWarning,
)

# RFC 3526 §3 (2048-bit MODP group, id 14) and §4 (3072-bit, id 15); generator 2.
_MODP_2048 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)
_MODP_3072 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
    16,
)
_MODP_GENERATOR = 2
_MODP_EXPONENT_BITS = 256
_DRAWS = 16  # candidates for a private value before the source is deemed broken


class DhKeyPair(ABC):
    """A private value of a group and its public value, ready to agree on g^ir."""

    __slots__ = ("group", "public_bytes")

    def __init__(self, group: DhGroup, public_bytes: bytes) -> None:
        self.group = group
        # The KE payload's Key Exchange Data (RFC 7296 §3.4).
        self.public_bytes = public_bytes

    def __repr__(self) -> str:
        return f"DhKeyPair({self.group.dh_id.name}, public={len(self.public_bytes)} bytes)"

    def shared_secret(self, peer_public: bytes) -> bytes:
        """g^ir from the peer's Key Exchange Data; raises `IkeCryptoError` if unusable."""
        peer_public = bytes(peer_public)
        if len(peer_public) != self.group.public_size:
            raise IkeCryptoError(
                f"{self.group.dh_id.name} public value must be {self.group.public_size} "
                f"bytes, got {len(peer_public)}"
            )
        return self._agree(peer_public)

    @abstractmethod
    def _agree(self, peer_public: bytes) -> bytes: ...


class DhGroup(ABC):
    """One key exchange group: the sizes of its values and how to make key pairs."""

    _instances: ClassVar[dict[int, DhGroup]] = {}

    dh_id: DhId
    public_size: int  # bytes of Key Exchange Data in a KE payload
    secret_size: int  # bytes of g^ir

    @staticmethod
    def of(dh_id: int) -> DhGroup:
        """The group with this Transform Type 4 id; `IkeCryptoError` if unsupported."""
        group = DhGroup._instances.get(dh_id)
        if group is None:
            group = _make_group(dh_id)
            DhGroup._instances[dh_id] = group
        return group

    def __repr__(self) -> str:
        return f"DhGroup({self.dh_id.name})"

    def generate(self, random_bytes: RandomBytes = system_random) -> DhKeyPair:
        """A fresh key pair, its private value drawn from ``random_bytes``."""
        # A candidate out of the group's range is drawn again (NIST SP 800-56A rev. 3,
        # "testing candidates"); for P-256, the most likely to miss, one in 2^32 does.
        for _ in range(_DRAWS):
            try:
                return self.from_private(self._draw_private(random_bytes))
            except IkeCryptoError:
                continue
        raise IkeCryptoError(f"{self.dh_id.name}: no private value in {_DRAWS} draws")

    @abstractmethod
    def _draw_private(self, random_bytes: RandomBytes) -> bytes:
        """A candidate private value; `from_private` refuses one out of range."""

    @abstractmethod
    def from_private(self, private: bytes) -> DhKeyPair:
        """The key pair of the private value ``private``, big-endian for MODP and ECP,
        the RFC 7748 encoding for Curve25519 and Curve448; `IkeCryptoError` if it is
        not one of the group's private values."""


def _make_group(dh_id: int) -> DhGroup:
    if dh_id == DhId.MODP_2048:
        return _ModpGroup(DhId.MODP_2048, _MODP_2048)
    if dh_id == DhId.MODP_3072:
        return _ModpGroup(DhId.MODP_3072, _MODP_3072)
    if dh_id == DhId.ECP_256:
        return _EcpGroup(DhId.ECP_256, ec.SECP256R1(), 32)
    if dh_id == DhId.ECP_384:
        return _EcpGroup(DhId.ECP_384, ec.SECP384R1(), 48)
    if dh_id == DhId.ECP_521:
        # RFC 5903 §3.3: 521-bit coordinates take 66 octets.
        return _EcpGroup(DhId.ECP_521, ec.SECP521R1(), 66)
    if dh_id == DhId.CURVE25519:
        return _XdhGroup(
            DhId.CURVE25519,
            32,
            x25519.X25519PrivateKey.from_private_bytes,
            x25519.X25519PublicKey.from_public_bytes,
        )
    if dh_id == DhId.CURVE448:
        return _XdhGroup(
            DhId.CURVE448,
            56,
            x448.X448PrivateKey.from_private_bytes,
            x448.X448PublicKey.from_public_bytes,
        )
    raise IkeCryptoError(f"unsupported Diffie-Hellman group {DhId(dh_id).name}")


# -- MODP (RFC 3526) -------------------------------------------------------------------


class _ModpGroup(DhGroup):
    def __init__(self, dh_id: DhId, prime: int) -> None:
        self.dh_id = dh_id
        self.prime = prime
        self.public_size = self.secret_size = (prime.bit_length() + 7) // 8
        self.numbers = dh.DHParameterNumbers(prime, _MODP_GENERATOR)
        self._generator = dh.DHPublicNumbers(_MODP_GENERATOR, self.numbers).public_key()

    def _draw_private(self, random_bytes: RandomBytes) -> bytes:
        # RFC 3526 §8 puts the exponent for these groups at 220 to 420 bits; 256 bits
        # is at least twice the strength of either, as NIST SP 800-56A asks.
        x = random_int(random_bytes, 2, (1 << _MODP_EXPONENT_BITS) - 1)
        return x.to_bytes(_MODP_EXPONENT_BITS // 8, "big")

    def from_private(self, private: bytes) -> DhKeyPair:
        x = int.from_bytes(private, "big")
        if not 1 < x < self.prime - 1:
            raise IkeCryptoError(f"{self.dh_id.name} private value out of range")
        # cryptography builds a key from x and y = g^x mod p, and y is what x agrees on
        # with the peer value g: a key of x with a placeholder y computes it, in
        # OpenSSL's constant-time exponentiation. No arithmetic is done here.
        probe = dh.DHPrivateNumbers(x, dh.DHPublicNumbers(_MODP_GENERATOR, self.numbers))
        y = probe.private_key().exchange(self._generator).rjust(self.public_size, b"\0")
        numbers = dh.DHPublicNumbers(int.from_bytes(y, "big"), self.numbers)
        return _ModpKeyPair(self, dh.DHPrivateNumbers(x, numbers).private_key(), y)


class _ModpKeyPair(DhKeyPair):
    __slots__ = ("_key",)

    def __init__(self, group: _ModpGroup, key: dh.DHPrivateKey, public_bytes: bytes) -> None:
        super().__init__(group, public_bytes)
        self._key = key

    def _agree(self, peer_public: bytes) -> bytes:
        group = self.group
        assert isinstance(group, _ModpGroup)
        y = int.from_bytes(peer_public, "big")
        # RFC 6989 §2.1: 1 < y < p-1; 0, 1 and p-1 would force a predictable g^ir.
        if not 1 < y < group.prime - 1:
            raise IkeCryptoError(f"{group.dh_id.name} public value out of range (0, 1 or >= p-1)")
        try:
            peer = dh.DHPublicNumbers(y, group.numbers).public_key()
            secret = self._key.exchange(peer)
        except ValueError as exc:
            raise IkeCryptoError(f"{group.dh_id.name} public value rejected: {exc}") from None
        # RFC 7296 §2.14: g^ir is as long as the modulus, leading zeros kept.
        return secret.rjust(group.secret_size, b"\0")


# -- ECP (RFC 5903) --------------------------------------------------------------------


class _EcpGroup(DhGroup):
    def __init__(self, dh_id: DhId, curve: ec.EllipticCurve, coordinate_size: int) -> None:
        self.dh_id = dh_id
        self.curve = curve
        self.coordinate_size = coordinate_size
        self.public_size = 2 * coordinate_size  # RFC 5903 §7: x | y
        self.secret_size = coordinate_size  # RFC 5903 §9: x only

    def _draw_private(self, random_bytes: RandomBytes) -> bytes:
        # Uniform below 2^bits; `from_private` refuses 0 and values >= the group order.
        d = random_int(random_bytes, 0, (1 << self.curve.key_size) - 1)
        return d.to_bytes(self.coordinate_size, "big")

    def from_private(self, private: bytes) -> DhKeyPair:
        try:
            key = ec.derive_private_key(int.from_bytes(private, "big"), self.curve)
        except ValueError:
            raise IkeCryptoError(f"{self.dh_id.name} private value out of range") from None
        point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        # Strip SEC1's 0x04 "uncompressed" octet: IKE carries x | y bare (RFC 5903 §7).
        return _EcpKeyPair(self, key, point[1:])


class _EcpKeyPair(DhKeyPair):
    __slots__ = ("_key",)

    def __init__(
        self, group: _EcpGroup, key: ec.EllipticCurvePrivateKey, public_bytes: bytes
    ) -> None:
        super().__init__(group, public_bytes)
        self._key = key

    def _agree(self, peer_public: bytes) -> bytes:
        group = self.group
        assert isinstance(group, _EcpGroup)
        try:
            # Decoding checks that the point lies on the curve (RFC 5903 §7 requires it).
            peer = ec.EllipticCurvePublicKey.from_encoded_point(group.curve, b"\x04" + peer_public)
            return self._key.exchange(ec.ECDH(), peer)
        except ValueError:
            raise IkeCryptoError(f"{group.dh_id.name} public value is not on the curve") from None


# -- Curve25519 and Curve448 (RFC 8031) ------------------------------------------------


class _XdhPrivateKey(Protocol):
    """What X25519 and X448 private keys of `cryptography` share."""

    def public_key(self) -> _XdhPublicKey: ...

    def exchange(self, peer_public_key: Any, /) -> bytes: ...


class _XdhPublicKey(Protocol):
    def public_bytes_raw(self) -> bytes: ...


class _XdhGroup(DhGroup):
    def __init__(
        self,
        dh_id: DhId,
        size: int,
        load_private: Callable[[bytes], _XdhPrivateKey],
        load_public: Callable[[bytes], _XdhPublicKey],
    ) -> None:
        self.dh_id = dh_id
        self.public_size = self.secret_size = size
        self.load_private = load_private
        self.load_public = load_public

    def _draw_private(self, random_bytes: RandomBytes) -> bytes:
        # RFC 7748 §5: any string of the size, clamped by X25519 or X448 itself.
        return random_bytes(self.public_size)

    def from_private(self, private: bytes) -> DhKeyPair:
        if len(private) != self.public_size:
            raise IkeCryptoError(
                f"{self.dh_id.name} private value must be {self.public_size} bytes"
            )
        key = self.load_private(bytes(private))
        return _XdhKeyPair(self, key, key.public_key().public_bytes_raw())


class _XdhKeyPair(DhKeyPair):
    __slots__ = ("_key",)

    def __init__(self, group: _XdhGroup, key: _XdhPrivateKey, public_bytes: bytes) -> None:
        super().__init__(group, public_bytes)
        self._key = key

    def _agree(self, peer_public: bytes) -> bytes:
        group = self.group
        assert isinstance(group, _XdhGroup)
        try:
            secret = self._key.exchange(group.load_public(peer_public))
        except ValueError:
            secret = b""
        return _check_not_zero(group, secret)


def _check_not_zero(group: DhGroup, secret: bytes) -> bytes:
    # RFC 8031 §2.3: a small-order peer value gives the all-zero result, which MUST be
    # rejected. cryptography already refuses it; the check stands in case it stops.
    if len(secret) != group.secret_size or hmac.compare_digest(secret, bytes(group.secret_size)):
        raise IkeCryptoError(f"{group.dh_id.name} public value gives the all-zero secret")
    return secret
