"""A child's ``replay_window`` and byte limits, as written in the daemon's configuration,
reach the stack in the UPDATE and ADD of every CHILD_SA: the one an ACQUIRE asks for, the
one ``start_action = "start"`` brings up, the responder's, and their renewals. Read from
the PF_KEY bytes themselves: the SA extension's ``sadb_sa_replay`` (RFC 2367 §2.3.1) and
the LIFETIME_SOFT/HARD extensions' ``sadb_lifetime_bytes`` (§2.3.3)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest

from larval.keymgr.manager import KeyManager
from larval.pfkey import SadbMsgType
from tests.keymgr import test_manager
from tests.keymgr.test_manager import Host, advance, carry, udp_packet

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

_SADB_EXT_SA, _LIFETIME_HARD, _LIFETIME_SOFT = 1, 3, 4


def extensions(data: bytes) -> dict[int, bytes]:
    """A PF_KEY message's extensions by type, each whole (RFC 2367 §2.2: lengths in
    8-byte units, the base header first)."""
    out: dict[int, bytes] = {}
    offset = 16
    while offset < len(data):
        length, ext_type = struct.unpack_from("=HH", data, offset)
        out[ext_type] = data[offset : offset + length * 8]
        offset += length * 8
    return out


def sa_replay(data: bytes) -> int:
    """``sadb_sa_replay``: the byte after the 32-bit SPI of the SA extension."""
    return extensions(data)[_SADB_EXT_SA][8]


def lifetime_bytes(data: bytes, ext_type: int) -> int:
    """``sadb_lifetime_bytes`` of a LIFETIME extension (0: the extension is not there)."""
    ext = extensions(data).get(ext_type)
    return struct.unpack_from("=Q", ext, 8)[0] if ext else 0


def keyed(host: Host) -> list[bytes]:
    """Every UPDATE and ADD `host`'s key manager sends its stack, as bytes, from now on."""
    seen: list[bytes] = []
    port = host.node.pfkey

    def watching(request: bytes) -> list[bytes]:
        if request[1] in (SadbMsgType.UPDATE, SadbMsgType.ADD):
            seen.append(request)
        return port(request)

    host.node.keymgr = KeyManager(list(host.keymgr.connections.values()), watching)
    return seen


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Make `Host` write `child` into its child ``net``."""

    def write(**child: object) -> None:
        original = test_manager.config

        def config(*args: Any, **kwargs: Any) -> dict[str, Any]:
            data = original(*args, **kwargs)
            data["connections"]["s2s"]["children"]["net"].update(child)
            return data

        monkeypatch.setattr(test_manager, "config", config)

    return write


@pytest.mark.parametrize("version", [2, 1])
@pytest.mark.parametrize("action", ["start", "trap"])
def test_replay_window_and_byte_limits_reach_every_sa(
    written: Callable[..., None], action: str, version: int
) -> None:
    written(replay_window=64, rekey_bytes=1_000_000, life_bytes=2_000_000)
    a, b = Host("a", "b", action, version=version), Host("b", "a", "none", version=version)
    sent_a, sent_b = keyed(a), keyed(b)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    if action == "trap":
        a.path.outbound(udp_packet("198.51.100.7", "203.0.113.9"), 0.0)
    carry(a, b, 0.0)
    advance(a, b, 0.0, 2.0)
    assert a.keymgr.status()["child_sas"] and b.keymgr.status()["child_sas"]
    for sent in (sent_a, sent_b):
        assert {m[1] for m in sent} == {SadbMsgType.UPDATE, SadbMsgType.ADD}
        assert [sa_replay(m) for m in sent] == [64] * len(sent)
        # The soft limit is drawn a little below rekey_bytes only for time; bytes as written.
        assert {lifetime_bytes(m, _LIFETIME_SOFT) for m in sent} == {1_000_000}
        assert {lifetime_bytes(m, _LIFETIME_HARD) for m in sent} == {2_000_000}


def test_the_default_replay_window_is_32(written: Callable[..., None]) -> None:
    written()
    a, b = Host("a", "b", "start"), Host("b", "a", "none")
    sent_a, sent_b = keyed(a), keyed(b)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    carry(a, b, 0.0)
    assert sent_a and sent_b
    assert {sa_replay(m) for m in sent_a + sent_b} == {32}
    assert {lifetime_bytes(m, _LIFETIME_HARD) for m in sent_a + sent_b} == {0}


def test_a_renewed_child_sa_keeps_the_replay_window(written: Callable[..., None]) -> None:
    """The CHILD_SA's renewal (RFC 7296 §1.3.3) is installed with the window it had."""
    written(replay_window=128, rekey_time="10m")
    a, b = Host("a", "b", "start"), Host("b", "a", "none")
    sent_a, sent_b = keyed(a), keyed(b)
    a.keymgr.start(0.0)
    b.keymgr.start(0.0)
    carry(a, b, 0.0)
    first = len(sent_a) + len(sent_b)
    (old,) = [c["spi_in"] for c in a.keymgr.status()["child_sas"]]
    sa = a.stack.sadb.lookup_esp(int(old, 16), a.addr.packed)
    assert sa is not None and sa.soft is not None
    now = float(sa.soft.addtime + 1)  # past the soft lifetime, before the hard one
    a.stack.age(now)
    carry(a, b, now)
    assert len(sent_a) + len(sent_b) == first + 4  # renewed: an UPDATE and an ADD each
    assert old not in [c["spi_in"] for c in a.keymgr.status()["child_sas"]]
    assert {sa_replay(m) for m in sent_a + sent_b} == {128}
