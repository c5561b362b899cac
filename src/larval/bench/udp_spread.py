"""`python -m larval.bench.udp_spread send|sink ...`: UDP traffic spread over many
destination addresses, and its receiver: what `bench tunnel --sas` sends through a
tunnel of many CHILD_SAs, one inner destination address for each, so that every SA
carries packets.

``send`` cycles over ``--count`` consecutive addresses from ``--first``, one datagram
of ``--size`` bytes of payload to each in turn, as fast as one socket sends (or
``--rate`` a second), for ``--seconds``, or until ``--packets`` are sent. ``sink``
receives on ``--port`` of every address of its namespace (the bench routes the whole
inner network to the loopback as local, ``ip route add local``), and prints one JSON
line: the packets and payload bytes received in the ``--seconds`` from its first
packet, and its own CPU time.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import json
import socket
import sys
import time
from typing import Any

#: Payload bytes of each datagram: an inner IPv4 packet of 1328 bytes, under the TUN's
#: MTU of 1400 as larval's, libipsec's and wireguard-go's in `bench tunnel`.
SIZE = 1300


def destinations(first: str, count: int) -> list[str]:
    """`count` consecutive addresses from `first`."""
    if count < 1:
        raise ValueError("count must be at least 1")
    start = ipaddress.IPv4Address(first)
    return [str(start + k) for k in range(count)]


def send(
    src: str,
    first: str,
    count: int,
    port: int,
    seconds: float,
    size: int,
    rate: float = 0,
    packets: int = 0,
) -> dict[str, Any]:
    """Send round-robin to the `count` destinations for `seconds`, as fast as the socket
    takes them or, given a `rate`, that many a second; given `packets`, stop once that
    many were sent (or refused), however long the pacing's sleeps took; what was sent."""
    targets = [(address, port) for address in destinations(first, count)]
    payload = bytes(size)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((src, 0))
    sent = refused = 0
    cpu0 = time.process_time()
    deadline = time.monotonic() + seconds
    sendto = sock.sendto
    cycle = itertools.cycle(targets)
    burst = 256 if not rate else max(1, int(rate / 100))  # paced: 100 bursts a second
    start = time.monotonic()
    try:
        while (now := time.monotonic()) < deadline:
            left = packets - sent - refused if packets else burst
            if left <= 0:
                break
            if rate and sent + refused > (now - start) * rate:
                time.sleep(burst / rate)
                continue
            for target in itertools.islice(cycle, min(burst, left)):
                try:
                    sendto(payload, target)
                    sent += 1
                except OSError:  # ENOBUFS from a full TUN queue: a drop before the tunnel
                    refused += 1
    finally:
        sock.close()
    return {"sent": sent, "refused": refused, "cpu_s": round(time.process_time() - cpu0, 3)}


def sink(port: int, seconds: float, wait: float) -> dict[str, Any]:
    """Receive for `seconds` from the first datagram (given up after `wait` without
    one); the packets and payload bytes received, and the span they came in."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("0.0.0.0", port))
    buf = bytearray(65536)
    packets = octets = 0
    try:
        sock.settimeout(wait)
        try:
            octets = sock.recv_into(buf)
        except TimeoutError:
            return {"packets": 0, "bytes": 0, "seconds": 0.0, "cpu_s": 0.0}
        packets = 1
        cpu0 = time.process_time()
        start = time.monotonic()
        end = start + seconds
        sock.settimeout(0.2)
        recv_into = sock.recv_into
        while (now := time.monotonic()) < end:
            try:
                octets += recv_into(buf)
                packets += 1
            except TimeoutError:
                continue
        return {
            "packets": packets,
            "bytes": octets,
            "seconds": round(now - start, 3),
            "cpu_s": round(time.process_time() - cpu0, 3),
        }
    finally:
        sock.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m larval.bench.udp_spread", description=__doc__)
    sub = parser.add_subparsers(dest="role", required=True)
    s = sub.add_parser("send")
    s.add_argument("--src", required=True)
    s.add_argument("--first", required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--seconds", type=float, required=True)
    s.add_argument("--size", type=int, default=SIZE)
    s.add_argument("--rate", type=float, default=0, help="packets a second (0: at once)")
    s.add_argument("--packets", type=int, default=0, help="stop after this many (0: no limit)")
    r = sub.add_parser("sink")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--seconds", type=float, required=True)
    r.add_argument("--wait", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.role == "send":
        result = send(
            args.src, args.first, args.count, args.port, args.seconds, args.size, args.rate,
            args.packets,
        )  # fmt: skip
    else:
        result = sink(args.port, args.seconds, args.wait)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
