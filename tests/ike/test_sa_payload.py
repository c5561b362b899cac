"""The SA payload's parts both versions share (`larval.ike.sa_payload`): the first four
octets of a proposal or transform, and the proposal read once for both.

Octets are written out by hand: mark (0 last, else "more"), RESERVED, length of the
whole (RFC 7296 §3.3.1, §3.3.2; RFC 2408 §3.5, §3.6).
"""

from __future__ import annotations

import pytest

from larval.ike.sa_payload import MORE_PROPOSALS, Substructure
from larval.ikev1 import constants as v1
from larval.ikev1.errors import IkeV1DecodeError
from larval.ikev1.sa_payload import Proposal as V1Proposal
from larval.ikev2 import constants as v2
from larval.ikev2.codec import CODEC
from larval.ikev2.errors import IkeDecodeError
from larval.ikev2.sa_payload import Proposal as V2Proposal
from larval.wire import Buffer

WIDGET = Substructure("widget", 5, "Mark", "Widget Length", CODEC, CODEC.decode_error)


def test_header_written_and_read() -> None:
    buf = Buffer()
    for last in (False, True):
        with CODEC.block(buf):
            WIDGET.push_header(buf, last)
            buf.push_bytes(b"ab")
    assert buf.data == bytes.fromhex("05000006 616200000006 6162")
    reader = CODEC.reader(buf.data, "list")
    first, first_last = WIDGET.pull(reader)
    assert (first.what, first.pull_rest(), first_last) == ("widget", b"ab", False)
    second, second_last = WIDGET.pull(reader)
    assert (second.pull_rest(), second_last) == (b"ab", True)
    assert reader.eof()


@pytest.mark.parametrize("mark", [1, 2, 4, 0xFF])
def test_a_wrong_mark_is_the_given_error(mark: int) -> None:
    reader = CODEC.reader(bytes([mark, 0, 0, 4]), "list")
    with pytest.raises(IkeDecodeError, match=f"^list: widget Mark is {mark}, not 0 or 5 "):
        WIDGET.pull(reader)


@pytest.mark.parametrize(
    ("length", "match"),
    [(3, "Widget Length length 3 is shorter than its 4-byte header"), (9, "runs 3 bytes past")],
)
def test_a_length_that_lies(length: int, match: str) -> None:
    reader = CODEC.reader(bytes([0, 0, 0, length, 0xAA, 0xBB]), "list")
    with pytest.raises(IkeDecodeError, match=match):
        WIDGET.pull(reader)


def test_both_versions_chain_proposals_alike() -> None:
    # RFC 7296 §3.3.1 Last Substruc and RFC 2408 §3.5 Next Payload agree on 2 and 0.
    assert V1Proposal.substructure.more == V2Proposal.substructure.more == MORE_PROPOSALS


# Proposal 1, protocol 1 (IKE / ISAKMP), no SPI, one transform that is the last; only
# the transform layouts differ.
V2_ONE = bytes.fromhex("00000010 0101000100000008 01000014")
V1_ONE = bytes.fromhex("00000010 0101000100000008 01010000")


def test_one_proposal_read_by_the_shared_decode() -> None:
    v2_proposal, v2_last = V2Proposal.decode(CODEC.reader(V2_ONE, "SA payload"))
    assert (v2_proposal.number, v2_proposal.protocol_id, v2_last) == (1, v2.ProtocolId.IKE, True)
    assert len(v2_proposal.transforms) == 1
    reader = V1Proposal.substructure.codec.reader(V1_ONE, "SA payload")
    v1_proposal, v1_last = V1Proposal.decode(reader)
    assert (v1_proposal.number, v1_proposal.protocol_id, v1_last) == (
        1,
        v1.ProtocolId.ISAKMP,
        True,
    )
    assert len(v1_proposal.transforms) == 1


def test_each_version_refuses_a_wrong_mark_in_its_own_words() -> None:
    # A proposal whose first octet is 5: neither the last (0) nor followed by more (2).
    with pytest.raises(IkeDecodeError, match="proposal Last Substruc is 5") as v2_info:
        V2Proposal.decode(CODEC.reader(b"\x05" + V2_ONE[1:], "SA payload"))
    assert v2_info.value.notify == v2.NotifyType.INVALID_SYNTAX
    reader = V1Proposal.substructure.codec.reader(b"\x05" + V1_ONE[1:], "SA payload")
    with pytest.raises(IkeV1DecodeError, match="proposal Next Payload is 5") as v1_info:
        V1Proposal.decode(reader)
    assert v1_info.value.notify == v1.NotifyType.INVALID_PAYLOAD_TYPE


@pytest.mark.parametrize(
    ("proposal", "data", "match"),
    [
        (V2Proposal, bytes.fromhex("00000008 01010002"), "Num Transforms says 2, 0 present"),
        (V1Proposal, bytes.fromhex("00000008 01010002"), "# of Transforms says 2, 0 present"),
    ],
)
def test_the_count_checked_in_the_versions_words(
    proposal: type[V1Proposal] | type[V2Proposal], data: bytes, match: str
) -> None:
    reader = proposal.substructure.codec.reader(data, "SA payload")
    with pytest.raises((IkeDecodeError, IkeV1DecodeError), match=f"^proposal 1: {match}"):
        proposal.decode(reader)


def test_transforms_encoded_the_same_each_time_and_marked_where_they_end() -> None:
    # The transforms of a proposal are encoded once and remembered: the same sequence
    # in another proposal (another number, SPI, position) gives the same octets, and
    # only the last transform of each proposal is marked the last.
    one, _ = V2Proposal.decode(CODEC.reader(V2_ONE, "SA payload"))
    (transform,) = one.transforms
    first = Buffer()
    one.encode(first, last=True)
    assert first.data == V2_ONE
    two = V2Proposal(7, v2.ProtocolId.ESP, b"\x01\x02\x03\x04", (transform, transform))
    for last in (False, True):
        buf = Buffer()
        two.encode(buf, last=last)
        assert buf.data == bytes.fromhex(
            f"{0 if last else 2:02x}00001c 07030402 01020304"
            "0300000801000014 0000000801000014"  # "more", then the last
        )
    # A sequence given as a list (not hashable as is) is encoded all the same.
    listed = V2Proposal(1, v2.ProtocolId.IKE, b"", [transform])  # type: ignore[arg-type]
    buf = Buffer()
    listed.encode(buf, last=True)
    assert buf.data == V2_ONE
