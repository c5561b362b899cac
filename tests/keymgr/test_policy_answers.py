"""The responder keeps what the stack's answers to its inverse ACQUIREs allowed, and
follows the stack's policy when it changes."""

from __future__ import annotations

from larval.pfkey import SadbMsgType, decode
from larval.spd import load_policy_text
from tests.keymgr.test_manager import Host, carry


def _policy(name: str, esp: str, life: str) -> str:
    return f"""
[policies.{name}]
local_ts = ["203.0.113.0/24"]
remote_ts = ["198.51.100.0/24"]
mode = "tunnel"
local_addrs = ["192.0.2.2"]
remote_addrs = ["192.0.2.1"]
esp_proposals = ["{esp}"]
rekey_time = "50m"
life_time = "{life}"
"""


def _inverse_acquires(host: Host) -> list[int]:
    """Count the inverse ACQUIREs the key manager sends to the stack."""
    asked: list[int] = []
    port = host.node.pfkey

    def spy(request: bytes) -> list[bytes]:
        if decode(request).msg_type == SadbMsgType.X_INVERSE_ACQUIRE:
            asked.append(1)
        return port(request)

    host.keymgr._pfkey = spy  # type: ignore[method-assign]
    return asked


def _hard_lifetimes(host: Host) -> list[int]:
    """The hard lifetime of each inbound SA the key manager installed, in order."""
    out = []
    for spi_in in host.keymgr.children:
        sa = host.stack.sadb.lookup_esp(spi_in, host.addr.packed)
        assert sa is not None and sa.hard is not None
        out.append(sa.hard.addtime)
    return out


def _setup(a: Host, b: Host, now: float) -> None:
    a.keymgr.initiate("s2s", "net", now)
    carry(a, b, now)


def test_the_responder_asks_the_stack_each_time_and_follows_a_changed_policy() -> None:
    a, b = Host("a", "b", "none"), Host("b", "a", "none")
    for policy in b.stack.spd.policies():
        b.stack.spd.remove(policy.name)
    b.stack.spd.add_all(load_policy_text(_policy("site", "aes128gcm16", "1h"), "b"))
    asked = _inverse_acquires(b)
    _setup(a, b, 1.0)
    _setup(a, b, 2.0)
    # Each CHILD_SA asked the stack (the answer's reading is what is kept), and both
    # carry the policy's hard lifetime.
    assert len(asked) == 2 and len(b.keymgr.children) == 2
    assert _hard_lifetimes(b) == [3600, 3600]
    # The policy changes: a longer lifetime; the next CHILD_SA has it.
    b.stack.spd.remove("site")
    b.stack.spd.add_all(load_policy_text(_policy("site", "aes128gcm16", "2h"), "b"))
    _setup(a, b, 3.0)
    assert len(b.keymgr.children) == 3
    assert _hard_lifetimes(b) == [3600, 3600, 7200]
    # Now it allows only a suite the initiator does not offer: no CHILD_SA.
    b.stack.spd.remove("site")
    b.stack.spd.add_all(load_policy_text(_policy("site", "aes256-sha512", "2h"), "b"))
    _setup(a, b, 4.0)
    assert len(b.keymgr.children) == 3
