"""The errors of IKE cryptography: bad proposals, bad peer values, failed integrity checks.

They are siblings under `LarvalError`, not one family, because the IKE layer answers
them differently: a proposal string is a configuration error, a peer's bad KE value is
answered with a Notify (INVALID_SYNTAX in IKE_SA_INIT, NO_PROPOSAL_CHOSEN in
CREATE_CHILD_SA), and a message that fails its integrity check is dropped without an
answer (RFC 7296 §2.21.2). No message ever shows key bytes.
"""

from __future__ import annotations

from larval.crypto.proposals import ProposalError
from larval.errors import LarvalError

__all__ = ["IkeCryptoError", "IkeIntegrityError", "IkeProposalError"]


class IkeProposalError(ProposalError):
    """A proposal string that names no valid IKE or CHILD_SA alternative.

    A `ProposalError`, so configuration code that checks ESP proposals catches it too.
    """


class IkeCryptoError(LarvalError):
    """A value from the peer or the caller that the cryptography cannot use.

    A KE payload of the wrong length or off the curve, a degenerate DH result, an
    unknown transform id, a key of the wrong length, a prf+ asked for too much output.
    """


class IkeIntegrityError(LarvalError):
    """An SK payload whose ICV, tag or padding does not verify (RFC 7296 §3.14)."""
