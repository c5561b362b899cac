"""An established IKE SA as a value: `IkeSaState`, written out and read back as JSON.

What defines an IKE SA and its CHILD_SAs once it is up — SPIs, role, identities, the
negotiated suite, the keys its later exchanges need, the transport's message IDs both
ways with its cached replies and unanswered requests, the peer's address and ports, NAT
state, deadlines, and each CHILD_SA's SPIs, selectors and proposals — is one frozen
value. A session makes it with `snapshot()`; `restore()` makes a session from it that
continues the exchanges of the old one (after a restart, or on another node).

Theory of operation
-------------------
* The value has a part both versions share (`IkeSaState`), the transport's part
  (`TransportState`, made by `IkeTransport.snapshot`), one `ChildSaState` per CHILD_SA,
  and a part of its own for the version (`Ikev1State`). Only the keys a later exchange
  uses are in it: IKEv1's SKEYID_d, SKEYID_a, SKEYID_e and the cipher key cut from it,
  with the Phase 1 CBC state; never SKEYID, the pre-shared key (the configuration's) or
  a DH secret.
* Keys are `Secret`s, whose repr gives their length only, so a value can be logged.
  The ESP keys of the CHILD_SAs are the stack's (SADB), not in this value.
* Times are absolute, in the clock the session is driven with (the daemon's is
  `time.time()`), so that a value read back later, or elsewhere, means the same
  deadlines; `shifted(delta)` moves every one of them for a store read on another clock.
* `to_json()` writes a stable document: keys sorted, bytes as lowercase hex, a
  `format` name and a format `version`. `from_json()` refuses, with `IkeStateError`
  naming what and where (``$.children[0].spi_in``), a document that is not JSON, not
  this format, of a newer version than this larval reads, or malformed anywhere.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

from larval.crypto.ike_transforms import Transform
from larval.ike.config import ChildConfig, IkeConfig, IPNetwork, Suite
from larval.ike.errors import IkeError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CachedReply",
    "ChildSaState",
    "IkeSaState",
    "IkeStateError",
    "Ikev1State",
    "PendingRequest",
    "Secret",
    "TransportState",
]

#: The `format` of the JSON document, and the newest `version` of it this larval reads.
FORMAT = "larval-ike-sa"
FORMAT_VERSION = 1

Address = tuple[str, int]
T = TypeVar("T")


class IkeStateError(IkeError):
    """An IKE SA value that cannot be written, read or restored: the message says what,
    and for a document, where (a JSON path)."""


class Secret:
    """Key bytes that never show: the repr gives their length, and equality compares in
    constant time."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = bytes(value)

    @property
    def value(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({len(self._value)}B)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash((Secret, len(self._value)))


@dataclass(frozen=True, slots=True)
class CachedReply:
    """What went in answer to a request, sent again if the request comes again: `key` is
    the request's Message ID (IKEv2) or the digest of its bytes (IKEv1)."""

    key: int | bytes
    datagrams: tuple[bytes, ...]
    text: str = ""


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A request that awaits its answer, as the transport resends it. `renews`: each
    retransmission is made anew (IKEv1's R-U-THERE); the session gives the maker back."""

    message_id: int
    datagrams: tuple[bytes, ...]
    sent_at: float
    due: float
    text: str = ""
    retransmits: int = 0
    renews: bool = False


@dataclass(frozen=True, slots=True)
class TransportState:
    """The transport of an IKE SA: where the peer is, the Message ID of our next request
    and of the peer's next (IKEv2; 0 in IKEv1, whose IDs are random), the requests that
    await answers and the replies kept for retransmitted requests, oldest first."""

    remote: Address
    next_message_id: int = 0
    expected_message_id: int = 0
    requests: tuple[PendingRequest, ...] = ()
    replies: tuple[CachedReply, ...] = ()

    def shifted(self, delta: float) -> TransportState:
        requests = tuple(
            replace(r, sent_at=r.sent_at + delta, due=r.due + delta) for r in self.requests
        )
        return replace(self, requests=requests)


@dataclass(frozen=True, slots=True)
class ChildSaState:
    """One CHILD_SA: its SPIs, the suite agreed, and what it was made for (`config`, with
    the selectors and proposals, and without the key manager's `reference`). `renewed`:
    a newer CHILD_SA replaces it (IKEv1's Quick Mode for the same child)."""

    spi_in: int
    spi_out: int
    suite: Suite
    config: ChildConfig
    renewed: bool = False


@dataclass(frozen=True, slots=True)
class Ikev1State:
    """What an IKEv1 ISAKMP SA needs beyond the shared part (RFC 2409): the Phase 1
    transform agreed, the keys of Quick Mode and Informational exchanges, the last Phase 1
    CBC block their IVs start from (Appendix B), and what each end announced."""

    aggressive: bool
    ike_lifetime: int  # the LIFE_DURATION this end offers (seconds)
    encryption: int  # the Phase 1 transform: ENCRYPTION_ALGORITHM, KEY_LENGTH, ...
    key_bits: int | None
    hash: int
    group: int
    lifetime: int  # the LIFE_DURATION agreed (seconds)
    skeyid_d: Secret  # KEYMAT (§5.5)
    skeyid_a: Secret  # HASH(1..3), Informational HASH (§5.5, §5.7)
    skeyid_e: Secret
    enc_key: Secret  # the cipher key cut from SKEYID_e (Appendix B)
    phase1_last_block: bytes  # ciphertext, on the wire already: not a secret
    fragmentation: bool
    peer_fragmentation: bool
    fragment_size: int
    fragment_id: int
    peer_dpd: bool
    peer_nat_t: bool
    peer_initial_contact: bool
    dpd_seq: int  # the last R-U-THERE sequence number sent (RFC 3706 §5.5)
    dpd_message_id: int | None  # the R-U-THERE awaiting its ACK
    last_heard: float


@dataclass(frozen=True, slots=True)
class IkeSaState:
    """An established IKE SA of either version and its CHILD_SAs (module docstring)."""

    ike_version: int
    name: str  # the connection's
    initiator: bool
    spi_i: bytes
    spi_r: bytes
    local_id: tuple[int, bytes]
    remote_id: tuple[int, bytes] | None
    suite: Suite  # in IKEv2 numbering
    local_port: int
    natted: bool
    established_at: float
    rekey_at: float | None
    expires_at: float | None
    transport: TransportState
    children: tuple[ChildSaState, ...] = ()
    ikev1: Ikev1State | None = field(default=None)

    def shifted(self, delta: float) -> IkeSaState:
        """The same IKE SA with every time moved by `delta` seconds: read on a clock that
        runs `delta` ahead of the one it was written with."""

        def move(t: float | None) -> float | None:
            return None if t is None else t + delta

        v1 = self.ikev1
        if v1 is not None:
            v1 = replace(v1, last_heard=v1.last_heard + delta)
        return replace(
            self,
            established_at=self.established_at + delta,
            rekey_at=move(self.rekey_at),
            expires_at=move(self.expires_at),
            transport=self.transport.shifted(delta),
            ikev1=v1,
        )

    def check_config(self, config: IkeConfig) -> None:
        """Raise `IkeStateError` unless `config` is the connection this IKE SA is of: the
        same name, identities and peer address (a NAT may have moved the port only)."""

        def ident(value: tuple[Any, bytes] | None) -> tuple[int, bytes] | None:
            return None if value is None else (int(value[0]), value[1])

        differs = [
            what
            for what, ours, theirs in (
                ("name", self.name, config.name),
                ("local identity", self.local_id, ident(config.local_id)),
                ("peer address", self.transport.remote[0], str(config.remote_addr)),
            )
            if ours != theirs
        ]
        if config.remote_id is not None and self.remote_id != ident(config.remote_id):
            differs.append("peer identity")
        if differs:
            raise IkeStateError(
                f"IKE SA state of {self.name!r} does not fit connection {config.name!r}: "
                f"its {', '.join(differs)} differ"
            )

    def to_json(self) -> str:
        """The stable, versioned document (module docstring). It holds the keys in hex:
        a store encrypts it, and it never goes to a log."""
        doc = {"format": FORMAT, "version": FORMAT_VERSION, **_write(self)}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> IkeSaState:
        """The value `to_json` wrote; raises `IkeStateError` (what, and where) otherwise."""
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise IkeStateError(f"IKE SA state: not a JSON document: {exc}") from None
        top = _Reader(doc, "$")
        fmt = top.field("format", str)
        if fmt != FORMAT:
            raise IkeStateError(f"IKE SA state: $.format is {fmt!r}, not {FORMAT!r}")
        version = top.field("version", int)
        if version > FORMAT_VERSION:
            raise IkeStateError(
                f"IKE SA state: format version {version} is newer than this larval reads "
                f"({FORMAT_VERSION})"
            )
        if version < 1:
            raise IkeStateError(f"IKE SA state: $.version {version} is not a format version")
        return _read_ike_sa(top)


# -- writing ---------------------------------------------------------------------------------

#: A ChildConfig's `reference` is the key manager's own, of this process only.
_NOT_WRITTEN = frozenset({"reference"})


def _write(value: Any) -> Any:
    """A value as JSON data: dataclasses as objects of their fields, bytes as hex."""
    if isinstance(value, Secret):
        return value.value.hex()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Transform):
        return [value.type, value.id, value.key_bits]
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        names = [f.name for f in fields(value) if f.name not in _NOT_WRITTEN]
        return {name: _write(getattr(value, name)) for name in names}
    if isinstance(value, tuple | list):
        return [_write(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise IkeStateError(f"IKE SA state: cannot write a {type(value).__name__}")


# -- reading ---------------------------------------------------------------------------------


class _Reader:
    """A JSON object being read, and where it is in the document, for the errors."""

    def __init__(self, obj: object, path: str) -> None:
        if not isinstance(obj, dict):
            raise IkeStateError(f"IKE SA state: {path}: expected an object")
        self.obj: dict[str, object] = obj
        self.path = path

    def field(self, key: str, kind: Callable[[object, str], T] | type[T]) -> T:
        path = f"{self.path}.{key}"
        if key not in self.obj:
            raise IkeStateError(f"IKE SA state: {path}: missing")
        return _as(self.obj[key], path, kind)

    def optional(self, key: str, kind: Callable[[object, str], T] | type[T]) -> T | None:
        if self.obj.get(key) is None:
            if key not in self.obj:
                raise IkeStateError(f"IKE SA state: {self.path}.{key}: missing")
            return None
        return self.field(key, kind)

    def items(self, key: str, kind: Callable[[object, str], T] | type[T]) -> tuple[T, ...]:
        path = f"{self.path}.{key}"
        items = self.field(key, list)
        return tuple(_as(item, f"{path}[{n}]", kind) for n, item in enumerate(items))

    def object(self, key: str) -> _Reader:
        return _Reader(self.field(key, dict), f"{self.path}.{key}")


def _as(value: object, path: str, kind: Callable[[object, str], T] | type[T]) -> T:
    if isinstance(kind, type):
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise IkeStateError(
                f"IKE SA state: {path}: expected {kind.__name__}, got {type(value).__name__}"
            )
        return value  # type: ignore[return-value]
    return kind(value, path)


def _hex(value: object, path: str) -> bytes:
    try:
        return bytes.fromhex(_as(value, path, str))
    except ValueError:
        raise IkeStateError(f"IKE SA state: {path}: not hex") from None


def _secret(value: object, path: str) -> Secret:
    return Secret(_hex(value, path))


def _u32(value: object, path: str) -> int:
    number = _as(value, path, int)
    if not 0 <= number <= 0xFFFFFFFF:
        raise IkeStateError(f"IKE SA state: {path}: {number} is not a 32-bit number")
    return number


def _port(value: object, path: str) -> int:
    number = _as(value, path, int)
    if not 0 < number <= 0xFFFF:
        raise IkeStateError(f"IKE SA state: {path}: {number} is not a port")
    return number


def _transform(value: object, path: str) -> Transform:
    items = _as(value, path, list)
    if len(items) != 3:
        raise IkeStateError(f"IKE SA state: {path}: expected [type, id, key_bits]")
    bits = None if items[2] is None else _as(items[2], f"{path}[2]", int)
    return Transform(_as(items[0], f"{path}[0]", int), _as(items[1], f"{path}[1]", int), bits)


def _suite(value: object, path: str) -> Suite:
    items = _as(value, path, list)
    return tuple(_transform(item, f"{path}[{n}]") for n, item in enumerate(items))


def _network(value: object, path: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(_as(value, path, str))
    except ValueError:
        raise IkeStateError(f"IKE SA state: {path}: not a network") from None


def _address(value: object, path: str) -> Address:
    items = _as(value, path, list)
    if len(items) != 2:
        raise IkeStateError(f"IKE SA state: {path}: expected [address, port]")
    addr = _as(items[0], f"{path}[0]", str)
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        raise IkeStateError(f"IKE SA state: {path}[0]: not an IP address") from None
    return addr, _port(items[1], f"{path}[1]")


def _identity(value: object, path: str) -> tuple[int, bytes]:
    items = _as(value, path, list)
    if len(items) != 2:
        raise IkeStateError(f"IKE SA state: {path}: expected [type, data]")
    return _as(items[0], f"{path}[0]", int), _hex(items[1], f"{path}[1]")


def _datagrams(value: object, path: str) -> tuple[bytes, ...]:
    items = _as(value, path, list)
    return tuple(_hex(item, f"{path}[{n}]") for n, item in enumerate(items))


def _reply_key(value: object, path: str) -> int | bytes:
    # A Message ID (IKEv2) is a number; a digest of a request's bytes (IKEv1) is hex.
    return _u32(value, path) if isinstance(value, int) else _hex(value, path)


def _cached_reply(value: object, path: str) -> CachedReply:
    r = _Reader(value, path)
    return CachedReply(
        r.field("key", _reply_key), r.field("datagrams", _datagrams), r.field("text", str)
    )


def _pending_request(value: object, path: str) -> PendingRequest:
    r = _Reader(value, path)
    return PendingRequest(
        r.field("message_id", _u32),
        r.field("datagrams", _datagrams),
        r.field("sent_at", float),
        r.field("due", float),
        r.field("text", str),
        r.field("retransmits", int),
        r.field("renews", bool),
    )


def _transport(r: _Reader) -> TransportState:
    return TransportState(
        r.field("remote", _address),
        r.field("next_message_id", _u32),
        r.field("expected_message_id", _u32),
        r.items("requests", _pending_request),
        r.items("replies", _cached_reply),
    )


def _child_config(r: _Reader) -> ChildConfig:
    return ChildConfig(
        r.field("name", str),
        r.items("proposals", _suite),
        r.items("local_ts", _network),
        r.items("remote_ts", _network),
        r.field("mode", str),
        r.field("rekey_time", int),
        r.field("life_time", int),
        r.field("rekey_bytes", int),
        r.field("life_bytes", int),
        r.field("replay_window", int),
        r.field("inactivity", int),
    )


def _child(value: object, path: str) -> ChildSaState:
    r = _Reader(value, path)
    return ChildSaState(
        r.field("spi_in", _u32),
        r.field("spi_out", _u32),
        r.field("suite", _suite),
        _child_config(r.object("config")),
        r.field("renewed", bool),
    )


def _ikev1(r: _Reader) -> Ikev1State:
    return Ikev1State(
        aggressive=r.field("aggressive", bool),
        ike_lifetime=r.field("ike_lifetime", int),
        encryption=r.field("encryption", int),
        key_bits=r.optional("key_bits", int),
        hash=r.field("hash", int),
        group=r.field("group", int),
        lifetime=r.field("lifetime", int),
        skeyid_d=r.field("skeyid_d", _secret),
        skeyid_a=r.field("skeyid_a", _secret),
        skeyid_e=r.field("skeyid_e", _secret),
        enc_key=r.field("enc_key", _secret),
        phase1_last_block=r.field("phase1_last_block", _hex),
        fragmentation=r.field("fragmentation", bool),
        peer_fragmentation=r.field("peer_fragmentation", bool),
        fragment_size=r.field("fragment_size", int),
        fragment_id=r.field("fragment_id", int),
        peer_dpd=r.field("peer_dpd", bool),
        peer_nat_t=r.field("peer_nat_t", bool),
        peer_initial_contact=r.field("peer_initial_contact", bool),
        dpd_seq=r.field("dpd_seq", _u32),
        dpd_message_id=r.optional("dpd_message_id", _u32),
        last_heard=r.field("last_heard", float),
    )


def _read_ike_sa(r: _Reader) -> IkeSaState:
    version = r.field("ike_version", int)
    if version not in (1, 2):
        raise IkeStateError(f"IKE SA state: $.ike_version {version} is not an IKE version")
    ikev1 = None if r.obj.get("ikev1") is None else _ikev1(r.object("ikev1"))
    if version == 1 and ikev1 is None:
        raise IkeStateError("IKE SA state: $.ikev1: missing for an IKEv1 SA")
    if version != 1 and ikev1 is not None:
        raise IkeStateError(f"IKE SA state: $.ikev1: set for an IKEv{version} SA")
    return IkeSaState(
        ike_version=version,
        name=r.field("name", str),
        initiator=r.field("initiator", bool),
        spi_i=r.field("spi_i", _hex),
        spi_r=r.field("spi_r", _hex),
        local_id=r.field("local_id", _identity),
        remote_id=r.optional("remote_id", _identity),
        suite=r.field("suite", _suite),
        local_port=r.field("local_port", _port),
        natted=r.field("natted", bool),
        established_at=r.field("established_at", float),
        rekey_at=r.optional("rekey_at", float),
        expires_at=r.optional("expires_at", float),
        transport=_transport(r.object("transport")),
        children=r.items("children", _child),
        ikev1=ikev1,
    )
