"""Configured suites as IKEv1 transforms, and back.

Connections are configured once, for either IKE version, with `larval.ike.config`'s
`IkeConfig` and `ChildConfig`, whose proposals are tuples of
`larval.crypto.ike_transforms.Transform` in IKEv2 numbering. IKEv1 carries one choice
of every algorithm per transform, as attributes (RFC 2409 Appendix A for Phase 1,
RFC 2407 §4.5 for Phase 2), so a suite that lists several ciphers or groups becomes
several transforms. The mapping:

* Phase 1: ENCR AES_CBC(12) + key bits -> ENCRYPTION_ALGORITHM AES_CBC(7) + KEY_LENGTH;
  PRF (or, without one, INTEG) HMAC_SHA2_256/384/512 -> HASH_ALGORITHM SHA2_256/384/512
  (4/5/6); DH id -> GROUP_DESCRIPTION (the same numbers); AUTHENTICATION_METHOD the
  one Phase 1 proves both ends with (pre-shared key, RSA or ECDSA signatures); LIFE_TYPE
  seconds and LIFE_DURATION.
* Phase 2 (ESP): the ENCR id is the transform id (the IPsec DOI numbers: ESP_AES 12,
  ESP_AES_GCM_16 20) with KEY_LENGTH; INTEG 12/13/14 -> AUTH_ALGORITHM
  HMAC_SHA2_256/384/512 (5/6/7); DH id -> GROUP_DESCRIPTION (PFS); ENCAPSULATION_MODE;
  SA_LIFE_TYPE seconds and SA_LIFE_DURATION. No ESN.

Choices compare on the algorithms and the authentication method only; lifetimes and the
encapsulation mode are carried, not negotiated here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from larval.crypto.ike_transforms import (
    DhId,
    EncrId,
    EsnId,
    IntegId,
    PrfId,
    TransformType,
)
from larval.crypto.ike_transforms import Transform as Ikev2Transform

from .constants import (
    EncapsulationMode,
    IkeAttr,
    IkeAuthMethod,
    IkeEncryption,
    IkeHash,
    IpsecAttr,
    IpsecAuthAlgorithm,
    IsakmpTransformId,
    LifeType,
)
from .sa_payload import Attribute, Transform

__all__ = [
    "EspChoice",
    "Phase1Choice",
    "esp_choices",
    "phase1_choices",
]

Suite = tuple[Ikev2Transform, ...]

_ENCR_OF_IKEV2: dict[int, int] = {EncrId.AES_CBC: IkeEncryption.AES_CBC}
_IKEV2_OF_ENCR = {v: k for k, v in _ENCR_OF_IKEV2.items()}
_HASH_OF_PRF: dict[int, int] = {
    PrfId.HMAC_SHA2_256: IkeHash.SHA2_256,
    PrfId.HMAC_SHA2_384: IkeHash.SHA2_384,
    PrfId.HMAC_SHA2_512: IkeHash.SHA2_512,
}
_PRF_OF_HASH = {v: k for k, v in _HASH_OF_PRF.items()}
_HASH_OF_INTEG: dict[int, int] = {
    IntegId.HMAC_SHA2_256_128: IkeHash.SHA2_256,
    IntegId.HMAC_SHA2_384_192: IkeHash.SHA2_384,
    IntegId.HMAC_SHA2_512_256: IkeHash.SHA2_512,
}
_INTEG_OF_HASH = {v: k for k, v in _HASH_OF_INTEG.items()}
#: `larval.crypto.ikev1_keys.Ikev1Prf` names of the HASH_ALGORITHM values.
HASH_NAMES: dict[int, str] = {
    IkeHash.MD5: "md5",
    IkeHash.SHA: "sha1",
    IkeHash.SHA2_256: "sha256",
    IkeHash.SHA2_384: "sha384",
    IkeHash.SHA2_512: "sha512",
}
_AUTH_OF_INTEG: dict[int, int] = {
    IntegId.HMAC_SHA2_256_128: IpsecAuthAlgorithm.HMAC_SHA2_256,
    IntegId.HMAC_SHA2_384_192: IpsecAuthAlgorithm.HMAC_SHA2_384,
    IntegId.HMAC_SHA2_512_256: IpsecAuthAlgorithm.HMAC_SHA2_512,
}
_INTEG_OF_AUTH = {v: k for k, v in _AUTH_OF_INTEG.items()}

#: The modes that carry ESP in UDP (RFC 3947 §5.1), under the RFC's and the drafts' numbers.
_UDP_MODES = frozenset(
    {
        EncapsulationMode.UDP_TUNNEL,
        EncapsulationMode.UDP_TRANSPORT,
        EncapsulationMode.UDP_TUNNEL_DRAFT,
        EncapsulationMode.UDP_TRANSPORT_DRAFT,
    }
)
_TUNNEL_MODES = frozenset(
    {EncapsulationMode.TUNNEL, EncapsulationMode.UDP_TUNNEL, EncapsulationMode.UDP_TUNNEL_DRAFT}
)


def _of_type(suite: Suite, ttype: int) -> list[Ikev2Transform]:
    return [t for t in suite if t.type == ttype]


def _duration(attr_type: int, seconds: int) -> Attribute:
    # RFC 2409 Appendix A: LIFE_DURATION may be variable length (TLV) when it needs it.
    return Attribute.of(attr_type, seconds)


@dataclass(frozen=True, slots=True)
class Phase1Choice:
    """One Phase 1 transform: cipher, hash, group, and how both ends authenticate."""

    encryption: int
    key_bits: int | None
    hash: int
    group: int
    lifetime: int = field(default=28800, compare=False)
    auth_method: int = IkeAuthMethod.PRE_SHARED_KEY

    @property
    def hash_name(self) -> str:
        return HASH_NAMES[self.hash]

    @property
    def key_size(self) -> int:
        """Bytes of the Phase 1 cipher key (RFC 2409 Appendix B cuts SKEYID_e to it)."""
        if self.key_bits is not None:
            return self.key_bits // 8
        return 24 if self.encryption == IkeEncryption.TRIPLE_DES_CBC else 16

    def transform(self, number: int) -> Transform:
        """KEY_IKE with this choice in its attributes (RFC 2409 Appendix A)."""
        attrs = [Attribute(IkeAttr.ENCRYPTION_ALGORITHM, self.encryption)]
        if self.key_bits is not None:
            attrs.append(Attribute(IkeAttr.KEY_LENGTH, self.key_bits))
        attrs += [
            Attribute(IkeAttr.HASH_ALGORITHM, self.hash),
            Attribute(IkeAttr.AUTHENTICATION_METHOD, self.auth_method),
            Attribute(IkeAttr.GROUP_DESCRIPTION, self.group),
            Attribute(IkeAttr.LIFE_TYPE, LifeType.SECONDS),
            _duration(IkeAttr.LIFE_DURATION, self.lifetime),
        ]
        return Transform(number, IsakmpTransformId.KEY_IKE, tuple(attrs))

    @classmethod
    def from_transform(cls, transform: Transform) -> Phase1Choice | None:
        """The choice a received transform makes, or None when it is not one we can
        do: another key exchange, no authentication method, a PRF attribute. Whether
        its authentication method is one this end takes is for the authenticator to say."""
        values: dict[int, int] = {}
        for attr in transform.attributes:
            values.setdefault(int(attr.attr_type), attr.number)
        if transform.transform_id != IsakmpTransformId.KEY_IKE:
            return None
        method = values.get(IkeAttr.AUTHENTICATION_METHOD)
        if method is None:
            return None
        if IkeAttr.PRF in values or IkeAttr.GROUP_TYPE in values:
            return None
        encryption = values.get(IkeAttr.ENCRYPTION_ALGORITHM)
        hash_id = values.get(IkeAttr.HASH_ALGORITHM)
        group = values.get(IkeAttr.GROUP_DESCRIPTION)
        if encryption is None or hash_id not in HASH_NAMES or group is None:
            return None
        lifetime = 28800  # RFC 2407 §4.5 default, which RFC 2409 leaves to the DOI
        if values.get(IkeAttr.LIFE_TYPE, LifeType.SECONDS) == LifeType.SECONDS:
            lifetime = values.get(IkeAttr.LIFE_DURATION, lifetime)
        return cls(encryption, values.get(IkeAttr.KEY_LENGTH), hash_id, group, lifetime, method)

    def suite(self) -> Suite:
        """The choice in IKEv2 numbering, as `IkeSaUp` reports it."""
        out = [
            Ikev2Transform(
                TransformType.ENCR, _IKEV2_OF_ENCR.get(self.encryption, 0), self.key_bits
            )
        ]
        if self.hash in _PRF_OF_HASH:
            out.append(Ikev2Transform(TransformType.PRF, _PRF_OF_HASH[self.hash]))
            out.append(Ikev2Transform(TransformType.INTEG, _INTEG_OF_HASH[self.hash]))
        out.append(Ikev2Transform(TransformType.DH, self.group))
        return tuple(out)


def phase1_choices(
    suites: Iterable[Suite], lifetime: int, auth_method: int = IkeAuthMethod.PRE_SHARED_KEY
) -> list[Phase1Choice]:
    """Every transform the configured IKE suites make, in order of preference, each with
    the one authentication method."""
    out: list[Phase1Choice] = []
    for suite in suites:
        hashes = [_HASH_OF_PRF.get(t.id) for t in _of_type(suite, TransformType.PRF)] or [
            _HASH_OF_INTEG.get(t.id) for t in _of_type(suite, TransformType.INTEG)
        ]
        for encr, hash_id, group in itertools.product(
            _of_type(suite, TransformType.ENCR), hashes, _of_type(suite, TransformType.DH)
        ):
            encryption = _ENCR_OF_IKEV2.get(encr.id)
            if encryption is None or hash_id is None:
                continue  # no IKEv1 equivalent (AEAD ciphers, for one)
            choice = Phase1Choice(
                encryption, encr.key_bits, hash_id, group.id, lifetime, auth_method
            )
            if choice not in out:
                out.append(choice)
    return out


@dataclass(frozen=True, slots=True)
class EspChoice:
    """One ESP transform of a Quick Mode proposal (RFC 2407 §4.4.4, §4.5)."""

    transform_id: int
    key_bits: int | None
    auth: int | None
    group: int | None  # PFS
    lifetime: int = field(default=3600, compare=False)
    mode: int = field(default=EncapsulationMode.TUNNEL, compare=False)

    def transform(self, number: int) -> Transform:
        attrs = [
            Attribute(IpsecAttr.SA_LIFE_TYPE, LifeType.SECONDS),
            _duration(IpsecAttr.SA_LIFE_DURATION, self.lifetime),
        ]
        if self.group is not None:
            attrs.append(Attribute(IpsecAttr.GROUP_DESCRIPTION, self.group))
        attrs.append(Attribute(IpsecAttr.ENCAPSULATION_MODE, self.mode))
        if self.auth is not None:
            attrs.append(Attribute(IpsecAttr.AUTH_ALGORITHM, self.auth))
        if self.key_bits is not None:
            attrs.append(Attribute(IpsecAttr.KEY_LENGTH, self.key_bits))
        return Transform(number, self.transform_id, tuple(attrs))

    @classmethod
    def from_transform(cls, transform: Transform) -> EspChoice:
        values: dict[int, int] = {}
        for attr in transform.attributes:
            values.setdefault(int(attr.attr_type), attr.number)
        lifetime = 28800  # RFC 2407 §4.5: the default when no lifetime is given
        if values.get(IpsecAttr.SA_LIFE_TYPE, LifeType.SECONDS) == LifeType.SECONDS:
            lifetime = values.get(IpsecAttr.SA_LIFE_DURATION, lifetime)
        return cls(
            int(transform.transform_id),
            values.get(IpsecAttr.KEY_LENGTH),
            values.get(IpsecAttr.AUTH_ALGORITHM),
            values.get(IpsecAttr.GROUP_DESCRIPTION),
            lifetime,
            values.get(IpsecAttr.ENCAPSULATION_MODE, EncapsulationMode.TUNNEL),
        )

    @property
    def udp(self) -> bool:
        return self.mode in _UDP_MODES

    @property
    def tunnel(self) -> bool:
        return self.mode in _TUNNEL_MODES

    def suite(self) -> Suite:
        """The choice in IKEv2 numbering, as `ChildSaUp` reports it (ESN: no)."""
        out = [Ikev2Transform(TransformType.ENCR, self.transform_id, self.key_bits)]
        if self.auth is not None:
            out.append(Ikev2Transform(TransformType.INTEG, _INTEG_OF_AUTH.get(self.auth, 0)))
        if self.group is not None:
            out.append(Ikev2Transform(TransformType.DH, self.group))
        out.append(Ikev2Transform(TransformType.ESN, EsnId.NO))
        return tuple(out)


def esp_choices(
    suites: Sequence[Suite], lifetime: int, mode: int, *, pfs: bool = True
) -> list[EspChoice]:
    """Every ESP transform the configured suites make, in order of preference.

    ``pfs=False`` drops the groups (a responder whose policy names one still accepts a
    Quick Mode without KE only if it also lists the suite without it)."""
    out: list[EspChoice] = []
    for suite in suites:
        if any(t.id == EsnId.YES for t in _of_type(suite, TransformType.ESN)):
            continue  # RFC 4304's ESN attribute is not offered
        integs: list[int | None] = [
            _AUTH_OF_INTEG.get(t.id) for t in _of_type(suite, TransformType.INTEG) if t.id
        ] or [None]
        groups: list[int | None] = [
            t.id for t in _of_type(suite, TransformType.DH) if t.id != DhId.NONE
        ] or [None]
        if not pfs:
            groups = [None]
        for encr, auth, group in itertools.product(
            _of_type(suite, TransformType.ENCR), integs, groups
        ):
            choice = EspChoice(encr.id, encr.key_bits, auth, group, lifetime, mode)
            if choice not in out:
                out.append(choice)
    return out
