"""Which gateway of a group owns the state: an election in etcd, and the owner's fence.

Theory of operation
-------------------
* The owner key ``/larval/GROUP/owner`` holds the owner's node name, attached to a
  lease of `ttl` seconds. A node campaigns with one txn: put the key with its lease if
  the key's create revision is 0 (it does not exist). The winner's epoch is the key's
  create revision: it names this ownership and no other, since a key created again has
  a later one. `larval.store.etcd.EtcdStore` writes only while the owner key's create
  revision is the epoch, so a node that lost ownership cannot write, whatever it
  believes.
* The owner renews its lease every `ttl` / 3 (sooner again when a renewal fails). It
  also fences itself: it writes only until ``sent + granted TTL - margin``, where `sent`
  is its monotonic clock when the last successful renewal was sent. etcd restarts the
  lease's TTL no earlier than it receives that renewal, so the deadline passes before
  etcd could expire the lease and let another campaign: a node that was stopped,
  starved or cut off stops writing and sending (and says so) before anyone else starts.
  A fenced owner revokes its old lease, so a standby need not wait out the TTL, and
  campaigns again only TTL/3 later, so that the standby goes first.
* A standby watches the owner key and campaigns when it is deleted (lease expired or
  revoked). It never campaigns while the key exists.
* Everything is driven by `run` in one thread; `campaign`, `renew`, `may_write` and
  `fence` are the steps, called directly by tests with their own clock.
"""

from __future__ import annotations

import base64
import logging
import math
import threading
import time
from collections.abc import Callable

from larval.store import StoreError
from larval.store.etcd import EtcdClient, EtcdWatch, create_revision_is, owner_key, put_op, range_op

__all__ = ["MIN_LEASE_TTL", "Election", "Repeats"]

log = logging.getLogger(__name__)

#: etcd grants no lease shorter than about 2 s with its default timings.
MIN_LEASE_TTL = 2.0
#: How often a failed renewal is tried again before the deadline.
RETRY_INTERVAL = 0.2


class Repeats:
    """A warning that may come every few hundred milliseconds while etcd is away (a
    renewal retried, a campaign refused): logged the first time and when it changes,
    else at most once every `every` seconds, saying how often it came meanwhile."""

    def __init__(self, every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._last: str | None = None
        self._at = -math.inf
        self._since = 0

    def warning(self, text: str) -> None:
        now = self.clock()
        if text == self._last and now - self._at < self.every:
            self._since += 1
            return
        more = f" (and {self._since} time(s) more in {now - self._at:.0f} s)" if (
            text == self._last and self._since) else ""  # fmt: skip
        log.warning("%s%s", text, more)
        self._last, self._at, self._since = text, now, 0

    def clear(self) -> None:
        self._last = None


class Election:
    """One node's part in the election of `group`'s owner."""

    def __init__(
        self,
        client: EtcdClient,
        group: str,
        node: str,
        ttl: float = 5.0,
        *,
        margin: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl < MIN_LEASE_TTL:
            raise StoreError(f"lease TTL {ttl} s: etcd grants none under {MIN_LEASE_TTL:g} s")
        self.client = client
        self.group = group
        self.node = node
        self.ttl = math.ceil(ttl)
        # Room for the renewal's trip to etcd and for the clocks' rates to differ.
        self.margin = margin if margin is not None else max(0.5, self.ttl / 4)
        self.clock = clock
        self.key = owner_key(group)
        #: The owner key's create revision while this node owns it, else 0.
        self.epoch = 0
        self.lease = 0
        #: Writes stop when the clock passes this.
        self.deadline = 0.0
        self.fenced_reason = "not the owner"
        #: Who owns the group, as last seen (this node's name while it owns it).
        self.owner: str | None = None
        self.on_change: Callable[[bool], None] | None = None
        self._stop = threading.Event()
        self._fence_lock = threading.Lock()
        self._watch: EtcdWatch | None = None
        self._thread: threading.Thread | None = None
        self._repeats = Repeats(clock=clock)

    def __repr__(self) -> str:
        role = f"owner epoch {self.epoch}" if self.epoch else "standby"
        return f"<Election {self.group}/{self.node} {role}>"

    # -- steps

    def campaign(self) -> bool:
        """Try once to become the owner; whether this node is it now."""
        lease, granted = self.client.lease_grant(self.ttl)
        sent = self.clock()
        try:
            won, answers, _ = self.client.txn(
                [create_revision_is(self.key, 0)],
                [put_op(self.key, self.node.encode(), lease), range_op(self.key)],
                [range_op(self.key)],
            )
        except StoreError:
            self._revoke(lease)
            raise
        kvs = answers[-1].get("response_range", {}).get("kvs", []) if answers else []
        if not won:
            self._revoke(lease)
            self.owner = self._name(kvs)
            log.info("%s: %s owns group %s; this node stands by", self.node, self.owner, self.group)
            return False
        self.lease = lease
        self.epoch = int(kvs[0]["create_revision"]) if kvs else 0
        self.deadline = sent + min(granted or self.ttl, self.ttl) - self.margin
        self.owner = self.node
        self.fenced_reason = ""
        log.info("%s: owns group %s (epoch %d)", self.node, self.group, self.epoch)
        if self.on_change is not None:
            self.on_change(True)
        return True

    @staticmethod
    def _name(kvs: list[dict[str, object]]) -> str | None:
        value = kvs[0].get("value") if kvs else None
        return (
            base64.b64decode(value).decode("utf-8", "replace") if isinstance(value, str) else None
        )

    def renew(self) -> bool:
        """Renew the lease once; whether it was renewed. A lease found expired fences."""
        if not self.epoch:
            return False
        sent = self.clock()
        # A renewal may wait on etcd (every endpoint's connect timing out) past the
        # deadline: the fence must not wait for it.
        watchdog = threading.Timer(max(0.0, self.deadline - sent), self.may_write)
        watchdog.daemon = True
        watchdog.start()
        try:
            ttl = self.client.lease_keepalive(self.lease)
        except StoreError as e:
            self._repeats.warning(f"{self.node}: lease renewal failed: {e}")
            return False
        finally:
            watchdog.cancel()
        if ttl <= 0:
            self.fence("its lease had expired in etcd")
            return False
        self.deadline = max(self.deadline, sent + min(ttl, self.ttl) - self.margin)
        self._repeats.clear()
        return True

    def may_write(self) -> bool:
        """Whether this node owns the group now; fences it once its deadline has passed."""
        if self.epoch and self.clock() >= self.deadline:
            self.fence(f"no lease renewal within {self.ttl} s less a margin of {self.margin:g} s")
        return bool(self.epoch)

    def fence(self, reason: str) -> None:
        """Stop owning: nothing more is written or sent on this ownership."""
        with self._fence_lock:
            if not self.epoch:
                return
            self.fenced_reason = reason
            epoch, self.epoch = self.epoch, 0
        log.warning("%s: fenced in group %s (epoch %d): %s; writing and sending stop",
                    self.node, self.group, epoch, reason)  # fmt: skip
        self.owner = None
        if self.on_change is not None:
            self.on_change(False)

    def resign(self) -> None:
        """Give ownership up at once (revoking the lease deletes the owner key)."""
        lease = self.lease
        self.fence("resigned")
        self.lease = 0
        if lease:
            self._revoke(lease)

    def _revoke(self, lease: int) -> None:
        try:
            self.client.lease_revoke(lease)
        except StoreError as e:
            log.warning("%s: revoking lease failed: %s", self.node, e)

    # -- the thread

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=f"election-{self.node}", daemon=True)
        self._thread.start()

    def stop(self, resign: bool = True) -> None:
        self._stop.set()
        watch = self._watch
        if watch is not None:
            watch.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if resign and self.epoch:
            self.resign()

    def run(self) -> None:
        """Campaign, own or stand by, until `stop`."""
        while not self._stop.is_set():
            try:
                if self.epoch:
                    self._own()
                    if not self.epoch and self.lease:
                        # Fenced: the old lease serves no one; let a standby in at once.
                        lease, self.lease = self.lease, 0
                        self._revoke(lease)
                        # A standby watching the key goes first; this node only after.
                        self._stop.wait(self.ttl / 3)
                elif not self.campaign():
                    self._stand_by()
            except StoreError as e:
                self._repeats.warning(f"{self.node}: election in group {self.group}: {e}")
                self._stop.wait(RETRY_INTERVAL)

    def _own(self) -> None:
        """Renew every TTL/3 until stopped or fenced. Awake, it first asks whether the
        deadline passed while it slept (a stopped process): then it fences, and says so."""
        renewed_at = self.clock()
        while self.may_write():
            due = min(renewed_at + self.ttl / 3, self.deadline)
            if self._stop.wait(max(0.0, due - self.clock())) or not self.may_write():
                return
            if self.renew():
                renewed_at = self.clock()
            else:
                # Again soon, until renewed or the deadline passes.
                renewed_at = self.clock() - self.ttl / 3 + RETRY_INTERVAL

    def _stand_by(self) -> None:
        """Wait for the owner key to go."""
        current = self.client.get(self.key)
        if current is None:
            return
        self.owner = current.value.decode("utf-8", "replace")
        watch = self.client.watch(self.key, current.mod_revision + 1, exact=True)
        self._watch = watch
        try:
            if self._stop.is_set():
                return
            for events in watch:
                if any(e.deleted for e in events):
                    log.info("%s: %s no longer owns group %s", self.node, self.owner, self.group)
                    self.owner = None
                    return
        finally:
            self._watch = None
            watch.close()
