"""An IKE SA as a value: the round trip value -> JSON -> value, a repr without key bytes,
the documents refused (each with what and where), and the transport's part."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from larval.crypto.ike_proposals import esp_proposal_transforms, parse_ike_proposal
from larval.ike.config import ChildConfig
from larval.ike.identity import identity
from larval.ike.state import (
    FORMAT,
    FORMAT_VERSION,
    CachedReply,
    ChildSaState,
    IkeSaState,
    IkeStateError,
    Ikev1State,
    Ikev2State,
    PendingRequest,
    Secret,
    TransportState,
)
from larval.ike.transport import IkeTransport, RandomIds, Retransmission, Verdict, WindowedIds

SKEYID_D, SKEYID_A = bytes(range(0x10, 0x30)), bytes(range(0x30, 0x50))
SKEYID_E, ENC_KEY = bytes(range(0x50, 0x70)), bytes(range(0x70, 0x80))
PEER = ("192.0.2.2", 4500)
REQUEST = PendingRequest(
    0xCAFE, (b"frag 1", b"frag 2"), 1_764_000_100.0, 1_764_000_104.0, "R-U-THERE", 1, renews=True
)


def value(**changes: Any) -> IkeSaState:
    """An IKEv1 SA with a CHILD_SA, a cached reply of each kind and a request in flight."""
    child = ChildConfig(
        "net",
        (esp_proposal_transforms("aes128gcm16"), esp_proposal_transforms("aes256-sha384")),
        (ipaddress.ip_network("198.51.100.0/24"),),
        (ipaddress.ip_network("2001:db8::/32"),),
        rekey_time=1620,
        life_time=1800,
    )
    local_type, local_data = identity("192.0.2.1")
    state = IkeSaState(
        ike_version=1,
        name="s2s",
        initiator=True,
        spi_i=bytes.fromhex("0102030405060708"),
        spi_r=bytes.fromhex("1112131415161718"),
        local_id=(int(local_type), local_data),
        remote_id=None,
        suite=parse_ike_proposal("aes256-sha256-modp2048"),
        local_port=4500,
        natted=True,
        established_at=1_764_000_000.25,
        rekey_at=1_764_010_000.0,
        expires_at=None,
        transport=TransportState(
            PEER,
            3,
            7,
            (REQUEST,),
            (CachedReply(6, (b"answer",), "INFORMATIONAL"), CachedReply(bytes(32), (b"qm2",))),
        ),
        children=(
            ChildSaState(0x1001, 0xC0FFEE, esp_proposal_transforms("aes128gcm16"), child),
            ChildSaState(0x1002, 0xC0FFEF, child.proposals[1], child, renewed=True),
        ),
        ikev1=Ikev1State(
            aggressive=False,
            ike_lifetime=28800,
            encryption=7,
            key_bits=256,
            hash=4,
            group=14,
            lifetime=10800,
            skeyid_d=Secret(SKEYID_D),
            skeyid_a=Secret(SKEYID_A),
            skeyid_e=Secret(SKEYID_E),
            enc_key=Secret(ENC_KEY),
            phase1_last_block=bytes(range(16)),
            fragmentation=True,
            peer_fragmentation=False,
            fragment_size=1280,
            fragment_id=0xFFFF,
            peer_dpd=True,
            peer_nat_t=True,
            peer_initial_contact=False,
            dpd_seq=0x7FFFFFFF,
            dpd_message_id=0xCAFE,
            last_heard=1_764_000_070.5,
        ),
    )
    return dataclasses.replace(state, **changes)


SK_D, SK_EI, SK_AI = bytes(range(0x80, 0xA0)), bytes(range(0xA0, 0xB0)), bytes(32)
SK_ER, SK_AR = bytes(range(0xB0, 0xC0)), bytes(range(0xC0, 0xE0))
#: Written by larval before there were IKEv2 values (format version 1): `value()`.
WRITTEN_BEFORE = Path(__file__).with_name("ike_sa_v1.json")


def v2_value(**changes: Any) -> IkeSaState:
    """An IKEv2 SA with a CHILD_SA whose selectors were narrowed, and a liveness check in
    flight."""
    base = value()
    narrowed = dataclasses.replace(
        base.children[0],
        local_ts=(ipaddress.ip_network("198.51.100.0/25"),),
        remote_ts=(ipaddress.ip_network("2001:db8:1::/48"),),
    )
    state = dataclasses.replace(
        base,
        ike_version=2,
        suite=parse_ike_proposal("aes128-sha256-x25519"),
        expires_at=None,
        transport=dataclasses.replace(
            base.transport,
            requests=(
                dataclasses.replace(REQUEST, message_id=3, text="INFORMATIONAL", renews=False),
            ),
            replies=(CachedReply(6, (b"answer",), "INFORMATIONAL"),),
        ),
        children=(narrowed, dataclasses.replace(base.children[1], renewed=False)),
        ikev1=None,
        ikev2=Ikev2State(
            sk_d=Secret(SK_D),
            sk_ei=Secret(SK_EI),
            sk_ai=Secret(SK_AI),
            sk_er=Secret(SK_ER),
            sk_ar=Secret(SK_AR),
            next_iv=0xFFFF_FFFF_FFFF_FFF0,
            fragmentation=True,
            fragmentation_agreed=False,
            fragment_size=1280,
            deadline=1_764_000_130.0,
            liveness_check=3,
        ),
    )
    return dataclasses.replace(state, **changes)


def document(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(value().to_json())
    doc.update(changes)
    return doc


# -- the round trip --------------------------------------------------------------------------


def test_value_to_json_and_back_is_equal_and_the_json_is_stable() -> None:
    v = value()
    text = v.to_json()
    assert IkeSaState.from_json(text) == v
    assert IkeSaState.from_json(text).to_json() == text  # byte for byte
    assert IkeSaState.from_json(text.encode()) == v
    doc = json.loads(text)
    assert (doc["format"], doc["version"]) == (FORMAT, 1)
    assert list(doc) == sorted(doc)
    assert doc["spi_i"] == "0102030405060708" and doc["ikev1"]["skeyid_a"] == SKEYID_A.hex()
    assert doc["transport"]["remote"] == ["192.0.2.2", 4500]
    assert [r["key"] for r in doc["transport"]["replies"]] == [6, "00" * 32]
    assert "reference" not in doc["children"][0]["config"]
    assert doc["children"][0]["config"]["remote_ts"] == ["2001:db8::/32"]


def test_a_document_written_before_ikev2_values_reads_back_and_writes_out_the_same() -> None:
    text = WRITTEN_BEFORE.read_text().strip()
    assert json.loads(text)["version"] == 1
    assert IkeSaState.from_json(text) == value()
    assert IkeSaState.from_json(text).to_json() == text  # byte for byte
    assert value().to_json() == text  # an IKEv1 SA is still written as version 1


def test_an_ikev2_value_is_written_as_version_2_and_reads_back() -> None:
    v = v2_value()
    text = v.to_json()
    assert IkeSaState.from_json(text) == v
    assert IkeSaState.from_json(text).to_json() == text
    doc = json.loads(text)
    # 3: virtual IPs, authentication; 4: the XAuth user; 5: DNS servers and domains
    assert doc["version"] == 2 and FORMAT_VERSION == 5
    assert doc["ikev1"] is None and doc["ikev2"]["sk_ei"] == SK_EI.hex()
    assert doc["ikev2"]["next_iv"] == 0xFFFF_FFFF_FFFF_FFF0 and doc["ikev2"]["sk_ai"] == "00" * 32
    assert doc["children"][0]["local_ts"] == ["198.51.100.0/25"]
    assert doc["children"][0]["config"]["local_ts"] == ["198.51.100.0/24"]
    # A CHILD_SA without selectors of its own (IKEv1's) writes none, even in version 2.
    assert "local_ts" not in json.loads(value().to_json())["children"][0]


def test_a_version_1_document_with_what_version_2_added_is_refused() -> None:
    doc = json.loads(v2_value().to_json())
    doc["version"] = 1
    with pytest.raises(IkeStateError, match=r"children\[0\]\.local_ts: not in format version 1"):
        IkeSaState.from_json(json.dumps(doc))
    doc["children"] = []
    with pytest.raises(IkeStateError, match=r"\$\.ikev2: not in format version 1"):
        IkeSaState.from_json(json.dumps(doc))
    doc = json.loads(v2_value().to_json())
    del doc["ikev2"]
    with pytest.raises(IkeStateError, match=r"\$\.ikev2: missing for an IKEv2 SA"):
        IkeSaState.from_json(json.dumps(doc))
    doc = document(ikev2=json.loads(v2_value().to_json())["ikev2"], version=2)
    with pytest.raises(IkeStateError, match=r"\$\.ikev2: set for an IKEv1 SA"):
        IkeSaState.from_json(json.dumps(doc))


def test_an_isakmp_sa_with_an_xauth_user_is_version_4_and_version_3_reads_without_it() -> None:
    base = value()
    assert base.ikev1 is not None
    v = dataclasses.replace(
        base,
        ikev1=dataclasses.replace(base.ikev1, xauth_user="carol"),
        virtual_ips=(ipaddress.ip_address("10.3.0.1"),),
    )
    text = v.to_json()
    doc = json.loads(text)
    assert doc["version"] == 4 and doc["ikev1"]["xauth_user"] == "carol"
    assert doc["virtual_ips"] == ["10.3.0.1"]
    assert IkeSaState.from_json(text) == v
    # What a larval of format version 3 wrote of the same ISAKMP SA: no XAuth user in it,
    # read as none; the virtual IPs, which version 3 has, as they are.
    del doc["ikev1"]["xauth_user"]
    doc["version"] = 3
    old = IkeSaState.from_json(json.dumps(doc))
    assert old.ikev1 is not None and old.ikev1.xauth_user == ""
    assert old.virtual_ips == v.virtual_ips
    doc["ikev1"]["xauth_user"] = "carol"
    with pytest.raises(IkeStateError, match=r"\$\.ikev1\.xauth_user: not in format version 3"):
        IkeSaState.from_json(json.dumps(doc))


def test_a_clients_dns_is_version_5_and_version_4_reads_without_it() -> None:
    v = v2_value(
        virtual_ips=(ipaddress.ip_address("10.3.0.1"),),
        dns=(ipaddress.ip_address("10.3.0.53"), ipaddress.ip_address("2001:db8::53")),
        dns_domains=("corp.example.org", "example.org"),
    )
    text = v.to_json()
    doc = json.loads(text)
    assert doc["version"] == 5
    assert doc["dns"] == ["10.3.0.53", "2001:db8::53"]
    assert doc["dns_domains"] == ["corp.example.org", "example.org"]
    assert IkeSaState.from_json(text) == v
    del doc["dns"], doc["dns_domains"]
    doc["version"] = 4
    old = IkeSaState.from_json(json.dumps(doc))
    assert (old.dns, old.dns_domains, old.virtual_ips) == ((), (), v.virtual_ips)
    doc["dns"] = ["10.3.0.53"]
    with pytest.raises(IkeStateError, match=r"\$\.dns: not in format version 4"):
        IkeSaState.from_json(json.dumps(doc))


def test_an_ikev2_part_out_of_range_is_refused_without_its_keys() -> None:
    doc = json.loads(v2_value().to_json())
    doc["ikev2"]["next_iv"] = 1 << 64
    with pytest.raises(IkeStateError, match=r"\$\.ikev2\.next_iv: \d+ is not a 64-bit number"):
        IkeSaState.from_json(json.dumps(doc))
    doc = json.loads(v2_value().to_json())
    doc["ikev2"]["sk_er"] += "0"
    with pytest.raises(IkeStateError) as info:
        IkeSaState.from_json(json.dumps(doc))
    assert str(info.value) == "IKE SA state: $.ikev2.sk_er: not hex"


def _nodes(node: Any, path: str) -> Iterator[tuple[str, Any, str | int]]:
    """Every member of every object and array under `node`: its path, its container, and
    its key or index there."""
    members = node.items() if isinstance(node, dict) else enumerate(node)
    for key, item in members:
        where = f"{path}.{key}" if isinstance(node, dict) else f"{path}[{key}]"
        yield where, node, key
        if isinstance(item, dict | list):
            yield from _nodes(item, where)


@pytest.mark.parametrize("make", [value, v2_value], ids=["ikev1", "ikev2"])
def test_every_member_missing_or_of_another_type_is_named_where_it_is(make: Any) -> None:
    """The reader is made from the fields' annotations: each member is read by its type,
    and an error anywhere names the place (``$.children[0].spi_in``)."""
    text = make().to_json()
    paths = [path for path, _, _ in _nodes(json.loads(text), "$")]
    assert len(paths) > 150 and "$.transport.requests[0].message_id" in paths
    for n in range(len(paths)):
        doc = json.loads(text)
        where, container, key = list(_nodes(doc, "$"))[n]
        container[key] = {}  # an object where none belongs, or an empty one
        with pytest.raises(IkeStateError) as info:
            IkeSaState.from_json(json.dumps(doc))
        assert re.match(rf"IKE SA state: {re.escape(where)}[:.]", str(info.value)), info.value
        if not isinstance(container, dict):
            continue
        del container[key]
        added = re.fullmatch(r"\$\.children\[(\d)\]\.(local_ts|remote_ts)", where)
        if added:  # since version 2, and written only when not (): missing, it is ()
            n_child, name = int(added[1]), added[2]
            children = list(make().children)
            children[n_child] = dataclasses.replace(children[n_child], **{name: ()})
            assert IkeSaState.from_json(json.dumps(doc)) == make(children=tuple(children))
            continue
        with pytest.raises(IkeStateError, match=re.escape(f"{where}: missing")):
            IkeSaState.from_json(json.dumps(doc))


def test_a_value_differs_when_a_key_does() -> None:
    v1 = value().ikev1
    assert v1 is not None
    other = dataclasses.replace(v1, skeyid_a=Secret(SKEYID_A[:-1] + b"\0"))
    assert value(ikev1=other) != value()
    assert IkeSaState.from_json(value(ikev1=other).to_json()) != value()


def test_shifted_moves_every_time_and_nothing_else() -> None:
    moved = value().shifted(-1000.0)
    assert moved.established_at == value().established_at - 1000.0
    assert moved.rekey_at == 1_764_009_000.0 and moved.expires_at is None
    assert moved.ikev1 is not None and moved.ikev1.last_heard == 1_763_999_070.5
    (request,) = moved.transport.requests
    assert (request.sent_at, request.due) == (1_763_999_100.0, 1_763_999_104.0)
    assert moved.shifted(1000.0) == value()
    moved = v2_value().shifted(-1000.0)
    assert moved.ikev2 is not None and moved.ikev2.deadline == 1_763_999_130.0
    assert moved.shifted(1000.0) == v2_value()


# -- secrets ---------------------------------------------------------------------------------


def test_repr_shows_no_key_bytes() -> None:
    shown = repr(value())
    for key in (SKEYID_D, SKEYID_A, SKEYID_E, ENC_KEY):
        assert key.hex() not in shown and repr(key) not in shown
    assert "Secret(32B)" in shown and "Secret(16B)" in shown
    assert repr(Secret(b"\x01" * 8)) == "Secret(8B)"
    assert Secret(b"ab") == Secret(b"ab") and Secret(b"ab") != Secret(b"ac")
    shown = repr(v2_value()) + str(v2_value())
    for key in (SK_D, SK_EI, SK_ER, SK_AR):
        assert key.hex() not in shown and repr(key) not in shown
    assert "sk_ei=Secret(16B)" in shown


# -- documents refused -----------------------------------------------------------------------

REFUSED = [
    ("not json {", "not a JSON document"),
    ("[1, 2]", r"\$: expected an object"),
    (json.dumps(document(format="strongswan-ha")), r"\$.format is 'strongswan-ha'"),
    (json.dumps(document(version=6)), "format version 6 is newer than this larval reads \\(5\\)"),
    (json.dumps(document(version=0)), r"\$.version 0 is not a format version"),
    (json.dumps(document(version="1")), r"\$.version: expected int, got str"),
    (json.dumps(document(ike_version=3)), r"\$.ike_version 3 is not an IKE version"),
    (json.dumps(document(ikev1=None)), r"\$.ikev1: missing for an IKEv1 SA"),
    (json.dumps(document(ike_version=2)), r"\$.ikev1: set for an IKEv2 SA"),
    (json.dumps(document(spi_i="xyz")), r"\$.spi_i: not hex"),
    (json.dumps(document(initiator=1)), r"\$.initiator: expected bool, got int"),
    (json.dumps(document(local_port=70000)), r"\$.local_port: 70000 is not a port"),
]


@pytest.mark.parametrize(("text", "error"), REFUSED)
def test_a_malformed_foreign_or_newer_document_is_refused(text: str, error: str) -> None:
    with pytest.raises(IkeStateError, match=error):
        IkeSaState.from_json(text)


def test_an_error_deep_in_the_document_names_where() -> None:
    doc = document()
    del doc["children"][1]["spi_out"]
    with pytest.raises(IkeStateError, match=r"\$\.children\[1\]\.spi_out: missing"):
        IkeSaState.from_json(json.dumps(doc))
    doc = document()
    doc["children"][0]["config"]["local_ts"][0] = "198.51.100.0/33"
    with pytest.raises(IkeStateError, match=r"\$\.children\[0\]\.config\.local_ts\[0\]: not a"):
        IkeSaState.from_json(json.dumps(doc))
    doc = document()
    doc["transport"]["requests"][0]["message_id"] = -1
    with pytest.raises(IkeStateError, match=r"requests\[0\]\.message_id: -1 is not a 32-bit"):
        IkeSaState.from_json(json.dumps(doc))
    doc = document()
    doc["transport"]["remote"] = ["gateway", 500]
    with pytest.raises(IkeStateError, match=r"\$\.transport\.remote\[0\]: not an IP address"):
        IkeSaState.from_json(json.dumps(doc))
    doc = document()
    doc["suite"][0] = [1, 12]
    with pytest.raises(IkeStateError, match=r"\$\.suite\[0\]: expected \[type, id, key_bits\]"):
        IkeSaState.from_json(json.dumps(doc))


def test_no_key_bytes_in_an_error() -> None:
    doc = document()
    doc["ikev1"]["skeyid_a"] = SKEYID_A.hex() + "z"
    with pytest.raises(IkeStateError) as info:
        IkeSaState.from_json(json.dumps(doc))
    assert "$.ikev1.skeyid_a: not hex" in str(info.value)
    assert SKEYID_A.hex() not in str(info.value)


@given(
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.binary(min_size=1, max_size=64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
def test_any_transport_part_round_trips(
    mid: int, key: int, datagram: bytes, when: float, text: str
) -> None:
    transport = TransportState(
        ("2001:db8::1", 500),
        mid,
        key,
        (PendingRequest(mid, (datagram,), when, when, text, 2),),
        (CachedReply(key, (datagram,), text), CachedReply(datagram, (), "")),
    )
    v = value(transport=transport)
    assert IkeSaState.from_json(v.to_json()) == v


@given(
    st.binary(min_size=0, max_size=64),
    st.one_of(st.none(), st.integers(0, (1 << 64) - 1)),
    st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
    st.one_of(st.none(), st.integers(0, 0xFFFFFFFF)),
    st.booleans(),
)
def test_any_ikev2_part_round_trips(
    key: bytes, next_iv: int | None, deadline: float | None, check: int | None, agreed: bool
) -> None:
    assert v2_value().ikev2 is not None
    part = dataclasses.replace(v2_value().ikev2, sk_d=Secret(key), sk_ar=Secret(key),
                               next_iv=next_iv, deadline=deadline, liveness_check=check,
                               fragmentation_agreed=agreed)  # fmt: skip
    v = v2_value(ikev2=part)
    assert IkeSaState.from_json(v.to_json()) == v


# -- the transport's part ----------------------------------------------------------------------


class Raw:
    def frame(self, message: bytes) -> tuple[bytes, ...]:
        return (message,)

    def unframe(self, data: bytes) -> bytes | None:
        return data


SCHEDULE = Retransmission(timeout=4.0, base=1.8, tries=5)


def test_ikev2_transport_restored_counts_on_resends_and_replays() -> None:
    old: IkeTransport[bytes] = IkeTransport(WindowedIds(), Raw(), PEER, SCHEDULE)
    for mid in range(3):  # requests 0..2 answered; the peer's 0..4 answered
        old.send_request(old.new_message_id(), (b"req",), 0.0)
        old.answered(mid)
    for mid in range(5):
        old.reply(mid, (b"answer %d" % mid,), text="INFORMATIONAL")
    old.send_request(3, (b"request 3",), 10.0, "CREATE_CHILD_SA")
    old.handle_timer(14.0)  # resent once: next due at 14 + 7.2
    old.datagrams_to_send(14.0)

    new: IkeTransport[bytes] = IkeTransport(WindowedIds(), Raw(), ("192.0.2.2", 500), SCHEDULE)
    new.restore(IkeSaState.from_json(value(transport=old.snapshot()).to_json()).transport)
    assert new.remote == PEER
    assert new.snapshot() == old.snapshot()
    assert not new.window_open() and list(new.outstanding()) == [3]
    assert new.get_timer() == pytest.approx(14.0 + 4.0 * 1.8)
    new.handle_timer(21.2)
    assert new.datagrams_to_send(21.2) == [(b"request 3", PEER)]
    # The peer's request 4 again: the reply kept before the snapshot goes to the sender.
    assert new.receive(b"", ("192.0.2.9", 4500), 4, False) is Verdict.REPLAYED
    assert new.datagrams_to_send(21.2) == [(b"answer 4", ("192.0.2.9", 4500))]
    assert new.receive(b"", PEER, 5, False) is Verdict.NEW  # the peer's next
    assert new.receive(b"", PEER, 3, False) is Verdict.DROPPED
    new.answered(3)
    assert new.new_message_id() == 4


def test_ikev1_transport_restored_knows_requests_by_their_bytes() -> None:
    old: IkeTransport[bytes] = IkeTransport(RandomIds(bytes), Raw(), PEER, SCHEDULE)
    mark = old.mark()
    old.send((b"QM2",))
    old.remember(b"QM1", mark)
    new: IkeTransport[bytes] = IkeTransport(RandomIds(bytes), Raw(), PEER, SCHEDULE)
    new.restore(old.snapshot())
    assert new.receive(b"QM1", PEER) is Verdict.REPLAYED
    assert new.datagrams_to_send(0.0) == [(b"QM2", PEER)]
    assert new.receive(b"QM1 again, changed", PEER) is Verdict.NEW


def test_a_request_made_anew_needs_its_maker_back() -> None:
    old: IkeTransport[bytes] = IkeTransport(RandomIds(bytes), Raw(), PEER, SCHEDULE)
    old.send_request(7, (b"R-U-THERE 1",), 0.0, "R-U-THERE", renew=lambda: (8, (b"R-U-THERE 2",)))
    new: IkeTransport[bytes] = IkeTransport(RandomIds(bytes), Raw(), PEER, SCHEDULE)
    with pytest.raises(IkeStateError, match=r"request 0x7 \(R-U-THERE\) is made anew"):
        new.restore(old.snapshot())
    new.restore(old.snapshot(), {7: lambda: (8, (b"R-U-THERE 2",))})
    new.handle_timer(4.0)
    assert new.datagrams_to_send(4.0) == [(b"R-U-THERE 2", PEER)]
    assert list(new.outstanding()) == [8]


def test_the_writer_writes_each_type_as_it_did_once_it_has_looked_it_up() -> None:
    """How a type is written is looked up once per process; the second value of a type
    is written as the first was, and a type it cannot write is refused every time."""
    import enum

    from larval.ike.state import _Writer

    class Colour(enum.IntEnum):
        RED = 4

    for _ in range(2):
        assert _Writer().write((Colour.RED, b"\x01", ipaddress.ip_address("192.0.2.1"))) == [
            4,
            "01",
            "192.0.2.1",
        ]
        with pytest.raises(IkeStateError, match="cannot write a set"):
            _Writer().write({1})
