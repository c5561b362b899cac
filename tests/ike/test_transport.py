"""The transport of one IKE SA, with each version's policy plugged in: the retransmission
schedule and the give-up, replies to retransmitted requests from the cache, the window and
message IDs, and fragments through each version's framing. A fake clock throughout."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from larval.crypto.ike_transforms import EncrId, IntegId, Transform
from larval.crypto.sk import SkCipher
from larval.ike.transport import (
    Framing,
    GaveUp,
    IkeTransport,
    MessageIdPolicy,
    RandomIds,
    Retransmission,
    Verdict,
    WindowedIds,
)
from larval.ikev1.errors import IkeV1DecodeError, IkeV1ProtocolError
from larval.ikev1.fragments import MAX_MESSAGE
from larval.ikev1.framing import Ikev1Framing
from larval.ikev2.constants import ExchangeType
from larval.ikev2.fragments import FragmentReassembler
from larval.ikev2.framing import Ikev2Framing
from larval.ikev2.message import IkeMessage
from larval.ikev2.payloads import NoncePayload, VendorIdPayload

PEER = ("192.0.2.2", 500)
SCHEDULE = Retransmission(timeout=4.0, base=1.8, tries=5)
#: When a request sent at 0 goes again: 4, then each wait 1.8 times the last (RFC 7296
#: §2.1, strongSwan's defaults), and at the last due time it is given up.
DUE = list(itertools.accumulate(4.0 * 1.8**n for n in range(6)))


class Raw:
    """A framing that carries bytes unchanged, for the tests of what is not framing."""

    def frame(self, message: bytes) -> tuple[bytes, ...]:
        return (message,)

    def unframe(self, data: bytes) -> bytes | None:
        return data


def counter(start: int = 1) -> Callable[[int], bytes]:
    """Random bytes that are 1, 2, 3... so that message IDs can be told in advance."""
    numbers = itertools.count(start)
    return lambda n: next(numbers).to_bytes(n, "big")


POLICIES: dict[str, Callable[[], MessageIdPolicy]] = {
    "IKEv2": WindowedIds,
    "IKEv1": lambda: RandomIds(counter()),
}


def transport(policy: MessageIdPolicy) -> IkeTransport[bytes]:
    return IkeTransport(policy, Raw(), PEER, SCHEDULE)


# -- retransmission ------------------------------------------------------------------------


@pytest.mark.parametrize("version", POLICIES)
def test_a_request_is_resent_on_schedule_then_given_up(version: str) -> None:
    t = transport(POLICIES[version]())
    mid = t.new_message_id()
    t.send_request(mid, (b"frag 1", b"frag 2"), 0.0, "IKE_AUTH request")
    assert t.datagrams_to_send(0.0) == [(b"frag 1", PEER), (b"frag 2", PEER)]
    for n, due in enumerate(DUE[:-1], 1):
        assert t.get_timer() == pytest.approx(due)
        assert t.handle_timer(due - 0.001) == [] and t.datagrams_to_send(due) == []
        assert t.handle_timer(due) == []
        # Every fragment again (RFC 7383 §2.6.2), the same bytes.
        assert t.datagrams_to_send(due) == [(b"frag 1", PEER), (b"frag 2", PEER)], n
    assert t.get_timer() == pytest.approx(DUE[-1])
    assert t.handle_timer(DUE[-1]) == [GaveUp(mid, "IKE_AUTH request", 6)]
    assert t.datagrams_to_send(DUE[-1]) == [] and t.get_timer() is None
    assert list(t.outstanding()) == []


@pytest.mark.parametrize("version", POLICIES)
def test_an_answered_request_is_resent_no_more(version: str) -> None:
    t = transport(POLICIES[version]())
    mid = t.new_message_id()
    t.send_request(mid, (b"req",), 10.0)
    request = t.answered(mid)
    assert request is not None and request.round_trip(10.5) == pytest.approx(0.5)
    assert t.get_timer() is None and t.handle_timer(1000.0) == []
    assert t.answered(mid) is None


def test_a_resent_request_measures_no_round_trip_and_follows_the_peer() -> None:
    t = transport(WindowedIds())
    t.send_request(0, (b"req",), 0.0)
    t.datagrams_to_send(0.0)
    t.remote = ("192.0.2.2", 4500)  # the peer floated behind a NAT (RFC 7296 §2.23)
    t.handle_timer(DUE[0])
    assert t.datagrams_to_send(DUE[0]) == [(b"req", ("192.0.2.2", 4500))]
    request = t.answered(0)
    assert request is not None and request.retransmits == 1
    assert request.round_trip(5.0) is None  # Karn's rule


def test_a_cancelled_transport_resends_nothing_but_still_replays() -> None:
    t = transport(WindowedIds())
    t.send_request(0, (b"req",), 0.0)
    assert t.receive(b"", PEER, 0, is_response=False) is Verdict.NEW
    t.reply(0, (b"answer",), PEER)
    t.cancel()
    t.datagrams_to_send(0.0)
    assert t.get_timer() is None and t.handle_timer(100.0) == []
    assert t.receive(b"", PEER, 0, is_response=False) is Verdict.REPLAYED
    assert t.datagrams_to_send(100.0) == [(b"answer", PEER)]


def test_a_renewed_request_goes_out_anew_each_time_on_the_same_schedule() -> None:
    # IKEv1's R-U-THERE: every one its own sequence number and Message ID (RFC 3706 §5.5).
    t = transport(RandomIds(counter()))
    made = iter(range(100, 200))

    def renew() -> tuple[int, tuple[bytes, ...]]:
        n = next(made)
        return n, (b"R-U-THERE %d" % n,)

    mid, datagrams = renew()
    t.send_request(mid, datagrams, 0.0, "R-U-THERE", renew=renew)
    t.datagrams_to_send(0.0)
    for n, due in enumerate(DUE[:2], 101):
        assert t.handle_timer(due) == []
        assert t.datagrams_to_send(due) == [(b"R-U-THERE %d" % n, PEER)]
        assert list(t.outstanding()) == [n]
    assert t.answered(100) is None  # the ACK of an older one answers nothing
    t.cancel(102)
    assert t.get_timer() is None and list(t.outstanding()) == []


# -- replies to retransmitted requests -----------------------------------------------------


def test_ikev2_a_retransmitted_request_is_answered_from_the_cache() -> None:
    t = transport(WindowedIds())
    assert t.receive(b"request 0", PEER, 0, is_response=False) is Verdict.NEW
    t.reply(0, (b"response 1/2", b"response 2/2"), PEER, "IKE_AUTH response 0")
    t.datagrams_to_send(0.0)
    # Fragment 2 of the request again: nothing (RFC 7383 §2.6.1); fragment 1: every
    # fragment of the response, to where the request came from (RFC 7296 §2.11).
    assert t.receive(b"x", PEER, 0, is_response=False, first_fragment=False) is Verdict.REPLAYED
    assert t.datagrams_to_send(1.0) == []
    elsewhere = ("192.0.2.2", 4500)
    assert t.receive(b"x", elsewhere, 0, is_response=False) is Verdict.REPLAYED
    assert t.datagrams_to_send(1.0) == [(b"response 1/2", elsewhere), (b"response 2/2", elsewhere)]
    assert t.reply_text(b"", 0) == "IKE_AUTH response 0"
    # The next request is taken; after its answer only that answer is kept.
    assert t.receive(b"request 1", PEER, 1, is_response=False) is Verdict.NEW
    t.reply(1, (b"response",), PEER)
    assert t.receive(b"x", PEER, 0, is_response=False) is Verdict.DROPPED


def test_ikev1_a_datagram_received_again_gets_again_what_answered_it() -> None:
    t = transport(RandomIds(counter()))
    assert t.receive(b"MM3", PEER) is Verdict.NEW
    mark = t.mark()
    t.send((b"MM4",))
    t.remember(b"MM3", mark)
    t.datagrams_to_send(0.0)
    t.remote = ("192.0.2.2", 4500)
    assert t.receive(b"MM3", ("192.0.2.9", 500)) is Verdict.REPLAYED
    assert t.datagrams_to_send(0.0) == [(b"MM4", ("192.0.2.2", 4500))]  # to the peer
    # A datagram that was answered with nothing is recognised too, and answered so.
    mark = t.mark()
    t.remember(b"fragment 2", mark)
    assert t.receive(b"fragment 2", PEER) is Verdict.REPLAYED
    assert t.datagrams_to_send(0.0) == []


def test_ikev1_keeps_the_last_32_replies() -> None:
    t = transport(RandomIds(counter()))
    for n in range(33):
        mark = t.mark()
        t.send((b"reply %d" % n,))
        t.remember(b"request %d" % n, mark)
    t.datagrams_to_send(0.0)
    assert t.receive(b"request 0", PEER) is Verdict.NEW
    assert t.receive(b"request 1", PEER) is Verdict.REPLAYED
    assert t.datagrams_to_send(0.0) == [(b"reply 1", PEER)]


# -- the window and message IDs ----------------------------------------------------------


def test_ikev2_message_ids_and_window_of_one() -> None:
    t = transport(WindowedIds())
    assert t.window_open() and t.new_message_id() == 0
    t.send_request(0, (b"IKE_SA_INIT",), 0.0)
    assert not t.window_open()  # RFC 7296 §2.3
    assert t.answered(0) is not None and t.window_open()
    # A retry of IKE_SA_INIT (COOKIE, INVALID_KE_PAYLOAD) is message 0 again.
    t.send_request(0, (b"IKE_SA_INIT with a COOKIE",), 0.0)
    t.answered(0)
    assert t.new_message_id() == 1
    t.send_request(1, (b"IKE_AUTH",), 0.0)
    assert t.new_message_id() == 2


def test_ikev2_out_of_window_messages_are_dropped() -> None:
    t = transport(WindowedIds())
    # The peer's requests: only the next ID is taken.
    assert t.receive(b"", PEER, 1, is_response=False) is Verdict.DROPPED
    assert t.receive(b"", PEER, 0, is_response=False) is Verdict.NEW
    t.reply(0, (b"answer 0",), PEER)
    assert t.receive(b"", PEER, 2, is_response=False) is Verdict.DROPPED
    assert t.receive(b"", PEER, 1, is_response=False) is Verdict.NEW
    # Responses: only to our outstanding request.
    assert t.receive(b"", PEER, 0, is_response=True) is Verdict.DROPPED
    t.send_request(0, (b"ours",), 0.0)
    assert t.receive(b"", PEER, 1, is_response=True) is Verdict.DROPPED
    assert t.receive(b"", PEER, 0, is_response=True) is Verdict.NEW
    t.answered(0)
    assert t.receive(b"", PEER, 0, is_response=True) is Verdict.DROPPED  # a late copy
    assert t.datagrams_to_send(0.0) == [(b"answer 0", PEER), (b"ours", PEER)]


def test_ikev1_message_ids_are_random_nonzero_and_unique_among_those_under_way() -> None:
    draws = iter([0, 7, 7, 9])
    t = transport(RandomIds(lambda n: next(draws).to_bytes(n, "big")))
    assert t.new_message_id() == 7  # 0 is Phase 1's (RFC 2408 §3.1)
    t.send_request(7, (b"QM1",), 0.0)
    t.send_request(0, (b"MM1",), 0.0)  # no window: any number of exchanges at once
    assert t.window_open() and sorted(t.outstanding()) == [0, 7]
    assert t.new_message_id() == 9  # 7 is under way


# -- fragments, through each version's framing -------------------------------------------


def _v2_framing(size: int = 200) -> tuple[Ikev2Framing, Ikev2Framing]:
    encr, integ = Transform(1, EncrId.AES_CBC, 128), IntegId.HMAC_SHA2_256_128
    keys = bytes(range(16)), bytes(range(32))
    sender, receiver = Ikev2Framing(size), Ikev2Framing(size)
    sender.outbound = SkCipher.of(encr, integ, *keys)
    receiver.inbound = SkCipher.of(encr, integ, *keys)
    sender.fragmentation = receiver.fragmentation = True
    return sender, receiver


BIG = IkeMessage(
    bytes(range(8)), bytes(range(8, 16)), ExchangeType.IKE_AUTH, True, False, 1,
    (NoncePayload(bytes(32)), VendorIdPayload(bytes(range(256)) * 3)),
)  # fmt: skip


def test_ikev2_fragments_out_of_order_twice_and_missing() -> None:
    sender, receiver = _v2_framing()
    t = IkeTransport(WindowedIds(), receiver, PEER, SCHEDULE)
    pieces = sender.frame(BIG)
    assert len(pieces) > 3 and all(len(p) <= 200 for p in pieces)
    *rest, last = pieces
    for piece in [rest[-1], *reversed(rest), rest[0]]:
        assert t.unframe(piece) is None  # out of order, fragment 1 twice, the last missing
    assert t.unframe(last) == BIG
    assert t.unframe(last) is None  # a new message now: one fragment is not all of it
    # Small enough, or fragmentation not agreed: whole, in one SK payload.
    small = IkeMessage(BIG.spi_i, BIG.spi_r, ExchangeType.INFORMATIONAL, True, False, 2, ())
    (one,) = sender.frame(small)
    assert t.unframe(one) == small
    sender.fragmentation = False
    (whole,) = sender.frame(BIG)
    assert t.unframe(whole) == BIG


def test_ikev2_oversize_fragments_are_dropped() -> None:
    sender, receiver = _v2_framing(100)
    pieces = sender.frame(BIG)
    receiver.reassembler = FragmentReassembler(max_bytes=500)
    # The message is dropped when it grows past 500 bytes; what follows cannot make it.
    assert [receiver.unframe(p) for p in pieces] == [None] * len(pieces)
    receiver.reassembler = FragmentReassembler()
    assert [receiver.unframe(p) for p in pieces][-1] == BIG


def test_ikev2_fragments_are_ignored_unless_agreed() -> None:
    sender, receiver = _v2_framing()
    receiver.fragmentation = False  # RFC 7383 §2.3
    assert [receiver.unframe(p) for p in sender.frame(BIG)] == [None] * len(sender.frame(BIG))
    assert len(receiver.reassembler) == 0


def _isakmp(size: int) -> bytes:
    """An ISAKMP message of `size` bytes: a header and an opaque body."""
    header = bytes(range(16)) + bytes([8, 0x10, 2, 1]) + (0).to_bytes(4, "big")
    return header + size.to_bytes(4, "big") + bytes(n % 251 for n in range(size - 28))


def test_ikev1_fragments_out_of_order_twice_and_missing() -> None:
    sender = Ikev1Framing(41, fragment_size=200)
    receiver = Ikev1Framing(0)
    t = IkeTransport(RandomIds(counter()), receiver, PEER, SCHEDULE)
    message = _isakmp(900)
    assert sender.frame(message) == (message,)  # the peer did not announce fragments
    sender.peer = True
    pieces = sender.frame(message)
    assert len(pieces) == 6 and sender.fragment_id == 42
    for piece in [pieces[3], pieces[0], pieces[0], pieces[5], pieces[1], pieces[4]]:
        assert t.unframe(piece) is None  # fragment 3 missing
    assert len(receiver.reassembler) == 5
    assert t.unframe(pieces[2]) == message
    assert t.unframe(_isakmp(100)) == _isakmp(100)  # not a fragment: as it came


def test_ikev1_oversize_and_unwanted_fragments_raise() -> None:
    sender = Ikev1Framing(0, fragment_size=1000)
    sender.peer = True
    receiver = Ikev1Framing(0)
    pieces = sender.frame(_isakmp(MAX_MESSAGE + 2000))[:-1]
    with pytest.raises(IkeV1DecodeError, match=f"more than {MAX_MESSAGE} bytes"):
        for piece in pieces:
            receiver.unframe(piece)
    assert len(receiver.reassembler) == 0
    receiver.enabled = False
    with pytest.raises(IkeV1ProtocolError, match="a fragment"):
        receiver.unframe(pieces[0])


def _v1_framing() -> tuple[Ikev1Framing, Ikev1Framing]:
    sender, receiver = Ikev1Framing(0, fragment_size=200), Ikev1Framing(0)
    sender.peer = True
    return sender, receiver


@pytest.mark.parametrize(
    ("make", "message"),
    [(_v2_framing, BIG), (_v1_framing, _isakmp(900))],
    ids=["IKEv2", "IKEv1"],
)
@given(data=st.data())
def test_fragments_in_any_order_make_the_message_once_all_are_in(
    make: Callable[[], tuple[Framing[Any], Framing[Any]]], message: object, data: st.DataObject
) -> None:
    sender, receiver = make()
    pieces = sender.frame(message)
    assert len(pieces) > 3
    every = range(len(pieces))
    # Any pieces, twice or not at all, then each once more in any order.
    order = data.draw(st.lists(st.sampled_from(every), max_size=3 * len(pieces)))
    order += data.draw(st.permutations(every))
    held: set[int] = set()
    made = 0
    for index in order:
        held.add(index)
        whole = held == set(every)
        # Missing pieces hold the message back, a piece twice is ignored, and the last
        # one missing brings the message out, once: what follows starts a new one.
        assert receiver.unframe(pieces[index]) == (message if whole else None)
        if whole:
            held, made = set(), made + 1
    assert made >= 1
