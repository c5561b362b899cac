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

from larval.keymgr.pfkey_side import getspi_bytes, getspi_reply_spi
from larval.pfkey import (
    EncryptAlg,
    PfkeyMessage,
    SadbMsgType,
    SadbSa,
    SaState,
    SaType,
    decode,
    decode_header,
)
from larval.pfkey.requests import keyed
from larval.sadb import GcFreezer, Sadb

PEER, LOCAL = "192.0.2.1", "192.0.2.2"

GOALS = {"getspi_update_per_s": 100_000, "lookups_per_s": 1_000_000, "bytes_per_sa": 1024}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run(n_sas: int = 1_000_000, n_lookups: int = 2_000_000) -> dict[str, Any]:
    gc.collect()
    sadb = Sadb(gc_freezer=GcFreezer())  # as the daemon's stack has it
    handle = sadb.handle
    # A key manager builds its requests from parts it keeps: addresses, keys. The GETSPI
    # and the SPI of its answer go through bytes as `KeyManager._getspi` has them.
    peer, local = ipaddress.ip_address(PEER), ipaddress.ip_address(LOCAL)
    template = keyed(
        SadbMsgType.UPDATE, 0, PEER, LOCAL, encrypt=EncryptAlg.AES_GCM_16, encrypt_key=bytes(20)
    )
    rest = template.extensions[1:]
    # The enum members the loop names, bound once (an attribute of an enum class is a
    # lookup of about 0.2 us on Python 3.11).
    update_type, esp, mature, gcm = (
        SadbMsgType.UPDATE,
        SaType.ESP,
        SaState.MATURE,
        EncryptAlg.AES_GCM_16,
    )
    spis = []
    rss_before = _rss_bytes()
    start, start_cpu = time.perf_counter(), time.process_time()
    for seq in range(n_sas):
        # Key manager -> stack: the GETSPI as bytes; the stack decodes it, answers in
        # bytes, and the key manager reads the SPI of the answer.
        wire = getspi_bytes(peer, local, seq=seq, pid=0)
        answer = handle(decode(wire), 0.0)[0].message.encode()
        spi = getspi_reply_spi(answer)
        assert spi is not None
        update = PfkeyMessage(
            update_type, esp, seq=seq, extensions=(SadbSa(spi, 32, mature, 0, gcm), *rest)
        ).encode()
        # The answer to an UPDATE says what the key manager needs in its header.
        done = decode_header(handle(decode(update), 0.0)[0].message.encode())
        assert done.errno == 0
        spis.append(spi)
    pairs_elapsed = time.perf_counter() - start
    pairs_cpu = time.process_time() - start_cpu
    gc.collect()
    rss_after = _rss_bytes()
    # The SPI list is the benchmark's, not the SADB's: 8 bytes a slot + 32 an int.
    bytes_per_sa = (rss_after - rss_before) / n_sas - 40

    dst = ipaddress.ip_address(LOCAL).packed
    probe = random.Random(1).choices(spis, k=n_lookups)
    lookup = sadb.lookup_esp  # what the dataplane calls for each ESP packet
    start, start_cpu = time.perf_counter(), time.process_time()
    for spi in probe:
        lookup(spi, dst)
    lookups_elapsed = time.perf_counter() - start
    lookups_cpu = time.process_time() - start_cpu
    assert sadb.lookup_inbound(spis[0], dst) is not None

    # One aging pass with nothing due, as the stack runs one a second: only the SAs
    # whose deadline has come are looked at (`larval.sadb.expiry`). The LARVAL SAs'
    # entries (90 s) are still on the wheel, so this second has none.
    start, start_cpu = time.perf_counter(), time.process_time()
    expired = sadb.age(1.0)
    age_elapsed = time.perf_counter() - start
    age_cpu = time.process_time() - start_cpu
    assert expired == []

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
        "age_pass_ms": {"wall": round(age_elapsed * 1e3, 3), "cpu": round(age_cpu * 1e3, 3)},
        "note": (
            "each pair: GETSPI and UPDATE encoded, decoded by the stack, handled, the "
            "answers encoded and read as the key manager reads them (the GETSPI's SPI, the "
            "UPDATE's header), no socket; one thread; lookups are the dataplane's "
            "lookup_esp, one at a time (no batching); GC freezer on, as in the daemon; "
            "age_pass_ms: one Sadb.age pass with nothing due; "
            "ratio = figure / goal (>= 1 met for rates, <= 1 for bytes_per_sa); "
            "resident memory growth over the run. 2 shared cores: compare within one run"
        ),
    }
