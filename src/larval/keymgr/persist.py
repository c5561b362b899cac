"""What the key manager keeps in a `larval.store.StateStore`, and how it comes back.

Theory of operation
-------------------
* Records (kinds of `larval.store`):

  - ``IKE_SA``, key ``SPIi-hex/SPIr-hex``: a JSON document ``{"connection", "local",
    "leases", "state"}``: the connection's name, this end's address of the IKE SA, its
    peer's pool leases, and the session's `snapshot()` as `IkeSaState.to_json()`.
  - ``LEASE``, key ``pool/address``: ``[identity hex, is text, online]``, each lease of
    the pools, written when an IKE SA changed. An IKE SA's record lists the leases of its
    peer's virtual addresses too (``leases``): restored, it takes them again and gives
    them back when it goes; the other leases come back offline for their identities.
  - ``CHILD_SA``, key the inbound SPI in hex: a JSON document with what the key manager
    needs to install the CHILD_SA's SAs again: its names, SPIs, suite, addresses and
    selectors, the NAT-T port, when it was installed and when its soft and hard
    lifetimes run out (absolute times), and each direction's SA as the PF_KEY message
    that installed it (hex; keys, replay window, selectors and inner pairs are in it),
    and the IKE SA it was made on (``ike_sa``; the IKE SA's own record, which lists its
    CHILD_SAs, is what restoring goes by: a rekeyed IKE SA takes its CHILD_SAs along).
    An SA with a byte lifetime has the bytes it had carried (``bytes``, by direction),
    read from the stack's CURRENT lifetime (PF_KEY GET) every `BYTES_EVERY` seconds.

* Writing: the key manager marks an IKE SA each time one of its calls ran the session
  (`touch`), and a CHILD_SA as its SAs are installed or deleted. `flush` is called before
  datagrams leave (`KeyManager.datagrams_to_send`), so one batch a turn holds every
  change, and a message with a new Message ID leaves only once the IKE SA's value with
  that Message ID is durable (a request we send, and the reply we cache for the peer's).
  An IKE SA that went away is deleted with its record. `larval run` splits the flush
  (`take_batch`): the records and the datagrams of a pass of its loop are taken as one
  `Batch`, written on a writer thread, and the datagrams sent once it returned
  (`larval.daemon.group_commit`); a batch that failed is `put_back` under what changed
  since, so the next write holds it.
* A snapshot is possible only between exchanges (`IkeStateError`). While one of ours is
  under way (a CREATE_CHILD_SA, a rekey), the record keeps the value from before it,
  moved on to the session's Message IDs and AEAD IV counter (IKEv2's
  `sequence_marks`) before the request leaves: after a kill then, no Message ID and
  no IV is used twice; the exchange is lost, and our next request is the one after it.
  The record holds the inbound SPI of each CHILD_SA our CREATE_CHILD_SA under way makes
  (``children_under_way``, with the one it renews): restored, the IKE SA deletes the
  peer's half of it by that SPI, if the peer made it, and rekeys the old one again.
  A request of the peer's is no hazard: the reply we sent was written with the IKE SA
  before it left, and the peer's retransmission is answered from it.
* Restoring (`restore`, at start): each IKE SA of a connection still configured is
  restored; its CHILD_SAs' SAs are ADDed again with the stored keys, lifetimes set to
  what remains of them: time lifetimes as absolute times, byte lifetimes less the bytes
  the SA had carried at its last checkpoint (what it carried after that, at most
  `BYTES_EVERY` seconds of its traffic, is not counted: a byte-limited SA rekeys that
  much late at worst). An IKE SA past its expiry, or a CHILD_SA past its hard lifetime,
  is deleted with a DELETE to the peer; a CHILD_SA whose record is missing too (its keys
  are gone). Records that belong to nothing restored are deleted, the stack's
  sequence marks and replay checkpoints of SAs not ADDed again among them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from larval.crypto.ike_transforms import Transform
from larval.ike.sa import IkeSa, Phase
from larval.ike.state import IkeSaState, IkeStateError
from larval.keymgr.pfkey_side import natt_update
from larval.pfkey import (
    ExtType,
    PfkeyMessage,
    SadbAddress,
    SadbLifetime,
    SadbMsgType,
    SadbSa,
    decode,
)
from larval.pfkey.errors import PfkeyError
from larval.pfkey.extensions import Extension
from larval.pools import Lease, PoolError, Pools
from larval.stack.esp_state import EspStoredState, load_esp_state, record_key
from larval.store import (
    CHILD_SA,
    ESP_REPLAY,
    ESP_SEQ,
    IKE_SA,
    LEASE,
    RecordKey,
    StateStore,
    StoreError,
)

if TYPE_CHECKING:
    from larval.keymgr.manager import ChildRecord, KeyManager

log = logging.getLogger("larval.keymgr")

__all__ = ["Batch", "Persistence", "RestoreReport", "child_key", "ike_key", "take_batch"]


def ike_key(session: IkeSa) -> str:
    return f"{session.spi_i.hex()}/{session.spi_r.hex()}"


def child_key(spi_in: int) -> str:
    return f"{spi_in:08x}"


Identity = bytes | str

#: How often the bytes each byte-limited SA carried are read from the stack and kept.
BYTES_EVERY = 5.0


class Persistence:
    """The key manager's writer to its store (module docstring)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._dirty: dict[int, IkeSa] = {}  # by id(): the sessions a call ran
        self._ike_keys: dict[int, str] = {}  # id(session) -> its record's key, once written
        self._puts: dict[RecordKey, bytes] = {}
        self._deletes: set[RecordKey] = set()
        self._children: dict[int, dict[str, Any]] = {}  # inbound SPI -> its record
        self._children_changed: set[int] = set()  # written at the next flush, once each
        self.deferred = 0  # snapshots put off by an exchange under way (status, tests)
        #: The pool leases a restored IKE SA holds (by id()), given back when it goes.
        self.leases: dict[int, list[tuple[Identity, Lease]]] = {}
        self._lease_written: dict[str, bytes] = {}  # LEASE records as last written
        self._values: dict[int, IkeSaState] = {}  # by id(): each session's last value
        #: The SAs with a byte lifetime: inbound SPI -> direction -> (SPI, destination).
        self.byte_limited: dict[int, dict[str, tuple[int, ipaddress.IPv4Address |
                                                     ipaddress.IPv6Address]]] = {}  # fmt: skip
        self.bytes_due = 0.0  # when the stack's byte counts are read next

    def __repr__(self) -> str:
        return f"<Persistence {self.store!r}>"

    # -- what changed ----------------------------------------------------------------------

    def touch(self, session: IkeSa) -> None:
        self._dirty[id(session)] = session

    def child_installed(self, record: ChildRecord, doc: dict[str, Any]) -> None:
        """A CHILD_SA's inbound SA is in the stack; `doc` its record without the SAs."""
        doc = dict(doc, sas={})
        self._children[record.spi_in] = doc
        self._put_child(record.spi_in)

    def sa_installed(self, spi_in: int, direction: str, message: bytes) -> None:
        """One of the CHILD_SA's SAs went to the stack as `message` (UPDATE or ADD,
        encoded)."""
        doc = self._children.get(spi_in)
        if doc is None:
            return
        doc["sas"][direction] = message.hex()
        self._note_byte_limit(spi_in, direction, decode(message))
        self._put_child(spi_in)

    def _note_byte_limit(self, spi_in: int, direction: str, message: PfkeyMessage) -> None:
        sa, dst = message.find(ExtType.SA), message.find(ExtType.ADDRESS_DST)
        if not isinstance(sa, SadbSa) or not isinstance(dst, SadbAddress):
            return
        if any(isinstance(e, SadbLifetime) and e.ext_type in _LIMITS and e.bytes
               for e in message.extensions):  # fmt: skip
            self.byte_limited.setdefault(spi_in, {})[direction] = (sa.spi, dst.addr)

    def bytes_carried(self, spi_in: int, direction: str, nbytes: int) -> None:
        """The stack's CURRENT lifetime says the SA carried `nbytes`: kept, if new."""
        doc = self._children.get(spi_in)
        if doc is None:
            return
        carried = doc.setdefault("bytes", {})
        if carried.get(direction, 0) != nbytes:
            carried[direction] = nbytes
            self._put_child(spi_in)

    def child_moved(self, spi_in: int, natt_port: int) -> None:
        doc = self._children.get(spi_in)
        if doc is not None:
            doc["natt_port"], doc["natt_moved"] = natt_port, True
            self._put_child(spi_in)

    def child_gone(self, spi_in: int) -> None:
        self._children.pop(spi_in, None)
        self.byte_limited.pop(spi_in, None)
        key = (CHILD_SA, child_key(spi_in))
        self._children_changed.discard(spi_in)
        self._puts.pop(key, None)
        self._deletes.add(key)

    def _put_child(self, spi_in: int) -> None:
        # A CHILD_SA changes several times in one turn (installed, then each of its SAs):
        # its record is made once, by the flush that writes it.
        self._deletes.discard((CHILD_SA, child_key(spi_in)))
        self._children_changed.add(spi_in)

    def _child_records(self) -> None:
        changed, self._children_changed = self._children_changed, set()
        for spi_in in changed:
            doc = self._children.get(spi_in)
            if doc is not None:
                self._puts[(CHILD_SA, child_key(spi_in))] = json.dumps(doc, sort_keys=True).encode()

    # -- writing -----------------------------------------------------------------------------

    def flush(
        self, connection_of: Callable[[IkeSa], dict[str, Any] | None], pools: Pools | None = None
    ) -> None:
        """Write what changed since the last flush, in one batch; `connection_of` gives a
        session's connection name, local address and leases (None: it is no longer
        kept); `pools`' leases are kept as LEASE records when an IKE SA changed.
        Raises `StoreError` (and `StoreFenced`) as the store does; what was not written
        is written by the next flush."""
        taken = self.take(connection_of, pools)
        if taken is None:
            return
        try:
            self.store.write(*taken)
        except BaseException:
            self.put_back(*taken)
            raise

    def take(
        self, connection_of: Callable[[IkeSa], dict[str, Any] | None], pools: Pools | None = None
    ) -> tuple[dict[RecordKey, bytes], set[RecordKey]] | None:
        """What `flush` would write, taken out to be written elsewhere (`Batch`, on a
        writer thread): the puts and the deletes, or None if nothing changed. A write of
        them that fails is `put_back`."""
        dirty, self._dirty = self._dirty, {}
        if dirty and pools is not None and len(pools):
            self._lease_records(pools)
        for ident, session in dirty.items():
            old = self._ike_keys.get(ident)
            where = connection_of(session)
            if where is None or session.phase in (Phase.CLOSED, Phase.REPLACED):
                if old is not None:
                    self._deletes.add((IKE_SA, old))
                    self._ike_keys.pop(ident, None)
                self._values.pop(ident, None)
                continue
            if session.phase is not Phase.ESTABLISHED:
                continue  # nothing to keep before it is up
            under_way: list[list[int | None]] = []
            try:
                value = session.snapshot()
            except IkeStateError:
                under_way = _children_under_way(session)
                self.deferred += 1  # the last value written stands (module docstring),
                self._dirty.setdefault(ident, session)  # tried again next turn,
                moved = self._moved_on(ident, session)  # its counters moved on
                if moved is None:
                    continue
                value = moved
            self._values[ident] = value
            key = ike_key(session)
            if old is not None and old != key:
                self._deletes.add((IKE_SA, old))
            doc = {**where, "state": value.to_json()}
            if under_way:
                doc["children_under_way"] = under_way
            self._puts[(IKE_SA, key)] = json.dumps(doc, sort_keys=True).encode()
            self._deletes.discard((IKE_SA, key))
            self._ike_keys[ident] = key
        self._child_records()
        if not self._puts and not self._deletes:
            return None
        puts, deletes = self._puts, self._deletes - self._puts.keys()
        self._puts, self._deletes = {}, set()
        return puts, deletes

    def put_back(self, puts: dict[RecordKey, bytes], deletes: set[RecordKey]) -> None:
        """A batch that was not written, back under what changed since it was taken: the
        next write holds it, except where a later put or delete of a record replaces it."""
        for key, value in puts.items():
            if key not in self._puts and key not in self._deletes:
                self._puts[key] = value
        for key in deletes:
            if key not in self._puts and key not in self._deletes:
                self._deletes.add(key)

    def _moved_on(self, ident: int, session: IkeSa) -> IkeSaState | None:
        """The last value written of a session that has none now (an exchange of ours
        under way), with its Message IDs and AEAD IV counter where the session's are;
        None if that is what was written already."""
        last = self._values.get(ident)
        marks = getattr(session, "sequence_marks", None)  # IKEv2's; IKEv1's IDs are random
        if last is None or marks is None:
            return None
        ours, peer, next_iv = marks()
        transport = dataclasses.replace(
            last.transport, next_message_id=ours, expected_message_id=peer
        )
        ikev2 = last.ikev2
        if ikev2 is not None and next_iv is not None:
            ikev2 = dataclasses.replace(ikev2, next_iv=next_iv)
        moved = dataclasses.replace(last, transport=transport, ikev2=ikev2)
        return None if moved == last else moved

    def _lease_records(self, pools: Pools) -> None:
        """LEASE records for what changed in the pools: key "pool/address", value
        [identity hex, whether it is text, online]."""
        now: dict[str, bytes] = {}
        for pool in pools:
            for identity, address, online in pool.leases():
                key = f"{pool.name}/{address}"
                entry = [_identity_bytes(identity).hex(), isinstance(identity, str), online]
                if key not in now or online:
                    now[key] = json.dumps(entry).encode()
        for key in self._lease_written.keys() - now.keys():
            self._deletes.add((LEASE, key))
        for key, value in now.items():
            if self._lease_written.get(key) != value:
                self._puts[(LEASE, key)] = value
        self._lease_written = now

    def adopt(self, session: IkeSa, key: str) -> None:
        """A restored session: its record is `key`."""
        self._ike_keys[id(session)] = key

    def adopt_child(self, spi_in: int, doc: dict[str, Any]) -> None:
        self._children[spi_in] = doc
        for direction, hexed in doc["sas"].items():
            self._note_byte_limit(spi_in, direction, decode(bytes.fromhex(hexed)))

    def leases_moved(self, old: IkeSa, new: IkeSa) -> None:
        """A rekey: the new IKE SA holds the restored one's leases."""
        held = self.leases.pop(id(old), None)
        if held is not None:
            self.leases[id(new)] = held

    def release_leases(self, session: IkeSa, pools: Pools) -> None:
        """A restored IKE SA went: its leases go offline, as the session's own would."""
        for identity, lease in self.leases.pop(id(session), []):
            pools.release(identity, lease)


def _children_under_way(session: IkeSa) -> list[list[int | None]]:
    """[new inbound SPI, inbound SPI of the CHILD_SA it renews or None] of each
    CREATE_CHILD_SA of ours under way (IKEv2), kept with the IKE SA's record before its
    request leaves."""
    under_way = getattr(session, "children_under_way", None)
    return [] if under_way is None else [list(pair) for pair in under_way()]


def _retry_children_under_way(
    keymgr: KeyManager, session: IkeSa, doc: dict[str, Any], now: float
) -> None:
    """A CREATE_CHILD_SA of ours was under way at the kill: the peer may have made its
    CHILD_SA, which no one here knows now. It is deleted with the peer by its SPI, and a
    rekey is started again for the CHILD_SA it renewed (a new CHILD_SA comes again with
    the next packet its policy ACQUIREs for)."""
    delete = getattr(session, "delete_unheld_child", None)
    for entry in doc.get("children_under_way") or []:
        try:
            spi_new, spi_old = (int(entry[0]), None if entry[1] is None else int(entry[1]))
        except (TypeError, ValueError, IndexError):
            log.warning("%s: CREATE_CHILD_SA under way %r unreadable; dropped",
                        session.config.name, entry)  # fmt: skip
            continue
        if delete is not None and spi_new not in session.children:
            log.info("%s: a CREATE_CHILD_SA was under way at the restart: deleting SPI %08x "
                     "with the peer", session.config.name, spi_new)  # fmt: skip
            delete(spi_new, now)
        record = keymgr.children.get(spi_old) if spi_old is not None else None
        if record is not None:
            keymgr._rekey_child(session, record, now)


def leases_of(
    pools: Pools, session: IkeSa, restored: list[tuple[Identity, Lease]] | None
) -> list[list[object]]:
    """A responder's IKE SA's pool leases, for its record: [pool, address, identity hex,
    whether the identity is text]."""
    held: list[tuple[Identity, Lease]] = list(restored or [])
    if not held and not session.initiator:
        for vip in session.virtual_ips:
            for pool in pools:
                if vip not in pool:
                    continue
                for identity, address, online in pool.leases():
                    if address == vip and online:
                        held.append((identity, Lease(pool.name, vip)))
                        break
    return [
        [lease.pool, str(lease.address), _identity_bytes(identity).hex(), isinstance(identity, str)]
        for identity, lease in held
    ]


def _identity_bytes(identity: Identity) -> bytes:
    return identity.encode() if isinstance(identity, str) else bytes(identity)


def _offline_leases(keymgr: KeyManager, records: dict[str, bytes]) -> None:
    """The leases no restored IKE SA holds, offline again for their identities: each
    client finds its address kept when it comes back, as before the restart."""
    persist = keymgr.persist
    assert persist is not None
    for key, raw in sorted(records.items()):
        try:
            pool, address = key.rsplit("/", 1)
            ident_hex, is_text, _ = json.loads(raw)
            raw_id = bytes.fromhex(ident_hex)
            identity: Identity = raw_id.decode() if is_text else raw_id
            wanted = ipaddress.ip_address(address)
            if pool not in keymgr.pools:
                raise ValueError(f"no pool {pool!r} is configured")
            if any(a == wanted for _, a, _ in keymgr.pools[pool].leases()):
                continue  # a restored IKE SA holds it
            lease = keymgr.pools.acquire([pool], identity, wanted, None)
        except (ValueError, TypeError, PoolError) as exc:
            log.warning("state store: lease %s not kept: %s", key, exc)
            persist._deletes.add((LEASE, key))
            continue
        if lease is not None:
            keymgr.pools.release(identity, lease)
            if lease.address != wanted:
                log.warning("state store: lease %s is another's now; dropped", key)


def retake_leases(keymgr: KeyManager, session: IkeSa, doc: dict[str, Any]) -> None:
    """A restored responder's leases, taken again in the pools so that no other client
    is given its addresses; logged if one is no longer to be had."""
    persist = keymgr.persist
    assert persist is not None
    held: list[tuple[Identity, Lease]] = []
    for entry in doc.get("leases") or []:
        try:
            pool, address, ident_hex, is_text = entry
            raw = bytes.fromhex(ident_hex)
            identity: Identity = raw.decode() if is_text else raw
            wanted = ipaddress.ip_address(address)
            lease = keymgr.pools.acquire([pool], identity, wanted, session.remote)
        except (ValueError, TypeError, PoolError) as exc:
            log.warning("%s: lease %r not taken again: %s", session.config.name, entry, exc)
            continue
        if lease is None or lease.address != wanted:
            log.warning("%s: %s of pool %s is not to be had again for the restored IKE SA",
                        session.config.name, address, pool)  # fmt: skip
            if lease is not None:
                keymgr.pools.release(identity, lease)
            continue
        held.append((identity, lease))
    if held:
        persist.leases[id(session)] = held


@dataclasses.dataclass
class RestoreReport:
    """What `restore` found: counts for its summary line and for tests."""

    ike_sas: int = 0
    child_sas: int = 0
    expired: int = 0
    dropped: int = 0  # records of no connection configured, unreadable, or of nothing


def suite_json(suite: tuple[Transform, ...]) -> list[list[int | None]]:
    return [[int(t.type), t.id, t.key_bits] for t in suite]


def suite_of(value: list[list[int | None]]) -> tuple[Transform, ...]:
    from larval.crypto.ike_transforms import TransformType

    return tuple(Transform(TransformType(int(t[0] or 0)), int(t[1] or 0), t[2]) for t in value)


_LIMITS = (ExtType.LIFETIME_HARD, ExtType.LIFETIME_SOFT)


def checkpoint_bytes(keymgr: KeyManager, now: float) -> None:
    """Every `BYTES_EVERY` seconds, the bytes each byte-limited SA has carried, from the
    stack's CURRENT lifetime (PF_KEY GET, RFC 2367 §3.1.5), into its CHILD_SA's record:
    after a restart its byte lifetimes go on from there, not from 0."""
    from larval.pfkey.requests import by_spi

    persist = keymgr.persist
    if persist is None or now < persist.bytes_due:
        return
    persist.bytes_due = now + BYTES_EVERY
    for spi_in, directions in list(persist.byte_limited.items()):
        for direction, (spi, dst) in directions.items():
            get = by_spi(SadbMsgType.GET, spi, dst, seq=keymgr._next_seq(), pid=keymgr.pid)
            for raw in keymgr._call(get):
                try:
                    reply = decode(raw)
                except PfkeyError:
                    continue
                current = reply.find(ExtType.LIFETIME_CURRENT)
                if reply.msg_type == SadbMsgType.GET and isinstance(current, SadbLifetime):
                    persist.bytes_carried(spi_in, direction, current.bytes)


def readded(
    hexed: str,
    now: float,
    soft_at: float | None,
    hard_at: float | None,
    esp: EspStoredState,
    carried: int = 0,
) -> bytes:
    """The PF_KEY message that installed an SA, as an ADD with what remains of its
    lifetimes (an UPDATE of a LARVAL SA has no LARVAL SA to update after a restart) and
    the sequence numbers the stack stored for it: an outbound SA sends above every number
    it sent before, an inbound one's replay window is where it was (X_LARVAL_SEQ_STATE).
    `carried`: the bytes it had carried at its last checkpoint, taken off its byte
    lifetimes (never below 1 byte, so that one that was spent expires at its next packet)."""
    msg = decode(bytes.fromhex(hexed))
    sa, dst = msg.find(ExtType.SA), msg.find(ExtType.ADDRESS_DST)
    stored = None
    if isinstance(sa, SadbSa) and isinstance(dst, SadbAddress):
        stored = esp.seq_state(sa.spi, dst.addr.packed)
    exts: list[Extension] = [stored] if stored is not None else []
    for ext in msg.extensions:
        if isinstance(ext, SadbLifetime) and ext.ext_type in (
            ExtType.LIFETIME_HARD,
            ExtType.LIFETIME_SOFT,
        ):
            at = hard_at if ext.ext_type == ExtType.LIFETIME_HARD else soft_at
            if ext.addtime and at is not None:
                ext = dataclasses.replace(ext, addtime=max(1, int(at - now)))
            if ext.bytes and carried:
                ext = dataclasses.replace(ext, bytes=max(1, ext.bytes - carried))
        exts.append(ext)
    exts.sort(key=lambda e: 0 if isinstance(e, SadbSa) else 1)  # the SA first, as it came
    return dataclasses.replace(msg, msg_type=SadbMsgType.ADD, extensions=tuple(exts)).encode()


def read_doc(kind: str, key: str, value: bytes) -> dict[str, Any] | None:
    """A record's JSON document, or None, logged, if it is not one."""
    try:
        doc = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict):
        log.warning("state store: %s record %s is not a JSON object; dropped", kind, key)
        return None
    return doc


def restore(keymgr: KeyManager, now: float) -> RestoreReport:
    """Bring back what the store holds (module docstring)."""
    persist = keymgr.persist
    assert persist is not None
    report = RestoreReport()
    records = persist.store.load()
    esp = load_esp_state(persist.store)  # StoreError if unreadable: no nonce is guessed
    children = {
        key: doc
        for key, raw in records.get(CHILD_SA, {}).items()
        if (doc := read_doc(CHILD_SA, key, raw)) is not None
    }
    used: set[str] = set()
    for key, raw in sorted(records.get(IKE_SA, {}).items()):
        doc = read_doc(IKE_SA, key, raw)
        session = None if doc is None else _restore_ike(keymgr, key, doc, now)
        if session is None:
            report.dropped += 1
            persist._deletes.add((IKE_SA, key))
            continue
        persist.adopt(session, key)
        assert doc is not None
        retake_leases(keymgr, session, doc)
        expired = session.expires_at is not None and session.expires_at <= now
        kept = 0
        for spi_in in list(session.children):
            ck = child_key(spi_in)
            used.add(ck)
            child = children.get(ck)
            if expired or child is None or not _readd(keymgr, session, spi_in, child, esp, now):
                if child is None:
                    log.warning("%s: CHILD_SA %08x has no record in the state store; deleting "
                                "it", session.config.name, spi_in)  # fmt: skip
                report.expired += 1
                if not expired:
                    session.delete_child(spi_in, now)
                persist.child_gone(spi_in)
                continue
            kept += 1
        report.ike_sas += 1
        report.child_sas += kept
        if not expired:
            _retry_children_under_way(keymgr, session, doc, now)
        if expired:
            log.info("%s: IKE_SA %s expired while larval was down; deleting it",
                     session.config.name, key)  # fmt: skip
            report.expired += 1
            session.delete(now, "expired while larval was down")
        else:
            log.info("%s: IKE_SA %s restored, IKEv%d, %d CHILD_SA(s)", session.config.name, key,
                     session.version, kept)  # fmt: skip
        keymgr._restored(session, now)
    for key in children.keys() - used:
        report.dropped += 1
        persist._deletes.add((CHILD_SA, key))
    _offline_leases(keymgr, records.get(LEASE, {}))
    # The stack's sequence marks and replay checkpoints of SAs that did not come back.
    live = {record_key(spi, addr.packed) for c in keymgr.children.values()
            for spi, addr in ((c.spi_in, c.local), (c.spi_out, c.remote))}  # fmt: skip
    for kind in (ESP_SEQ, ESP_REPLAY):
        persist._deletes.update((kind, key) for key in records.get(kind, {}) if key not in live)
    persist._lease_written = dict(records.get(LEASE, {}))
    persist.flush(keymgr._kept_as, keymgr.pools)
    log.info("state store: restored %d IKE_SA(s) and %d CHILD_SA(s); %d expired, %d dropped",
             report.ike_sas, report.child_sas, report.expired, report.dropped)  # fmt: skip
    return report


def _restore_ike(keymgr: KeyManager, key: str, doc: dict[str, Any], now: float) -> IkeSa | None:
    name = doc.get("connection")
    conn = keymgr.connections.get(name) if isinstance(name, str) else None
    if conn is None:
        log.warning("state store: IKE_SA %s is of connection %r, which is not configured; "
                    "dropped", key, name)  # fmt: skip
        return None
    try:
        value = IkeSaState.from_json(str(doc.get("state", "")))
        local = ipaddress.ip_address(str(doc.get("local")))
        return keymgr._restore_session(conn, value, local)
    except (IkeStateError, ValueError) as exc:
        log.warning("state store: IKE_SA %s of %s cannot be restored: %s; dropped", key, name,
                    exc)  # fmt: skip
        return None


def _readd(
    keymgr: KeyManager,
    session: IkeSa,
    spi_in: int,
    doc: dict[str, Any],
    esp: EspStoredState,
    now: float,
) -> bool:
    """ADD the CHILD_SA's SAs again; False if it is past its hard lifetime or the stack
    refused it."""
    from larval.keymgr.manager import ChildRecord

    hard_at, soft_at = doc.get("hard_at"), doc.get("soft_at")
    if isinstance(hard_at, (int, float)) and hard_at <= now:
        log.info("%s: CHILD_SA %s %08x expired while larval was down; deleting it",
                 session.config.name, doc.get("name"), spi_in)  # fmt: skip
        session.delete_child(spi_in, now)
        return False
    sas = doc.get("sas")
    if not isinstance(sas, dict) or "in" not in sas:
        return False
    try:
        for direction in ("in", "out"):
            if direction not in sas:
                continue
            carried = (doc.get("bytes") or {}).get(direction, 0)
            message = readded(str(sas[direction]), now, soft_at, hard_at, esp, int(carried))
            refused = keymgr._refusal(decode(message))
            if refused is not None:
                log.warning("%s: re-ADD of CHILD_SA %08x (%s) refused: errno %d",
                            session.config.name, spi_in, direction, refused.errno)  # fmt: skip
                session.delete_child(spi_in, now)
                return False
        record = ChildRecord(
            str(doc["connection"]), str(doc["name"]), spi_in, int(doc["spi_out"]),
            suite_of(doc["suite"]), ipaddress.ip_address(doc["local"]),
            ipaddress.ip_address(doc["remote"]),
            tuple(ipaddress.ip_network(n) for n in doc["local_ts"]),
            tuple(ipaddress.ip_network(n) for n in doc["remote_ts"]),
            float(doc["installed"]), natt_port=int(doc.get("natt_port", 0)),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError, PfkeyError) as exc:
        log.warning("%s: CHILD_SA %08x record unreadable (%s); deleting it",
                    session.config.name, spi_in, exc)  # fmt: skip
        session.delete_child(spi_in, now)
        return False
    if doc.get("natt_moved") and "out" in sas:
        # The peer's NAT moved its port after the outbound SA was made: send there.
        update = natt_update(record.spi_out, record.local, record.remote, record.natt_port,
                             seq=keymgr._next_seq(), pid=keymgr.pid)  # fmt: skip
        if keymgr._refusal(update) is not None:
            log.warning("%s: the stack refused to move SPI %08x to port %d",
                        session.config.name, record.spi_out, record.natt_port)  # fmt: skip
    keymgr.children[spi_in] = record
    assert keymgr.persist is not None
    keymgr.persist.adopt_child(spi_in, doc)
    return True


@dataclasses.dataclass
class Batch:
    """One group commit: the records the key manager's handling of a pass of datagrams
    and timers changed, and the datagrams it produced, which may leave only once
    `write` returned (`larval.daemon.group_commit`)."""

    persist: Persistence | None
    puts: dict[RecordKey, bytes]
    deletes: set[RecordKey]
    datagrams: list[tuple[bytes, tuple[str, int]]]

    def __repr__(self) -> str:  # the values hold keys
        return f"<Batch {len(self.puts)} put(s), {len(self.deletes)} delete(s), " \
               f"{len(self.datagrams)} datagram(s)>"  # fmt: skip

    @property
    def empty(self) -> bool:
        """Nothing to write: the datagrams may leave at once."""
        return not self.puts and not self.deletes

    def write(self) -> None:
        """Write the records, from any thread (the store is thread-safe); raises
        `StoreError` as the store does."""
        if self.persist is not None and not self.empty:
            self.persist.store.write(self.puts, self.deletes)

    def failed(self, exc: BaseException) -> None:
        """The write failed (on the key manager's thread): logged; its records go back
        for the next write, its datagrams are dropped, and retransmission sends them
        again once a write has held what they depend on."""
        log.error("state store: %s; holding back %d datagram(s)", exc, len(self.datagrams))
        if self.persist is not None:
            self.persist.put_back(self.puts, self.deletes)


def take_batch(keymgr: KeyManager) -> Batch:
    """What the key manager changed and would send since the last batch, taken out in
    one `Batch`: everything its calls since then did."""
    datagrams, keymgr._outbox = keymgr._outbox, []
    persist = keymgr.persist
    taken = persist.take(keymgr._kept_as, keymgr.pools) if persist is not None else None
    puts, deletes = taken if taken is not None else ({}, set())
    return Batch(persist, puts, deletes, datagrams)


def flush_or_hold(keymgr: KeyManager) -> bool:
    """Write the turn's batch; False (logged) if the store failed: nothing may leave."""
    persist = keymgr.persist
    if persist is None:
        return True
    try:
        persist.flush(keymgr._kept_as, keymgr.pools)
    except StoreError as exc:
        log.error("state store: %s; holding back what would have been sent", exc)
        return False
    return True
