"""One gateway of a group: standby, owner or fenced, and what the group knows of it.

Theory of operation
-------------------
* A node starts as a standby: `EtcdStore.follow` keeps a mirror of the group's state by
  watch, and the `Election` campaigns when the owner key goes. `larval run`
  (`larval.daemon.ike_daemon`) does what each role needs; this module holds the role and
  the etcd side of it.
* Won: `take_over` gives the store of the new epoch, primed with the state to restore
  from: the mirror when it is provably whole (every key etcd holds, at its latest
  revision: a keys-only read, then the mirror waited for), else one full read. The
  mirror is never trusted blindly: a stale ESP_SEQ mark would be a nonce used twice.
* Fenced (the election's deadline passed, or etcd refused a write): `may_send` is false
  from that instant, on every thread; `on_fenced` is told at once (the daemon revokes
  every ESP SA before anything else) and the daemon then stands the node down
  (`stood_down`), following again.
* Each node keeps ``/larval/GROUP/nodes/NODE`` on a lease of its own: its role, epoch and
  the state revision it has applied; a thread renews it every TTL/3 and reads the
  group's entries, the owner key and etcd's latest state revision back, for `status`.
  An owner that finds the owner key gone or another's fences itself then, even if it
  had nothing to write (etcd would refuse its next write anyway).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from larval.ha.election import Election
from larval.ha.vip import VirtualAddresses
from larval.store import RecordKey, StoreError
from larval.store.crypto import StateKey
from larval.store.etcd import EtcdClient, EtcdKv, EtcdStore, owner_key, prefix_end, state_prefix

__all__ = ["FENCED", "OWNER", "STANDBY", "HaNode", "PrimedStore", "nodes_prefix"]

log = logging.getLogger("larval.ha")

OWNER, STANDBY, FENCED = "owner", "standby", "fenced"
#: How long a takeover waits for the mirror to catch up before it reads everything.
MIRROR_WAIT = 1.0


def nodes_prefix(group: str) -> bytes:
    return f"/larval/{group}/nodes/".encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class PrimedStore:
    """The owner's store, whose `load` answers from the records it was primed with (the
    takeover's), until `primed` is dropped; writes go to etcd."""

    def __init__(self, store: EtcdStore, records: dict[str, dict[str, bytes]]) -> None:
        self.store = store
        self.primed: dict[str, dict[str, bytes]] | None = records

    def __repr__(self) -> str:
        return f"<PrimedStore {self.store!r}>"

    def load(self) -> dict[str, dict[str, bytes]]:
        if self.primed is None:
            return self.store.load()
        return {kind: dict(records) for kind, records in self.primed.items()}

    def write(self, puts: Mapping[RecordKey, bytes], deletes: Iterable[RecordKey] = ()) -> None:
        self.store.write(puts, deletes)

    def close(self) -> None:
        self.store.close()


@dataclass
class GroupView:
    """What the heartbeat last read of the group."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    owner: str | None = None
    state_revision: int = 0
    read_at: float = 0.0
    error: str | None = None


class HaNode:
    """This node's part in `group` (`larval.daemon.config.HaConfig` gives the values)."""

    def __init__(
        self,
        endpoints: Iterable[str],
        group: str,
        node: str,
        ttl: float,
        state_key: StateKey,
        vips: VirtualAddresses,
        *,
        on_owner: Callable[[int], None],
        on_fenced: Callable[[str], None],
    ) -> None:
        self.client = EtcdClient(endpoints)
        self.group = group
        self.node = node
        self.state_key = state_key
        self.vips = vips
        self.election = Election(self.client, group, node, ttl)
        self.election.on_change = self._changed
        self.follower = EtcdStore(self.client, group, state_key)
        self.store: EtcdStore | None = None
        self.role = STANDBY
        self.epoch = 0  # of the ownership this node holds or held last
        self.fenced_reason: str | None = None
        #: etcd's latest state revision as last seen when this node took over: what it
        #: has applied until its first write.
        self.took_over_at = 0
        self.ike_sent = 0  # IKE datagrams sent while owner
        self.ike_held = 0  # IKE datagrams not sent: not the owner
        self.esp_held = 0  # the dataplane's datagrams not sent: not the owner
        self._sent_at_fence = 0
        self.view = GroupView()
        self._owning = False
        self._on_owner = on_owner
        self._on_fenced = on_fenced
        self._stop = threading.Event()
        self._lease = 0
        self._heart: threading.Thread | None = None
        self._nodes = nodes_prefix(group)
        self._state = state_prefix(group)

    def __repr__(self) -> str:
        return f"<HaNode {self.group}/{self.node} {self.role}>"

    # -- the roles -------------------------------------------------------------------------

    def may_send(self) -> bool:
        """Whether this node owns the group now (its deadline checked on the monotonic
        clock: a node that was stopped fences here, before it sends)."""
        return self._owning and self.election.may_write()

    def _changed(self, owner: bool) -> None:
        """The election's news, from whichever thread noticed."""
        if owner:
            self.epoch = self.election.epoch
            self._on_owner(self.election.epoch)
            return
        was = self._owning
        self._owning = False
        self._sent_at_fence = self.ike_sent
        if self.role == OWNER or was:
            self.role = FENCED
        self.fenced_reason = self.election.fenced_reason
        self._on_fenced(self.election.fenced_reason)

    def take_over(self) -> PrimedStore | None:
        """The store of the epoch just won, primed with the state to restore from; None if
        the ownership ended meanwhile. Blocking (etcd): run it off the event loop."""
        epoch = self.election.epoch
        if not epoch:
            return None
        store = EtcdStore(self.client, self.group, self.state_key, election=self.election)
        records = self._mirror_if_whole()
        source = "mirror"
        if records is None:
            records = store.load()
            source = "full read"
        self.follower.stop_following()
        self.took_over_at = max(self.took_over_at, self.view.state_revision)
        log.info("%s: state for epoch %d from the %s", self.node, epoch, source)
        self.store = store
        return PrimedStore(store, records)

    def owning(self) -> None:
        """The daemon has restored and listens: this node sends from now on."""
        if self.election.epoch and self.election.epoch == self.epoch:
            self.role = OWNER
            self._owning = True
            self.fenced_reason = None

    def stop_sending(self) -> None:
        """Sending ends now (a graceful stop hands over)."""
        self._owning = False

    def _mirror_if_whole(self) -> dict[str, dict[str, bytes]] | None:
        """The mirror, if it holds every state key etcd holds at its latest revision."""
        if self.follower.follow_error is not None and self.follower.applied_revision == 0:
            return None
        try:
            answer = self.client.call("kv/range", {"key": _b64(self._state),
                                                   "range_end": _b64(prefix_end(self._state)),
                                                   "keys_only": True})  # fmt: skip
        except StoreError as e:
            log.warning("%s: %s; reading the state whole", self.node, e)
            return None
        kvs = [EtcdKv.decode(kv) for kv in answer.get("kvs", [])]
        latest = max((kv.mod_revision for kv in kvs), default=0)
        self.took_over_at = max(self.took_over_at, latest)
        if not self.follower.wait_revision(latest, MIRROR_WAIT):
            return None
        mirror = self.follower.mirror()
        held = {self._state + f"{kind}/{key}".encode() for kind, keys in mirror.items()
                for key in keys}  # fmt: skip
        return mirror if held == {kv.key for kv in kvs} else None

    def stood_down(self) -> None:
        """The daemon has dropped what it owned: follow the state again, as a standby.
        Blocking (etcd): run it off the event loop."""
        if self.store is not None:
            self.store.close()
            self.store = None
        self.role = STANDBY
        self.follower.stop_following()  # still following if the takeover failed early
        self._follow()

    def _follow(self) -> None:
        try:
            self.follower.follow()
        except StoreError as e:
            # The next takeover reads the state whole; the node stays a standby.
            log.warning("%s: following group %s: %s", self.node, self.group, e)

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        """Follow the state, then campaign and beat (threads); blocking for the first read."""
        self._follow()
        self._stop.clear()
        self.election.start()
        self._heart = threading.Thread(target=self._beat, name=f"ha-{self.node}", daemon=True)
        self._heart.start()

    def stop(self, *, resign: bool) -> None:
        """Stop the threads; `resign`: give up ownership (the lease revoked, a standby
        takes over at once). The node's own entry goes with its lease."""
        self._owning = False
        self.election.stop(resign=resign)
        self._stop.set()
        if self._heart is not None:
            self._heart.join(timeout=5)
            self._heart = None
        self.follower.stop_following()
        if self.store is not None:
            self.store.close()
        lease, self._lease = self._lease, 0
        if lease:
            try:
                self.client.lease_revoke(lease)
            except StoreError as e:
                log.warning("%s: revoking the node's lease: %s", self.node, e)

    def applied_revision(self) -> int:
        if self.role == OWNER and self.store is not None:
            return max(self.store.last_revision, self.took_over_at)
        return self.follower.applied_revision

    def entry(self) -> dict[str, Any]:
        """This node's entry in the group."""
        return {"role": self.role, "epoch": self.epoch if self.role == OWNER else 0,
                "revision": self.applied_revision()}  # fmt: skip

    def _beat(self) -> None:
        interval = max(0.5, self.election.ttl / 3)
        while not self._stop.is_set():
            try:
                self._beat_once()
                self.view.error = None
            except StoreError as e:
                self.view.error = str(e)
                log.debug("%s: group entry: %s", self.node, e)
            except Exception as e:  # an answer etcd should not give: the beat goes on
                self.view.error = f"{type(e).__name__}: {e}"
                log.warning("%s: group entry: %s", self.node, self.view.error)
            self._stop.wait(interval)

    def _beat_once(self) -> None:
        key = self._nodes + self.node.encode()
        if self._lease and self.client.lease_keepalive(self._lease) <= 0:
            self._lease = 0  # expired (a stopped process): a new one
        if not self._lease:
            self._lease, _ = self.client.lease_grant(self.election.ttl)
        self.client.put(key, json.dumps(self.entry(), sort_keys=True).encode(), self._lease)
        kvs, _ = self.client.range(self._nodes)
        nodes = {}
        for kv in kvs:
            name = kv.key[len(self._nodes) :].decode("utf-8", "replace")
            try:
                value = json.loads(kv.value)
            except ValueError:
                continue
            if isinstance(value, dict):
                nodes[name] = value
        answer = self.client.call("kv/range", {"key": _b64(self._state),
                                               "range_end": _b64(prefix_end(self._state)),
                                               "keys_only": True, "limit": "1",
                                               "sort_order": "DESCEND",
                                               "sort_target": "MOD"})  # fmt: skip
        latest = [EtcdKv.decode(kv) for kv in answer.get("kvs", [])]
        epoch = self.election.epoch  # before the read: an ownership won after it is not judged
        owner = self.client.get(owner_key(self.group))
        if (
            epoch
            and self.election.epoch == epoch
            and (owner is None or owner.create_revision != epoch)
        ):
            # The owner key went, or is another's, while the lease lives on (deleted by
            # hand, say): no write of this node's would be taken; stop sending now too.
            self.election.fence("the owner key is no longer this node's")
        self.view = GroupView(
            nodes=nodes,
            owner=owner.value.decode("utf-8", "replace") if owner is not None else None,
            state_revision=latest[0].mod_revision if latest else 0,
            read_at=time.time(),
        )

    def status(self) -> dict[str, Any]:
        """`larval ha status`: this node and the group as last read."""
        view = self.view
        state = max(view.state_revision, self.applied_revision())
        applied = self.applied_revision()
        nodes = []
        for name, entry in sorted({**view.nodes, self.node: self.entry()}.items()):
            revision = int(entry.get("revision", 0) or 0)
            nodes.append({"node": name, "role": str(entry.get("role", "?")),
                          "epoch": int(entry.get("epoch", 0) or 0), "revision": revision,
                          "lag": max(0, state - revision)})  # fmt: skip
        return {
            "group": self.group,
            "node": self.node,
            "role": self.role,
            "epoch": self.epoch if self.role == OWNER else 0,
            "owner": self.node if self.role == OWNER else view.owner or self.election.owner,
            "revision": applied,
            "state_revision": state,
            "lag": max(0, state - applied),
            "fenced_reason": self.fenced_reason,
            "virtual_addresses": [str(a) for a in self.vips.addresses],
            "ike_sent": self.ike_sent,
            "ike_held": self.ike_held,
            "esp_held": self.esp_held,
            "ike_sent_since_fenced": self.ike_sent - self._sent_at_fence
            if self.fenced_reason
            else 0,
            "nodes": nodes,
            "seen_s_ago": round(time.time() - view.read_at, 1) if view.read_at else None,
            "etcd_error": view.error,
        }
