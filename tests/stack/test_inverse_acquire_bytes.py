"""Inverse ACQUIREs from their bytes (`Stack.handle_pfkey_bytes`): an answer kept for a
question asked again is the full path's answer to it, while policies come and go."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from larval.keymgr.pfkey_side import inverse_acquire_bytes
from larval.pfkey import SadbMsgType, decode
from larval.sadb import Audience
from larval.spd import load_policy_text
from larval.stack import Stack

LOCAL, REMOTE = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")
#: Inner networks a question may name, inside and outside the policies below.
LOCAL_NETS = ["198.51.100.0/24", "198.51.100.0/25", "198.51.100.7/32", "10.9.0.0/16"]
REMOTE_NETS = ["203.0.113.0/24", "203.0.113.64/26", "203.0.113.9/32", "10.8.0.0/16"]
#: Policies that may be added: (name, local, remote, proto).
POLICIES = [
    ("wide", "198.51.100.0/24", "203.0.113.0/24", 0),
    ("narrow", "198.51.100.0/25", "203.0.113.64/26", 0),
    ("tcp", "198.51.100.0/24", "203.0.113.0/24", 6),
    ("host", "198.51.100.7/32", "203.0.113.9/32", 0),
]


def _full_path(stack: Stack, data: bytes) -> list[bytes]:
    return [r.message.encode() for r in stack.handle_pfkey(decode(data), 0.0)]


def _add(stack: Stack, name: str, local: str, remote: str, proto: int) -> None:
    """Both directions of a tunnel policy, as a configuration file gives them."""
    selector = f"[{proto}]" if proto else ""
    text = f"""
[policies.{name}]
local_ts = ["{local}{selector}"]
remote_ts = ["{remote}"]
local_addrs = ["{LOCAL}"]
remote_addrs = ["{REMOTE}"]
esp_proposals = ["aes128gcm16"]
"""
    stack.spd.add_all(load_policy_text(text, "test.toml"))


def _question(local: str, remote: str, seq: int, pid: int) -> bytes:
    return inverse_acquire_bytes(
        LOCAL, REMOTE, ipaddress.ip_network(local), ipaddress.ip_network(remote), seq=seq, pid=pid
    )


def test_a_question_asked_again_takes_its_own_sequence_number_and_pid() -> None:
    stack = Stack()
    _add(stack, *POLICIES[0])
    first = stack.handle_pfkey_bytes(_question(LOCAL_NETS[0], REMOTE_NETS[0], 1, 100), 0.0)
    again = stack.handle_pfkey_bytes(_question(LOCAL_NETS[0], REMOTE_NETS[0], 2, 200), 0.0)
    assert first is not None and again is not None
    assert [r.audience for r in again] == [Audience.SENDER]
    msg = decode(again[0].data)
    assert (msg.msg_type, msg.errno, msg.seq, msg.pid) == (SadbMsgType.X_INVERSE_ACQUIRE, 0, 2, 200)
    assert again[0].data == _full_path(stack, _question(LOCAL_NETS[0], REMOTE_NETS[0], 2, 200))[0]
    assert first[0].data[16:] == again[0].data[16:]


def test_an_spd_change_is_seen_by_the_next_question() -> None:
    stack = Stack()
    question = _question(LOCAL_NETS[0], REMOTE_NETS[0], 5, 9)
    refused = stack.handle_pfkey_bytes(question, 0.0)
    assert refused is not None and decode(refused[0].data).errno != 0  # no policy: ENOENT
    _add(stack, *POLICIES[0])
    found = stack.handle_pfkey_bytes(question, 0.0)
    assert found is not None and decode(found[0].data).errno == 0
    stack.spd.remove("wide")
    gone = stack.handle_pfkey_bytes(question, 0.0)
    assert gone is not None and gone[0].data == refused[0].data


def test_a_request_that_does_not_decode_goes_to_the_full_path() -> None:
    stack = Stack()
    data = bytearray(_question(LOCAL_NETS[0], REMOTE_NETS[0], 1, 1))
    data[17] = 0xFF  # the first extension's type: none such
    assert stack.handle_pfkey_bytes(bytes(data), 0.0) is None


_steps = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(POLICIES)),
        st.tuples(st.just("remove"), st.sampled_from([p[0] for p in POLICIES])),
        st.tuples(
            st.just("ask"),
            st.tuples(
                st.sampled_from(LOCAL_NETS),
                st.sampled_from(REMOTE_NETS),
                st.integers(0, 2**32 - 1),
                st.integers(0, 2**32 - 1),
            ),
        ),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(_steps)
def test_every_answer_is_the_full_paths(steps: list[tuple[str, object]]) -> None:
    stack = Stack()
    added: set[str] = set()
    for op, arg in steps:
        if op == "add":
            name = arg[0]  # type: ignore[index]
            if name not in added:
                _add(stack, *arg)  # type: ignore[misc]
                added.add(name)
        elif op == "remove":
            stack.spd.remove(arg)  # type: ignore[arg-type]
            added.discard(arg)  # type: ignore[arg-type]
        else:
            data = _question(*arg)  # type: ignore[misc]
            answers = stack.handle_pfkey_bytes(data, 0.0)
            assert answers is not None
            assert [r.data for r in answers] == _full_path(stack, data)
            assert all(r.audience is Audience.SENDER for r in answers)
