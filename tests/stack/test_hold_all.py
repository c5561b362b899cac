"""`_hold_all`: the locks of a batch spread over many SAs taken without waiting in a
cycle, each once, whether they are free, repeated, or busy in another thread."""

from __future__ import annotations

import threading

from larval.stack.packet_path import _hold_all


def test_free_locks_are_taken_in_the_order_given() -> None:
    locks = [threading.Lock() for _ in range(5)]
    held = _hold_all(locks)
    assert held == locks
    assert all(lock.locked() for lock in locks)
    for lock in held:
        lock.release()
    assert not any(lock.locked() for lock in locks)


def test_a_lock_given_twice_is_taken_and_returned_once() -> None:
    a, b = threading.Lock(), threading.Lock()
    held = _hold_all([a, b, a])
    assert sorted(map(id, held)) == sorted([id(a), id(b)])
    assert a.locked() and b.locked()
    for lock in held:
        lock.release()  # a second release of one would raise
    assert not a.locked() and not b.locked()


def test_a_busy_lock_is_waited_for_in_the_one_order() -> None:
    locks = [threading.Lock() for _ in range(4)]
    busy = locks[2]
    busy.acquire()
    done = threading.Event()
    got: list[list[threading.Lock]] = []

    def take() -> None:
        got.append(_hold_all(list(locks)))
        done.set()

    worker = threading.Thread(target=take)
    worker.start()
    assert not done.wait(0.05)  # it cannot finish while `busy` is held
    busy.release()
    worker.join(5)
    assert done.is_set()
    held = got[0]
    assert held == sorted(locks, key=id)
    assert all(lock.locked() for lock in locks)
    for lock in held:
        lock.release()
