"""What a failover test proves, read from a capture and from the echoes its traffic got.

A capture on the rig's bridge holds every frame any gateway or the client sent. From it:
every (SPI, ESP sequence number) must appear once (a sequence number sent twice under one
key reuses an AES-GCM nonce, the one failure that is about security); IKE_SA_INIT must be
the first IKE SA's only (a failover that renegotiates is no failover); and a gateway that
lost ownership must send nothing after it did. From the numbered datagrams the client sent
and the echoes it got back: the loss window, from the first datagram whose echo never came
to the last one, must stay within the lease TTL and a second.

The capture is read by tshark (ESP in UDP 4500, RFC 3948), so what is checked is what was
on the wire, not what the daemons say they did.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "IKE_SA_INIT",
    "EspPacket",
    "IkePacket",
    "LossWindow",
    "duplicate_sequences",
    "ike_sa_inits",
    "loss_window",
    "read_capture",
    "sent_after",
]

#: RFC 7296 §3.1, Exchange Type.
IKE_SA_INIT = 34
#: RFC 7296 §3.1, Flags: the Response bit.
RESPONSE_FLAG = 0x20

FIELDS = (
    "frame.time_epoch", "eth.src", "ip.src", "ip.dst", "esp.spi", "esp.sequence",
    "isakmp.ispi", "isakmp.rspi", "isakmp.exchangetype", "isakmp.flags",
)  # fmt: skip


@dataclass(frozen=True)
class EspPacket:
    time: float
    mac: str  # the sender's Ethernet address
    src: str
    dst: str
    spi: int
    seq: int


@dataclass(frozen=True)
class IkePacket:
    time: float
    mac: str
    src: str
    dst: str
    spi_i: str  # 16 hex digits
    spi_r: str
    exchange: int
    response: bool


def read_capture(capture: Path) -> tuple[list[EspPacket], list[IkePacket]]:
    """Every ESP and every IKE message in `capture` (pcap or pcapng), in capture order.
    What an ICMP error quotes (a gateway without the address's socket answering "port
    unreachable") was not sent by who sent the error, and is left out."""
    out = subprocess.run(
        ["tshark", "-r", str(capture), "-d", "udp.port==4500,udpencap",
         "-Y", "(esp || isakmp) && !icmp", "-T", "fields", "-E", "occurrence=f",
         *(a for f in FIELDS for a in ("-e", f))],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    esp: list[EspPacket] = []
    ike: list[IkePacket] = []
    for line in out.splitlines():
        when, mac, src, dst, spi, seq, spi_i, spi_r, exchange, flags = line.split("\t")
        if spi and seq:
            esp.append(EspPacket(float(when), mac, src, dst, int(spi, 16), int(seq)))
        elif spi_i and exchange:
            ike.append(
                IkePacket(float(when), mac, src, dst, spi_i.replace(":", ""),
                          spi_r.replace(":", ""), int(exchange, 0),
                          bool(int(flags, 0) & RESPONSE_FLAG))
            )  # fmt: skip
    return esp, ike


def duplicate_sequences(esp: Iterable[EspPacket]) -> dict[tuple[int, int], int]:
    """Each (SPI, sequence number) seen more than once, with how many times."""
    counts = Counter((p.spi, p.seq) for p in esp)
    return {key: n for key, n in counts.items() if n > 1}


def ike_sa_inits(ike: Iterable[IkePacket]) -> list[str]:
    """The initiator SPIs of the IKE_SA_INIT requests, each once, in order: a
    retransmitted request counts with its first, a new IKE SA as one more."""
    seen: list[str] = []
    for p in ike:
        if p.exchange == IKE_SA_INIT and not p.response and p.spi_i not in seen:
            seen.append(p.spi_i)
    return seen


def sent_after(
    esp: Iterable[EspPacket], ike: Iterable[IkePacket], mac: str, since: float
) -> list[EspPacket | IkePacket]:
    """What the host with Ethernet address `mac` sent, ESP or IKE, after `since`."""
    mac = mac.lower()
    found: list[EspPacket | IkePacket] = [p for p in esp if p.mac.lower() == mac]
    found += [p for p in ike if p.mac.lower() == mac]
    return sorted((p for p in found if p.time > since), key=lambda p: p.time)


@dataclass(frozen=True)
class LossWindow:
    lost: int  # datagrams whose echo never came
    first: float  # when the first of them was sent (0 with none lost)
    last: float  # when the last of them was sent
    interval: float  # between two datagrams

    @property
    def seconds(self) -> float:
        """From the first lost datagram to the last, counting the last's own interval."""
        return self.last - self.first + self.interval if self.lost else 0.0


def loss_window(sent: Mapping[int, float], echoed: Iterable[int], interval: float) -> LossWindow:
    """`sent`: each datagram's number and when it left; `echoed`: the numbers that came
    back. Datagrams lost at the very end (the echo still on its way when the sender
    stopped) are the sender's to exclude by waiting before it stops."""
    back = set(echoed)
    lost = sorted(sent[n] for n in sent if n not in back)
    if not lost:
        return LossWindow(0, 0.0, 0.0, interval)
    return LossWindow(len(lost), lost[0], lost[-1], interval)
