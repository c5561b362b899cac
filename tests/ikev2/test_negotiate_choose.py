"""Choosing a proposal (RFC 7296 §2.7): what a responder answers, and that it answers
the same on every message, whatever was converted before."""

from __future__ import annotations

from larval.crypto.ike_transforms import EsnId, Transform, TransformType
from larval.ikev2.constants import ProtocolId
from larval.ikev2.negotiate import choose, from_wire, to_wire

ESP = int(ProtocolId.ESP)
AES128GCM = Transform(TransformType.ENCR, 20, 128)
AES256GCM = Transform(TransformType.ENCR, 20, 256)
NO_ESN = Transform(TransformType.ESN, EsnId.NO)
ESN = Transform(TransformType.ESN, EsnId.YES)


def test_answer_keeps_each_proposals_number_and_spi() -> None:
    ours = [(AES128GCM, NO_ESN)]
    for spi in (b"\x00\x00\x00\x01", b"\x00\x00\x00\x02"):
        offered = to_wire(3, ESP, spi, (AES256GCM, AES128GCM, NO_ESN))
        chosen = choose(ours, [offered], ESP)
        assert chosen is not None
        answer, suite = chosen
        assert (answer.number, answer.spi) == (3, spi)
        assert suite == (AES128GCM, NO_ESN)
        assert from_wire(answer) == suite


def test_our_order_decides_and_unknown_types_need_none() -> None:
    theirs = [
        to_wire(1, ESP, b"\x00\x00\x00\x09", (AES128GCM, ESN)),
        to_wire(2, ESP, b"\x00\x00\x00\x09", (AES256GCM, NO_ESN)),
    ]
    picked = choose([(AES256GCM,), (AES128GCM, ESN)], theirs, ESP)
    assert picked is not None and picked[0].number == 2
    # Asked again (the conversions remembered): the same answer.
    assert choose([(AES256GCM,), (AES128GCM, ESN)], theirs, ESP) == picked
    # ESN offered alone, and we name no ESN: only "no ESN" would be acceptable.
    assert choose([(AES128GCM,)], theirs[:1], ESP) is None
    # Another protocol's proposals are not looked at.
    assert choose([(AES128GCM, ESN)], theirs, int(ProtocolId.AH)) is None


def test_list_of_transforms_is_taken() -> None:
    # A suite given as a list (not hashable) is converted all the same.
    offered = to_wire(1, ESP, b"\x00\x00\x00\x05", [AES128GCM, NO_ESN])  # type: ignore[arg-type]
    assert from_wire(offered) == (AES128GCM, NO_ESN)
    assert choose([[AES128GCM, NO_ESN]], [offered], ESP) is not None  # type: ignore[list-item]


def test_a_remembered_choice_answers_the_proposal_it_names() -> None:
    # The same suites in the same order, other numbers, SPIs and protocols between them:
    # the choice made for the first offer must answer the second's own proposal.
    ah = int(ProtocolId.AH)
    ours = [(AES256GCM, NO_ESN)]
    first = [to_wire(1, ESP, b"\x00\x00\x00\x01", (AES128GCM, NO_ESN)),
             to_wire(2, ESP, b"\x00\x00\x00\x01", (AES256GCM, NO_ESN))]  # fmt: skip
    second = [to_wire(5, ah, b"\x00\x00\x00\x07", (AES256GCM, NO_ESN)),
              to_wire(6, ESP, b"\x00\x00\x00\x08", (AES128GCM, NO_ESN)),
              to_wire(7, ESP, b"\x00\x00\x00\x09", (AES256GCM, NO_ESN))]  # fmt: skip
    picked = choose(ours, first, ESP)
    assert picked is not None and picked[0].number == 2
    again = choose(ours, second, ESP)
    assert again is not None
    assert (again[0].number, again[0].spi) == (7, b"\x00\x00\x00\x09")
    assert again[1] == (AES256GCM, NO_ESN)
