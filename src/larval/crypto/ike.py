"""IKEv2 cryptography in one import: transforms, proposals, PRF, DH, keys, AUTH, SK.

Each part lives in its own module; this one gathers their public names so the IKE layer
writes ``from larval.crypto.ike import ...``:

* `larval.crypto.ike_transforms`: IANA transform ids, `Transform`, key sizes;
* `larval.crypto.ike_proposals`: strongSwan proposal strings to transforms;
* `larval.crypto.prf`: `Prf` with prf and prf+ (RFC 7296 §2.13);
* `larval.crypto.dh`: `DhGroup`, `DhKeyPair` (RFC 3526, RFC 5903, RFC 8031);
* `larval.crypto.ike_keys`: SKEYSEED and the SA keys (RFC 7296 §2.14, §2.17, §2.18);
* `larval.crypto.ike_auth`: shared-key AUTH (RFC 7296 §2.15);
* `larval.crypto.sk`: `SkCipher` for the Encrypted payload (RFC 7296 §3.14, RFC 5282).

Everything is sans-I/O; randomness (DH private values, IVs) can be injected.
"""

from __future__ import annotations

from larval.crypto.dh import DhGroup, DhKeyPair
from larval.crypto.ike_auth import KEY_PAD, psk_auth, signed_octets, verify_psk_auth
from larval.crypto.ike_errors import IkeCryptoError, IkeIntegrityError, IkeProposalError
from larval.crypto.ike_keys import (
    ChildSaKeyMaterial,
    ChildSaKeys,
    IkeSaKeys,
    derive_child_sa_keys,
    derive_ike_sa_keys,
    derive_rekeyed_ike_sa_keys,
)
from larval.crypto.ike_proposals import esp_proposal_transforms, parse_ike_proposal
from larval.crypto.ike_transforms import (
    KEY_LENGTH_ATTRIBUTE,
    DhId,
    EncrId,
    EsnId,
    IntegId,
    PrfId,
    Transform,
    TransformType,
    encr_key_size,
    integ_icv_size,
    integ_key_size,
    is_aead,
)
from larval.crypto.prf import Prf
from larval.crypto.sk import SkCipher

__all__ = [
    "KEY_LENGTH_ATTRIBUTE",
    "KEY_PAD",
    "ChildSaKeyMaterial",
    "ChildSaKeys",
    "DhGroup",
    "DhId",
    "DhKeyPair",
    "EncrId",
    "EsnId",
    "IkeCryptoError",
    "IkeIntegrityError",
    "IkeProposalError",
    "IkeSaKeys",
    "IntegId",
    "Prf",
    "PrfId",
    "SkCipher",
    "Transform",
    "TransformType",
    "derive_child_sa_keys",
    "derive_ike_sa_keys",
    "derive_rekeyed_ike_sa_keys",
    "encr_key_size",
    "esp_proposal_transforms",
    "integ_icv_size",
    "integ_key_size",
    "is_aead",
    "parse_ike_proposal",
    "psk_auth",
    "signed_octets",
    "verify_psk_auth",
]
