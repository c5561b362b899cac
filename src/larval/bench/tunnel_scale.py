"""`bench tunnel --sas N` (root): throughput through the larval pair of `bench tunnel`
with N CHILD_SAs installed, beside the same pair with one, in the same run.

Two pairs of larval stacks (`larval.bench.tunnel._LarvalPair`, each end in a namespace,
ESP in UDP 4500 over a veth) protect 10.1.0.0/16 ↔ 10.2.0.0/16. The one-SA pair gets one
CHILD_SA (an SA each way) for the whole of both networks; the scale pair gets N, the
k-th for 10.1.0.0/16 ↔ the k-th address from 10.2.0.1 (/32), both directions added to
both stacks through their PF_KEY sockets with the inner selectors
(``SADB_X_EXT_ADDRESS_INNER_SRC``/``_DST``) a key manager gives them, each SA its own
key. So each outbound packet's SA is chosen among N between the same two gateways by
its inner destination (RFC 4301 §4.4.2: the SAD entry whose selectors match).

Traffic (`larval.bench.udp_spread`): one sender in a's namespace sends 1300-byte UDP
datagrams round-robin to the same N destination addresses through both pairs, as fast
as one socket sends; b's namespace takes the whole of 10.2.0.0/16 as local (``ip route
add local``) and one receiver counts what arrives. So every one of the N SAs carries
packets, and after the runs the scale pair's b is asked (PF_KEY GET) how many of its N
inbound SAs did (``sas_with_traffic``). A paced pass first gives each of the N SAs one
packet, not measured (``sas_warmed`` of them got it): the stack makes an SA's ESP context
on its first packet, which the runs would otherwise measure N times over. Then the two
pairs' runs alternate, the figure is the median; CPU is both stacks' per ESP packet sent.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Any

from larval.bench.tunnel import OUTER, _LarvalPair
from larval.bench.udp_spread import SIZE
from larval.errors import LarvalError
from larval.net.pfkey_client import PfkeyClient
from larval.pfkey import EncryptAlg, ExtType, SadbAddress, SadbLifetime, SadbMsgType
from larval.pfkey.requests import by_spi, keyed

NETS = {"a": "10.1.0.0/16", "b": "10.2.0.0/16"}
SENDER = "10.1.0.1"
FIRST = "10.2.0.1"  # the first SA's inner destination; the k-th is FIRST + k
PORT = 5201
#: Destinations in 10.2.0.0/16 from FIRST, short of its broadcast address.
MAX_SAS = 65_533
#: The SPIs of the k-th CHILD_SA: a to b, b to a.
SPI_AB, SPI_BA = 0x0100_0000, 0x0200_0000
WARM_RATE = 2000  # packets a second of the pass before the runs: few enough to lose none
WARM_SLACK = 30.0  # seconds the pass may run past count / WARM_RATE on a loaded machine
GOAL = 0.9  # throughput with N SAs over that with one (issue 15 §4)


class ScaleError(LarvalError):
    """The stacks refused an SA, or a traffic process failed."""


def _check_sas(n_sas: int) -> None:
    if not 1 <= n_sas <= MAX_SAS:
        raise ValueError(f"--sas must be from 1 to {MAX_SAS} (one inner address each), not {n_sas}")


def _selectors(k: int | None) -> tuple[tuple[str, int], tuple[str, int]]:
    """(a's side, b's side) of CHILD_SA `k` as (address, prefix); None: the one SA for
    both whole networks."""
    if k is None:
        return ("10.1.0.0", 16), ("10.2.0.0", 16)
    return ("10.1.0.0", 16), (str(IPv4Address(FIRST) + k), 32)


def _install(pair: _LarvalPair, count: int | None) -> float:
    """Add `count` CHILD_SAs (None: the one for both networks) to both stacks of `pair`,
    both directions each; the seconds it took."""
    ks: list[int | None] = [None] if count is None else list(range(count))
    start = time.perf_counter()
    clients = [PfkeyClient(str(pair.workdir / f"{me}.pfkey")) for me in "ab"]
    try:
        for index, k in enumerate(ks):
            near, far = _selectors(k)
            for spi, src, dst, inner_src, inner_dst in (
                (SPI_AB + index, OUTER["a"], OUTER["b"], near, far),
                (SPI_BA + index, OUTER["b"], OUTER["a"], far, near),
            ):
                message = keyed(
                    SadbMsgType.ADD, spi, src, dst,
                    encrypt=EncryptAlg.AES_GCM_16, encrypt_key=os.urandom(20),
                    extra=(SadbAddress(ExtType.ADDRESS_PROXY, ip_address(inner_src[0]),
                                       prefixlen=inner_src[1]),
                           SadbAddress(ExtType.X_ADDRESS_INNER_DST, ip_address(inner_dst[0]),
                                       prefixlen=inner_dst[1])),
                )  # fmt: skip
                for client in clients:
                    reply = client.request(message)
                    if reply.errno:
                        raise ScaleError(f"ADD of SPI {spi:#x} refused: errno {reply.errno}")
    finally:
        for client in clients:
            client.close()
    return time.perf_counter() - start


def _with_traffic(pair: _LarvalPair, count: int) -> int:
    """How many of the `count` a-to-b SAs b has seen bytes on (PF_KEY GET)."""
    seen = 0
    with PfkeyClient(str(pair.workdir / "b.pfkey")) as client:
        for index in range(count):
            reply = client.request(by_spi(SadbMsgType.GET, SPI_AB + index, OUTER["b"], OUTER["a"]))
            current = [
                e
                for e in reply.extensions
                if isinstance(e, SadbLifetime) and e.ext_type == ExtType.LIFETIME_CURRENT
            ]
            if not reply.errno and current and current[0].bytes > 0:
                seen += 1
    return seen


def _local_routes(pair: _LarvalPair) -> None:
    """Each end takes the whole of its protected network as its own addresses, so the
    sender can bind 10.1.0.1 and the receiver gets every destination of 10.2.0.0/16."""
    for me, ns in (("a", pair.a), ("b", pair.b)):
        ns.run(["ip", "route", "add", "local", NETS[me], "dev", "lo"])


def _traffic(pair: _LarvalPair, count: int, seconds: float) -> dict[str, Any]:
    """One run of the spread UDP traffic through `pair`: what b received (Mbit/s of
    payload, packets per second) and both stacks' CPU per ESP packet a sent."""
    module = [sys.executable, "-m", "larval.bench.udp_spread"]
    sink = pair.b.popen(
        [*module, "sink", "--port", str(PORT), "--seconds", str(seconds)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(0.5)
        cpu, sent = pair._cpu(), pair._sent()
        command = [*module, "send", "--src", SENDER, "--first", FIRST, "--count", str(count),
                   "--port", str(PORT), "--seconds", str(seconds + 1)]  # fmt: skip
        sender = json.loads(pair.a.run(command, timeout=seconds + 60))
        cpu, sent = pair._cpu() - cpu, pair._sent() - sent
        out, _ = sink.communicate(timeout=30)
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
    got = json.loads(out)
    span = got["seconds"] or seconds
    return {
        "mbps": round(got["bytes"] * 8 / span / 1e6, 1),
        "pps": round(got["packets"] / span),
        "sent_pps": round(sender["sent"] / (seconds + 1)),
        "cpu_us_per_packet": round(cpu * 1e6 / sent, 2) if sent > 0 else None,
    }


def _warm(pair: _LarvalPair, count: int) -> float:
    """One packet to each of the `count` destinations at `WARM_RATE`; the seconds.

    The pass ends when `count` packets are sent, not when `count / WARM_RATE` seconds
    are up: on a loaded machine the pacing's sleeps run long, and a pass cut by the
    clock left its last destinations without a packet."""
    seconds = count / WARM_RATE
    command = [sys.executable, "-m", "larval.bench.udp_spread", "send", "--src", SENDER,
               "--first", FIRST, "--count", str(count), "--port", str(PORT),
               "--seconds", str(seconds + WARM_SLACK), "--rate", str(WARM_RATE),
               "--packets", str(count)]  # fmt: skip
    start = time.monotonic()
    pair.a.run(command, timeout=seconds + WARM_SLACK + 60)
    time.sleep(0.5)  # the last packets through
    return time.monotonic() - start


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r[key] is not None]
    return round(statistics.median(values), 2) if values else None


def run(n_sas: int = 10_000, seconds: int = 5, runs: int = 3) -> dict[str, Any]:
    """The one-SA pair and the `n_sas` pair, their runs alternated."""
    _check_sas(n_sas)
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return {"skipped": "needs root, network namespaces and TUN"}
    pairs: dict[str, _LarvalPair] = {}
    results: dict[str, list[dict[str, Any]]] = {"one": [], "many": []}
    with tempfile.TemporaryDirectory(prefix="larval-bench-") as tmp:
        try:
            for which in ("one", "many"):
                (Path(tmp) / which).mkdir()
                pairs[which] = _LarvalPair(Path(tmp) / which, nets=NETS, keyed=False)
                _local_routes(pairs[which])
            _install(pairs["one"], None)
            install_s = _install(pairs["many"], n_sas)
            # An SA's ESP context (its cipher's key schedule) is made on its first
            # packet: a paced pass gives each SA its first before the runs measure.
            warm_s = _warm(pairs["many"], n_sas)
            warmed = _with_traffic(pairs["many"], n_sas)
            for _ in range(runs):
                for which, pair in pairs.items():
                    results[which].append(_traffic(pair, n_sas, seconds))
            carrying = _with_traffic(pairs["many"], n_sas)
        finally:
            for pair in pairs.values():
                pair.delete()
    one, many = results["one"], results["many"]
    one_mbps, mbps = _median(one, "mbps"), _median(many, "mbps")
    return {
        "sas": n_sas,
        "mbps": mbps,
        "one_sa_mbps": one_mbps,
        "ratio": round(mbps / one_mbps, 2) if mbps is not None and one_mbps else None,
        "pps": _median(many, "pps"),
        "one_sa_pps": _median(one, "pps"),
        "cpu_us_per_packet": _median(many, "cpu_us_per_packet"),
        "one_sa_cpu_us_per_packet": _median(one, "cpu_us_per_packet"),
        "sas_warmed": warmed,
        "warm_s": round(warm_s, 1),
        "sas_with_traffic": carrying,
        "install_s": round(install_s, 2),
        "install_sas_per_s": round(4 * n_sas / install_s) if install_s > 0 else None,
        "runs": results,
        "target": {"ratio": GOAL},
        "note": (
            f"{n_sas} CHILD_SAs (an SA each way, its own key, inner selectors "
            "10.1.0.0/16 <-> one /32 of 10.2.0.0/16) in both larval stacks, beside a pair "
            "with one CHILD_SA for both networks; aes128gcm16, ESP in UDP 4500; one sender "
            f"round-robin over the {n_sas} destinations, {SIZE}-byte UDP payloads as fast "
            f"as one socket sends, {seconds} s, median of {runs}, runs alternated, after a "
            f"pass at {WARM_RATE} packets/s giving each SA its first packet (its ESP "
            "context made; sas_warmed: inbound SAs of b with bytes after it); mbps and "
            "pps: payload the receiver got; ratio: mbps with N SAs / with one (goal >= "
            f"{GOAL}); sas_with_traffic: inbound SAs of b with bytes at the end; install: "
            "PF_KEY ADDs to both stacks, SAs/s; cpu_us_per_packet: both stacks' CPU per "
            "ESP packet sent"
        ),
    }
