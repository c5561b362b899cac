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
  and a part of its own for the version (`Ikev1State`, `Ikev2State`). Only the keys a
  later exchange uses are in it: IKEv1's SKEYID_d, SKEYID_a, SKEYID_e and the cipher key
  cut from it, with the Phase 1 CBC state; IKEv2's SK_d and the SK_e/SK_a of both ways.
  Never SKEYID or SKEYSEED, IKEv2's SK_pi/SK_pr (they served IKE_AUTH only), the
  pre-shared key (the configuration's) or a DH secret.
* Keys are `Secret`s, whose repr gives their length only, so a value can be logged.
  The ESP keys of the CHILD_SAs are the stack's (SADB), not in this value.
* Times are absolute, in the clock the session is driven with (the daemon's is
  `time.time()`), so that a value read back later, or elsewhere, means the same
  deadlines; `shifted(delta)` moves every one of them for a store read on another clock.
* `to_json()` writes a stable document: keys sorted, bytes as lowercase hex, a
  `format` name and a format `version`. `from_json()` refuses, with `IkeStateError`
  naming what and where (``$.children[0].spi_in``), a document that is not JSON, not
  this format, of a newer version than this larval reads, or malformed anywhere.
* Each type's fields are written once, in its dataclass: the writer and the reader walk
  `dataclasses.fields` and read each field by its annotation. A field whose JSON needs
  more than its type says (a 32-bit number, a port, an address) is annotated with its
  reader: ``spi_in: U32``.
* Versions: a field added after version 1 is marked `since` its version. It is written
  only when it is not its default, and a document's `version` is the oldest that holds
  what it carries: an IKEv1 SA with nothing of later versions is written as version 1,
  byte for byte as before there were IKEv2 values, and an IKEv2 SA as version 2, which
  a larval that reads only version 1 refuses; version 3 only where an IKE SA of either
  version has virtual IPs or how its ends authenticated (an ISAKMP SA's session records
  that too); version 4 only where an ISAKMP SA has an XAuth user. A field newer
  than its document's version is refused, and a document of an older version reads as
  it did (what a later version added takes its default).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import types
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields, is_dataclass, replace
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin, get_type_hints

from larval.crypto.ike_transforms import Transform
from larval.ike.auth_config import AuthInfo
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
    "Ikev2State",
    "PendingRequest",
    "Secret",
    "TransportState",
]

#: The `format` of the JSON document, and the newest `version` of it this larval reads.
FORMAT = "larval-ike-sa"
FORMAT_VERSION = 5

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


# -- reading one JSON value ------------------------------------------------------------------
# Each reader takes the JSON value and where it is (a JSON path), and returns what it holds
# or raises `IkeStateError` naming the path.


def _as(value: object, path: str, kind: type[T]) -> T:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise IkeStateError(
            f"IKE SA state: {path}: expected {kind.__name__}, got {type(value).__name__}"
        )
    return value  # type: ignore[return-value]


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


def _u64(value: object, path: str) -> int:
    number = _as(value, path, int)
    if not 0 <= number < 1 << 64:
        raise IkeStateError(f"IKE SA state: {path}: {number} is not a 64-bit number")
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


def _network(value: object, path: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(_as(value, path, str))
    except ValueError:
        raise IkeStateError(f"IKE SA state: {path}: not a network") from None


def _address(value: object, path: str) -> tuple[str, int]:
    items = _as(value, path, list)
    if len(items) != 2:
        raise IkeStateError(f"IKE SA state: {path}: expected [address, port]")
    addr = _as(items[0], f"{path}[0]", str)
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        raise IkeStateError(f"IKE SA state: {path}[0]: not an IP address") from None
    return addr, _port(items[1], f"{path}[1]")


def _ip(value: object, path: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(_as(value, path, str))
    except ValueError:
        raise IkeStateError(f"IKE SA state: {path}: not an IP address") from None


def _identity(value: object, path: str) -> tuple[int, bytes]:
    items = _as(value, path, list)
    if len(items) != 2:
        raise IkeStateError(f"IKE SA state: {path}: expected [type, data]")
    return _as(items[0], f"{path}[0]", int), _hex(items[1], f"{path}[1]")


def _reply_key(value: object, path: str) -> int | bytes:
    # A Message ID (IKEv2) is a number; a digest of a request's bytes (IKEv1) is hex.
    return _u32(value, path) if isinstance(value, int) else _hex(value, path)


# What a field holds where its type alone does not say how it is read.
U32 = Annotated[int, _u32]  # a Message ID, an ESP SPI, a DPD sequence number
U64 = Annotated[int, _u64]
Port = Annotated[int, _port]
Address = Annotated[tuple[str, int], _address]  # [address, port]
Identity = Annotated[tuple[int, bytes], _identity]  # [ID type, data]
IPAddr = Annotated[ipaddress.IPv4Address | ipaddress.IPv6Address, _ip]
ReplyKey = Annotated[int | bytes, _reply_key]


def _since(version: int) -> dict[str, int]:
    """The metadata of a field added in format `version`: it is written only when it is
    not its default, so that what an older larval wrote reads back and writes out the
    same (module docstring)."""
    return {"since": version}


# -- the value -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachedReply:
    """What went in answer to a request, sent again if the request comes again: `key` is
    the request's Message ID (IKEv2) or the digest of its bytes (IKEv1)."""

    key: ReplyKey
    datagrams: tuple[bytes, ...]
    text: str = ""


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A request that awaits its answer, as the transport resends it. `renews`: each
    retransmission is made anew (IKEv1's R-U-THERE); the session gives the maker back."""

    message_id: U32
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
    next_message_id: U32 = 0
    expected_message_id: U32 = 0
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
    a newer CHILD_SA replaces it (IKEv1's Quick Mode for the same child). `local_ts` and
    `remote_ts`: the selectors agreed where they may be narrower than the config's (IKEv2,
    RFC 7296 §2.9); () where they are the config's."""

    spi_in: U32
    spi_out: U32
    suite: Suite
    config: ChildConfig
    renewed: bool = False
    local_ts: tuple[IPNetwork, ...] = field(default=(), metadata=_since(2))
    remote_ts: tuple[IPNetwork, ...] = field(default=(), metadata=_since(2))


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
    dpd_seq: U32  # the last R-U-THERE sequence number sent (RFC 3706 §5.5)
    dpd_message_id: U32 | None  # the R-U-THERE awaiting its ACK
    last_heard: float
    #: The XAuth user the peer proved (gateway) or this end gave (client); "" without
    #: XAuth (draft-beaulieu-ike-xauth-02 §2.1).
    xauth_user: str = field(default="", metadata=_since(4))


@dataclass(frozen=True, slots=True)
class Ikev2State:
    """What an IKEv2 IKE SA needs beyond the shared part (RFC 7296): SK_d, from which
    CREATE_CHILD_SA takes each CHILD_SA's keys and a rekeyed IKE SA its SKEYSEED (§2.17,
    §2.18); the SK_e and SK_a of each way, which protect every message (§2.14; the PRF,
    cipher and integrity are the shared part's `suite`); the counter of this end's next
    AEAD IV, which must never repeat under its key (RFC 5282 §3.1); the fragmentation
    announced (RFC 7383 §2.3); when the next liveness check or rekey is due; and the
    liveness check awaiting its answer, the one request a value holds (§2.4)."""

    sk_d: Secret
    sk_ei: Secret  # initiator to responder; an AEAD's with its salt
    sk_ai: Secret  # b"" for an AEAD
    sk_er: Secret  # responder to initiator
    sk_ar: Secret
    next_iv: U64 | None  # None: CBC, whose IVs are random
    fragmentation: bool  # this end announces RFC 7383 fragmentation
    fragmentation_agreed: bool  # both ends did
    fragment_size: int
    deadline: float | None  # the next liveness check or IKE SA rekey, whichever is first
    liveness_check: U32 | None  # the Message ID of the empty INFORMATIONAL unanswered

    def shifted(self, delta: float) -> Ikev2State:
        return replace(self, deadline=None if self.deadline is None else self.deadline + delta)


@dataclass(frozen=True, slots=True)
class IkeSaState:
    """An established IKE SA of either version and its CHILD_SAs (module docstring)."""

    ike_version: int
    name: str  # the connection's
    initiator: bool
    spi_i: bytes
    spi_r: bytes
    local_id: Identity
    remote_id: Identity | None
    suite: Suite  # in IKEv2 numbering
    local_port: Port
    natted: bool
    established_at: float
    rekey_at: float | None
    expires_at: float | None
    transport: TransportState
    children: tuple[ChildSaState, ...] = ()
    ikev1: Ikev1State | None = None
    ikev2: Ikev2State | None = field(default=None, metadata=_since(2))
    #: The virtual addresses of this end (initiator) or of the peer (responder): IKEv2's
    #: configuration payloads, IKEv1's Mode Config.
    virtual_ips: tuple[IPAddr, ...] = field(default=(), metadata=_since(3))
    #: How each end authenticated, for status (an EAP or XAuth identity among it).
    auth_local: AuthInfo | None = field(default=None, metadata=_since(3))
    auth_remote: AuthInfo | None = field(default=None, metadata=_since(3))
    #: The DNS servers and domains a client was given with its virtual addresses, which
    #: it puts back in its resolver's file when restored.
    dns: tuple[IPAddr, ...] = field(default=(), metadata=_since(5))
    dns_domains: tuple[str, ...] = field(default=(), metadata=_since(5))

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
            ikev2=None if self.ikev2 is None else self.ikev2.shifted(delta),
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
        writer = _Writer()
        body = writer.write(self)
        doc = {"format": FORMAT, "version": writer.version, **body}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> IkeSaState:
        """The value `to_json` wrote; raises `IkeStateError` (what, and where) otherwise."""
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise IkeStateError(f"IKE SA state: not a JSON document: {exc}") from None
        if not isinstance(doc, dict):
            raise IkeStateError("IKE SA state: $: expected an object")
        fmt = _top(doc, "format", str)
        if fmt != FORMAT:
            raise IkeStateError(f"IKE SA state: $.format is {fmt!r}, not {FORMAT!r}")
        version = _top(doc, "version", int)
        if version > FORMAT_VERSION:
            raise IkeStateError(
                f"IKE SA state: format version {version} is newer than this larval reads "
                f"({FORMAT_VERSION})"
            )
        if version < 1:
            raise IkeStateError(f"IKE SA state: $.version {version} is not a format version")
        ike_version = _top(doc, "ike_version", int)
        if ike_version not in (1, 2):
            raise IkeStateError(f"IKE SA state: $.ike_version {ike_version} is not an IKE version")
        for part_of in (1, 2):  # the version's own part, and only it
            part = f"ikev{part_of}"
            if part_of == ike_version and doc.get(part) is None:
                raise IkeStateError(f"IKE SA state: $.{part}: missing for an IKEv{part_of} SA")
            if part_of != ike_version and doc.get(part) is not None:
                raise IkeStateError(f"IKE SA state: $.{part}: set for an IKEv{ike_version} SA")
        return _Reader(version).object(cls, doc, "$")


# -- the document, from the fields and their annotations -------------------------------------

#: A ChildConfig's `reference` is the key manager's own, of this process only.
_NOT_WRITTEN = frozenset({"reference"})


def _written(cls: type) -> tuple[Field[Any], ...]:
    return tuple(f for f in fields(cls) if f.name not in _NOT_WRITTEN)


def _since_of(f: Field[Any]) -> int:
    since: int = f.metadata.get("since", 1)
    return since


def _top(doc: dict[str, object], key: str, kind: type[T]) -> T:
    if key not in doc:
        raise IkeStateError(f"IKE SA state: $.{key}: missing")
    return _as(doc[key], f"$.{key}", kind)


#: How `_Writer` writes a value, by its exact type (`_how`): kept once looked up.
_PLAIN, _HEX_SECRET, _HEX, _TRANSFORM, _TEXT, _OBJECT, _LIST, _UNWRITABLE = range(8)
_HOW: dict[type, int] = {t: _PLAIN for t in (str, int, float, bool, type(None))}
#: What each dataclass writes: (field name, since, default) of its written fields.
_PLANS: dict[type, tuple[tuple[str, int, Any], ...]] = {}


def _how(cls: type) -> int:
    how = _HOW.get(cls)
    if how is None:
        how = _HOW[cls] = (
            _HEX_SECRET if issubclass(cls, Secret)
            else _HEX if issubclass(cls, bytes)
            else _TRANSFORM if issubclass(cls, Transform)
            else _TEXT if issubclass(cls, ipaddress.IPv4Network | ipaddress.IPv6Network
                                      | ipaddress.IPv4Address | ipaddress.IPv6Address)
            else _OBJECT if is_dataclass(cls)
            else _LIST if issubclass(cls, tuple | list)
            else _PLAIN if issubclass(cls, bool | int | float | str)
            else _UNWRITABLE
        )  # fmt: skip
    return how


def _plan(cls: type) -> tuple[tuple[str, int, Any], ...]:
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = tuple((f.name, _since_of(f), f.default) for f in _written(cls))
    return plan


class _Writer:
    """Values as JSON data: dataclasses as objects of their fields, bytes as hex. `version`
    ends as the oldest format version that holds what was written. A value is written
    before each datagram that changes it leaves (`larval.keymgr.persist`), so how each
    type is written, and each dataclass's fields, are looked up once per process."""

    def __init__(self) -> None:
        self.version = 1

    def write(self, value: Any) -> Any:
        how = _how(type(value))
        if how == _PLAIN:
            return value
        if how == _OBJECT:
            doc = {}
            for name, since, default in _plan(type(value)):
                item = getattr(value, name)
                if since > 1:
                    if item == default:
                        continue
                    self.version = max(self.version, since)
                doc[name] = self.write(item)
            return doc
        if how == _LIST:
            return [self.write(v) for v in value]
        if how == _HEX_SECRET:
            return value.value.hex()
        if how == _HEX:
            return value.hex()
        if how == _TRANSFORM:
            return [value.type, value.id, value.key_bits]
        if how == _TEXT:
            return str(value)
        raise IkeStateError(f"IKE SA state: cannot write a {type(value).__name__}")


class _Reader:
    """A document of format `version` read into values, each field by its annotation."""

    #: Types read by a reader of their own (a Transform is a dataclass, written as a list).
    _READERS: dict[object, Callable[[object, str], Any]] = {
        bytes: _hex,
        Secret: _secret,
        Transform: _transform,
        IPNetwork: _network,
    }

    def __init__(self, version: int) -> None:
        self.version = version

    def read(self, hint: Any, value: object, path: str) -> Any:
        origin, args = get_origin(hint), get_args(hint)
        if origin is Annotated:
            return hint.__metadata__[0](value, path)
        reader = self._READERS.get(hint)
        if reader is not None:
            return reader(value, path)
        if hint in (bool, int, float, str):
            return _as(value, path, hint)
        if origin in (Union, types.UnionType) and len(args) == 2 and type(None) in args:
            (kind,) = (a for a in args if a is not type(None))
            return None if value is None else self.read(kind, value, path)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = _as(value, path, list)
            return tuple(self.read(args[0], v, f"{path}[{n}]") for n, v in enumerate(items))
        if isinstance(hint, type) and is_dataclass(hint):
            return self.object(hint, value, path)
        raise IkeStateError(f"IKE SA state: {path}: no reader for {hint!r}")

    def object(self, cls: type[T], value: object, path: str) -> T:
        if not isinstance(value, dict):
            raise IkeStateError(f"IKE SA state: {path}: expected an object")
        hints = get_type_hints(cls, include_extras=True)
        values = {}
        for f in _written(cls):
            where, since = f"{path}.{f.name}", _since_of(f)
            if f.name not in value:
                if since > 1:
                    continue  # written only when it is not its default
                raise IkeStateError(f"IKE SA state: {where}: missing")
            if since > self.version:
                raise IkeStateError(f"IKE SA state: {where}: not in format version {self.version}")
            values[f.name] = self.read(hints[f.name], value[f.name], where)
        return cls(**values)
