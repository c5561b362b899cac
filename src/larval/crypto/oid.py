"""An ASN.1 OBJECT IDENTIFIER's contents as dotted decimal text (X.690 §8.19), for the
DN attributes `larval.ike.identity` prints and the messages `larval.crypto.signatures`
writes."""

from __future__ import annotations


def dotted(der: bytes) -> str:
    """The contents of a DER OID (no tag, no length) as ``1.2.840.113549.1.1.11``;
    ValueError if empty or its last subidentifier is unfinished (X.690 §8.19.2)."""
    if not der or der[-1] & 0x80:
        raise ValueError("bad OID")
    arcs, value = [], 0
    for octet in der:
        value = value << 7 | octet & 0x7F
        if not octet & 0x80:
            arcs.append(value)
            value = 0
    # X.690 §8.19.4: the first subidentifier packs the first two arcs.
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, [first, arcs[0] - 40 * first, *arcs[1:]]))
