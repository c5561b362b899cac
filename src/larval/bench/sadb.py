"""SADB benchmark: GETSPI+UPDATE pairs per second through PF_KEY bytes, inbound lookups
per second (one `lookup_esp` call each), resident memory per SA, and the time of one
aging pass with nothing due, with 1,000,000 SAs in one SADB.

Each figure is printed beside its goal (issue 15) as a ratio, figure / goal: at least 1
is met for the rates, at most 1 for the bytes per SA. Each rate is given by wall-clock
time and by the process's CPU time: on a shared machine the second moves less.
"""

from __future__ import annotations

import gc
import ipaddress
import os
import random
import time
from typing import Any

from larval.crypto.proposals import EspProposal
from larval.daemon import gc_policy
from larval.keymgr.pfkey_side import (
    ChildKeys,
    Lifetimes,
    getspi_bytes,
    getspi_reply_spi,
    keyed_sa_bytes,
)
from larval.node import Node
from larval.pfkey import EncryptAlg, SadbMsgType, decode_header
from larval.sadb import GcFreezer
from larval.stack import Stack

PEER, LOCAL = "192.0.2.1", "192.0.2.2"

GOALS = {"getspi_update_per_s": 100_000, "lookups_per_s": 1_000_000, "bytes_per_sa": 1024}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run(n_sas: int = 1_000_000, n_lookups: int = 2_000_000) -> dict[str, Any]:
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    try:
        return _run(n_sas, n_lookups)
    finally:
        # The collector as it was, for what runs in this process next.
        gc.set_threshold(*thresholds)
        if not frozen:
            gc.unfreeze()
            # The SADB is garbage now, in cycles (each SA and the expiry wheel, the
            # stack and its node), and what was frozen is in the oldest generation: it
            # is collected here, not in the middle of what this process measures next
            # (`bench all`: a second or more at 10^6 SAs).
            gc.collect()


def _run(n_sas: int, n_lookups: int) -> dict[str, Any]:
    # The stack as the daemon has it, and the port its key manager talks through: the
    # bytes of each request and answer take the path a key manager's take in `larval run`,
    # with the collector settled as `larval run` and `larval stack` settle it once they
    # have started (`larval.daemon.gc_policy`).
    stack = Stack(gc_freezer=GcFreezer())
    node = Node([], stack=stack)
    port = node.pfkey
    gc_policy.settle()
    sadb = stack.sadb
    peer, local = ipaddress.ip_address(PEER), ipaddress.ip_address(LOCAL)
    # What `KeyManager._install` UPDATEs an inbound SA with: AES-GCM-128 (a 20-byte key
    # with its salt), and a CHILD_SA's soft and hard lifetimes (strongSwan's defaults,
    # the soft one less the largest jitter).
    proposal = EspProposal(EncryptAlg.AES_GCM_16, 128)
    lifetimes = Lifetimes(soft_addtime=3420, hard_addtime=3960)
    encrypt_key = bytes(range(20))
    update_type = int(SadbMsgType.UPDATE)
    spis = []
    # The key manager's clock moves on by the goal's time per pair, as a clock would at
    # that rate: the LARVAL SAs of each second share a bucket of the expiry wheel, and
    # the wheel's buckets come and go as they would in `larval run`.
    keymgr = node.keymgr
    tick = 1 / GOALS["getspi_update_per_s"]
    rss_before = _rss_bytes()
    start, start_cpu = time.perf_counter(), time.process_time()
    for seq in range(n_sas):
        keymgr.now = seq * tick
        # Key manager -> stack: the GETSPI as `KeyManager._getspi` sends it, and the SPI
        # read from the answer as it reads it.
        spi = getspi_reply_spi(port(getspi_bytes(peer, local, seq=seq, pid=0))[0])
        assert spi is not None
        # The UPDATE as `KeyManager._install` builds it; its answer says what the key
        # manager needs in its header (`KeyManager._refused`).
        keys = ChildKeys(spi, peer, local, proposal, encrypt_key, b"")
        update = keyed_sa_bytes(update_type, keys, None, lifetimes, inbound=True, seq=seq,
                                pid=0)  # fmt: skip
        for answer in port(update):
            assert decode_header(answer).errno == 0
        spis.append(spi)
    pairs_elapsed = time.perf_counter() - start
    pairs_cpu = time.process_time() - start_cpu
    gc.collect()
    rss_after = _rss_bytes()
    # The SPI list is the benchmark's, not the SADB's: 8 bytes a slot + 32 an int.
    bytes_per_sa = (rss_after - rss_before) / n_sas - 40

    dst = ipaddress.ip_address(LOCAL).packed
    chosen = random.Random(1).choices(spis, k=n_lookups)
    # Each SPI as the dataplane has it: the 4 bytes of an ESP header, read into an int
    # (`PacketPath.inbound`, `esp_spis`) just before its lookup.
    fields = [spi.to_bytes(4, "big") for spi in chosen]
    lookup = sadb.lookup_esp  # what the dataplane calls for each ESP packet
    from_bytes = int.from_bytes
    start, start_cpu = time.perf_counter(), time.process_time()
    for field in fields:
        lookup(from_bytes(field, "big"), dst)
    lookups_elapsed = time.perf_counter() - start
    lookups_cpu = time.process_time() - start_cpu
    # The same lookups given the ints the GETSPI answers were read into, kept since: each
    # is read from memory where it was made, between the SAs, as no packet's SPI is.
    start = time.perf_counter()
    for spi in chosen:
        lookup(spi, dst)
    kept_elapsed = time.perf_counter() - start
    assert sadb.lookup_inbound(spis[0], dst) is not None
    del fields, chosen

    # One aging pass with nothing due, as the stack runs one a second: only the SAs
    # whose deadline has come are looked at (`larval.sadb.expiry`). Every SA's entry is
    # at its larval deadline (90 s after its GETSPI) or later: this second has none.
    start, start_cpu = time.perf_counter(), time.process_time()
    expired = sadb.age(n_sas * tick + 1.0)
    age_elapsed = time.perf_counter() - start
    age_cpu = time.process_time() - start_cpu
    assert expired == []

    # The passes of the seconds the LARVAL entries come in: an UPDATE leaves its SA's
    # wheel entry at the larval deadline, to come early (`ExpiryWheel.reschedule_at`),
    # so each pair costs one evaluation there too, after the pairs' own time.
    first, last = sadb.larval_lifetime, int(n_sas * tick) + sadb.larval_lifetime + 1
    start_cpu = time.process_time()
    for second in range(first, last + 1):
        assert sadb.age(float(second)) == []
    larval_cpu = time.process_time() - start_cpu

    figures = {
        "getspi_update_per_s": round(n_sas / pairs_elapsed),
        "lookups_per_s": round(n_lookups / lookups_elapsed),
        "bytes_per_sa": round(bytes_per_sa),
    }
    return {
        "sas": n_sas,
        **figures,
        "goals": GOALS,
        "ratio_to_goal": {k: round(v / GOALS[k], 2) for k, v in figures.items()},
        "by_cpu_time": {
            "getspi_update_per_s": round(n_sas / pairs_cpu),
            "lookups_per_s": round(n_lookups / lookups_cpu),
        },
        "lookups_per_s_of_kept_ints": round(n_lookups / kept_elapsed),
        "age_pass_ms": {"wall": round(age_elapsed * 1e3, 3), "cpu": round(age_cpu * 1e3, 3)},
        "larval_deadline_cpu_us_per_sa": round(larval_cpu / n_sas * 1e6, 3),
        "note": (
            "each pair: GETSPI and UPDATE built as the key manager builds them "
            "(getspi_bytes, keyed_sa_bytes with lifetimes), through a Node's PF_KEY port "
            "into the stack, the answers read as the key manager reads them (the GETSPI's "
            "SPI, the UPDATE's header), no socket; one thread; the key manager's clock moves on "
            "10 us per pair (the goal's rate), so the expiry wheel's buckets fill and empty "
            "as in a daemon; lookups are the dataplane's "
            "lookup_esp, one at a time (no batching), each SPI read from the 4 bytes of an "
            "ESP header as the dataplane reads it; lookups_per_s_of_kept_ints: the same "
            "lookups given the ints read from the GETSPI answers, kept since, each read "
            "cold from among the SAs; GC freezer on and the collector "
            "settled (gc_policy.settle), as in the daemon; "
            "age_pass_ms: one Sadb.age pass with nothing due; "
            "larval_deadline_cpu_us_per_sa: the passes of the seconds the SAs' entries "
            "come in after the larval lifetime (each SA evaluated once and rescheduled), "
            "CPU per SA, not in the pairs' figure; "
            "ratio = figure / goal (>= 1 met for rates, <= 1 for bytes_per_sa); "
            "resident memory growth over the run. 2 shared cores: compare within one run"
        ),
    }
