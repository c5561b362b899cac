"""`larval run`'s group commit (`larval.daemon.group_commit`): the IKE datagrams of one
pass of the event loop are handled, then one store write holds all their changes, then
what they produced leaves; a write that fails sends nothing and the next one holds it.

The daemon is the responder of three initiators' IKE SAs (`tests.keymgr.test_manager`
hosts, PSK, IKEv2, UDP encapsulation); its sends are recorded, its store is a memory
store that records, blocks or fails each write on the writer thread."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from larval.daemon.group_commit import GroupCommit
from larval.daemon.ike_daemon import IkeDaemon
from larval.keymgr.persist import Batch, Persistence
from larval.store import CHILD_SA, IKE_SA, MemoryStore, RecordKey, StoreError
from tests.badinput import write_private
from tests.keymgr.test_manager import OUTER, Host, config

B = OUTER["b"]
B_ADDR = ipaddress.ip_address(B)


class _Gate(MemoryStore):
    """Records each write; `hold` makes a write wait until `release`; `fail` fails it."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[dict[RecordKey, bytes]] = []
        self.attempts = 0
        self.fail = False
        self.hold = False
        self.entered = threading.Event()
        self.gate = threading.Event()

    def write(self, puts: Mapping[RecordKey, bytes], deletes: Iterable[RecordKey] = ()) -> None:
        self.attempts += 1
        if self.hold:
            self.entered.set()
            assert self.gate.wait(10)
        if self.fail:
            raise StoreError("state.db: cannot write: disk I/O error")
        self.batches.append(dict(puts))
        super().write(puts, deletes)


def _toml(doc: dict[str, Any], prefix: str = "") -> str:
    """The few TOML shapes `tests.keymgr.test_manager.config` uses."""
    lines, tables = [], []
    for key, value in doc.items():
        if isinstance(value, dict):
            tables.append(_toml(value, f"{prefix}{key}."))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    head = f"[{prefix[:-1]}]\n" if prefix and lines else ""
    return head + "".join(f"{line}\n" for line in lines) + "".join(tables)


def _daemon(tmp: Path) -> tuple[IkeDaemon, _Gate, list[tuple[bytes, str, int]]]:
    doc = config("b", "a", "none")
    doc["daemon"]["control_socket"] = str(tmp / "control")
    daemon = IkeDaemon(str(write_private(tmp / "larval.toml", _toml(doc))))
    store = _Gate()
    daemon.keymgr.attach_store(store)
    sent: list[tuple[bytes, str, int]] = []
    daemon._send_ike = lambda data, host, port: sent.append((data, host, port))  # type: ignore[method-assign]
    return daemon, store, sent


def _initiators(daemon: IkeDaemon, sent: list[tuple[bytes, str, int]], count: int) -> list[Host]:
    """`count` initiators through IKE_SA_INIT with the daemon (nothing to keep yet);
    each has its IKE_AUTH request waiting."""
    hosts = [Host("a", "b", "none") for _ in range(count)]
    for host in hosts:
        host.keymgr.initiate("s2s", "net", 0.0)
        ((init, _),) = host.keymgr.datagrams_to_send()
        daemon.ike_received(init, (OUTER["a"], 500), B_ADDR)
    return hosts


def _answer(hosts: list[Host], sent: list[tuple[bytes, str, int]]) -> None:
    """The daemon's datagrams to the initiators, in the order sent: each is for the
    initiator whose SPI it carries."""
    for data, _, port in sent:
        (host,) = [h for h in hosts if data[:8] in h.keymgr.sessions]
        host.keymgr.receive_ike(data, (B, port), host.addr, 0.0)
    sent.clear()


def _requests(hosts: list[Host]) -> list[bytes]:
    out = []
    for host in hosts:
        ((data, _),) = host.keymgr.datagrams_to_send()
        out.append(data)
    return out


def _run(body: Any) -> None:
    async def main() -> None:
        await body(asyncio.get_running_loop())

    asyncio.run(main())


def test_one_pass_of_several_ike_sas_is_one_write_and_nothing_leaves_before_it(
    tmp_path: Path,
) -> None:
    daemon, store, sent = _daemon(tmp_path)

    async def body(loop: asyncio.AbstractEventLoop) -> None:
        daemon._loop = loop
        assert daemon._commit is None
        # IKE_SA_INIT { HDR, SAi1, KEi, Ni } --> x3: nothing established, nothing written.
        hosts = _initiators(daemon, sent, 3)
        assert sent == [] and daemon._commit is not None  # sent by the pass, not at once
        await daemon._commit.drained()
        assert len(sent) == 3 and store.batches == []
        _answer(hosts, sent)
        # IKE_AUTH { HDR, SK { IDi, AUTH, SAi2, TSi, TSr } } --> x3, in one pass of the loop.
        store.hold = True
        auths = _requests(hosts)
        for data in auths:
            daemon.ike_received(data, (OUTER["a"], 4500), B_ADDR, nat_t=True)
        assert await loop.run_in_executor(None, store.entered.wait, 10)
        await asyncio.sleep(0.05)  # the loop runs on while the write waits
        assert sent == []  # no answer before the write that holds its IKE SA returned
        store.gate.set()
        await daemon._commit.drained()
        # <-- IKE_AUTH { HDR, SK { IDr, AUTH, SAr2, TSi, TSr } } x3, after one write.
        assert store.attempts == 1 and len(store.batches) == 1
        (batch,) = store.batches
        assert sum(kind == IKE_SA for kind, _ in batch) == 3
        assert sum(kind == CHILD_SA for kind, _ in batch) == 3
        # In the order the requests came: the first answer is the first initiator's.
        assert [data[:8] for data, _, _ in sent] == [data[:8] for data in auths]
        _answer(hosts, sent)
        assert all(len(h.keymgr.children) == 1 for h in hosts)
        assert daemon._commit.batches == 1

    _run(body)


def test_a_failed_write_sends_nothing_and_the_next_write_holds_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    daemon, store, sent = _daemon(tmp_path)

    async def body(loop: asyncio.AbstractEventLoop) -> None:
        daemon._loop = loop
        hosts = _initiators(daemon, sent, 2)
        assert daemon._commit is not None
        await daemon._commit.drained()
        _answer(hosts, sent)
        store.fail = True
        for data in _requests(hosts):
            daemon.ike_received(data, (OUTER["a"], 4500), B_ADDR, nat_t=True)
        await daemon._commit.drained()
        assert sent == [] and store.batches == [] and store.attempts == 1
        assert "cannot write: disk I/O error; holding back 2 datagram(s)" in caplog.text
        # The initiators retransmit; the answers come from the IKE SAs' caches, and the
        # write before them holds the records the failed one did not write.
        store.fail = False
        for host in hosts:
            host.keymgr.handle_timer(4.5)  # the first retransmission
        for data in _requests(hosts):
            daemon.ike_received(data, (OUTER["a"], 4500), B_ADDR, nat_t=True)
        await daemon._commit.drained()
        assert store.attempts == 2 and len(store.batches) == 1
        assert sum(kind == IKE_SA for kind, _ in store.batches[0]) == 2
        assert len(sent) == 2
        _answer(hosts, sent)
        assert all(len(h.keymgr.children) == 1 for h in hosts)
        assert len(store.load()[IKE_SA]) == 2

    _run(body)


def test_batches_are_written_one_at_a_time_in_order(tmp_path: Path) -> None:
    """What is asked for while a write is under way is the next batch, sent after it."""
    written: list[int] = []
    gate = threading.Event()

    class _Store(MemoryStore):
        def write(self, puts: Mapping[RecordKey, bytes], deletes: Iterable[RecordKey] = ()) -> None:
            assert gate.wait(10)
            written.extend(int(key) for _, key in puts)

    store = _Store()
    queue = [1, 2, 3]
    sent: list[int] = []

    persist = Persistence(store)

    def take() -> Batch:
        n = queue.pop(0)
        return Batch(persist, {("x", str(n)): b""}, set(), [(str(n).encode(), ("h", n))])

    async def body(loop: asyncio.AbstractEventLoop) -> None:
        commit = GroupCommit(loop, take, lambda d: sent.extend(p for _, (_, p) in d))
        commit.request()
        await asyncio.sleep(0.02)  # the first batch is on the writer thread
        commit.request()
        commit.request()  # one more pass, not two
        await asyncio.sleep(0.02)
        assert sent == [] and queue == [2, 3]
        gate.set()
        await commit.drained()
        assert written == [1, 2] and sent == [1, 2] and queue == [3]
        commit.close()

    _run(body)


def test_a_batch_that_cannot_be_made_sends_nothing_and_the_next_pass_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[int] = []
    persist = Persistence(MemoryStore())
    calls = [0]

    def take() -> Batch:
        calls[0] += 1
        if calls[0] == 1:
            raise ValueError("a snapshot that does not encode")
        return Batch(persist, {}, set(), [(b"x", ("h", calls[0]))])

    async def body(loop: asyncio.AbstractEventLoop) -> None:
        commit = GroupCommit(loop, take, lambda d: sent.extend(p for _, (_, p) in d))
        commit.request()
        await commit.drained()  # settles: a stop does not wait for ever
        assert sent == []
        assert "the batch could not be made (ValueError: a snapshot" in caplog.text
        commit.request()
        await commit.drained()
        assert sent == [2]
        commit.close()

    _run(body)
