"""SADB benchmark: GETSPI+UPDATE pairs per second, inbound lookups per second and resident
memory per SA, with 1,000,000 SAs in one SADB."""

from __future__ import annotations

import gc
import ipaddress
import os
import random
import time
from typing import Any

from larval.pfkey import EncryptAlg, PfkeyMessage, SadbMsgType, SadbSa, SaState, SaType
from larval.pfkey.requests import getspi, keyed
from larval.sadb import Sadb

PEER, LOCAL = "192.0.2.1", "192.0.2.2"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run(n_sas: int = 1_000_000, n_lookups: int = 2_000_000) -> dict[str, Any]:
    gc.collect()
    sadb = Sadb()
    request = getspi(PEER, LOCAL)
    # A key manager builds its UPDATEs from parts it keeps: addresses, keys.
    template = keyed(
        SadbMsgType.UPDATE, 0, PEER, LOCAL, encrypt=EncryptAlg.AES_GCM_16, encrypt_key=bytes(20)
    )
    rest = template.extensions[1:]
    spis = []
    rss_before = _rss_bytes()
    start = time.perf_counter()
    for seq in range(n_sas):
        reply = sadb.handle(request, 0.0)[0].message
        sa_ext = reply.extensions[0]
        assert isinstance(sa_ext, SadbSa) and reply.errno == 0
        spi = sa_ext.spi
        update = PfkeyMessage(
            SadbMsgType.UPDATE,
            SaType.ESP,
            seq=seq,
            extensions=(SadbSa(spi, 32, SaState.MATURE, 0, EncryptAlg.AES_GCM_16), *rest),
        )
        done = sadb.handle(update, 0.0)[0].message
        assert done.errno == 0
        spis.append(spi)
    pairs_elapsed = time.perf_counter() - start
    gc.collect()
    rss_after = _rss_bytes()
    # The SPI list is the benchmark's, not the SADB's: 8 bytes a slot + 32 an int.
    bytes_per_sa = (rss_after - rss_before) / n_sas - 40

    dst = ipaddress.ip_address(LOCAL).packed
    probe = random.Random(1).choices(spis, k=n_lookups)
    lookup = sadb.lookup_esp  # what the dataplane calls for each ESP packet
    start = time.perf_counter()
    for spi in probe:
        lookup(spi, dst)
    lookups_elapsed = time.perf_counter() - start
    assert sadb.lookup_inbound(spis[0], dst) is not None

    return {
        "sas": n_sas,
        "getspi_update_per_s": round(n_sas / pairs_elapsed),
        "lookups_per_s": round(n_lookups / lookups_elapsed),
        "bytes_per_sa": round(bytes_per_sa),
        "targets": {
            "getspi_update_per_s": 100_000,
            "lookups_per_s": 1_000_000,
            "bytes_per_sa": 1024,
        },
        "note": (
            "PF_KEY messages as objects (no socket, no encode/decode); each pair includes "
            "building its UPDATE; one thread; resident memory"
        ),
    }
