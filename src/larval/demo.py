"""`larval demo`: two hosts with IKE between them (`larval.demo_ladder`), with
`--remote-access` a notebook dialling its home gateway (`larval.demo_remote_access`), or
with `--stack-only` the stack alone, narrated.

In the stack-only run, a key manager and the stack's dataplane meet in the SADB, joined
by PF_KEY messages as bytes. First the ordinary path: GETSPI makes a LARVAL SA, an ESP
packet for it arrives and is held, UPDATE matures the SA and the held packet is
released. Then the seed's race, forced: the packet finds the SA LARVAL, UPDATE completes
before the packet is held, and the packet is processed at once instead of tripping an
assertion.
"""

from __future__ import annotations

import ipaddress
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from larval.errors import LarvalError
from larval.pfkey import EncryptAlg, ExtType, PfkeyMessage, SadbMsgType, SadbSa, decode
from larval.pfkey.requests import getspi, keyed
from larval.sadb import HoldResult, PfkeyReply, Sadb, SecurityAssociation

INITIATOR, RESPONDER = "192.0.2.1", "192.0.2.2"
RESPONDER_B = ipaddress.ip_address(RESPONDER).packed
DEMO_KEY = bytes(range(20))  # AES-128-GCM key and salt, for the demo only


@dataclass
class DemoRun:
    lines: list[str] = field(default_factory=list)
    delivered: list[tuple[int, int]] = field(default_factory=list)  # (spi, ESP seq)
    sent: int = 0
    counters: dict[str, int] = field(default_factory=dict)

    def say(self, text: str) -> None:
        self.lines.append(text)


def _esp_packet(spi: int, seq: int) -> bytes:
    """An ESP packet's header (RFC 4303 §2) and a stand-in for its ciphertext."""
    return struct.pack("!II", spi, seq) + b"\x00" * 48


class _KeyManager:
    """Sends PF_KEY requests to the stack as bytes and reads the replies as bytes."""

    def __init__(self, sadb: Sadb, run: DemoRun, clock: Callable[[], float]) -> None:
        self.sadb, self.run, self.clock = sadb, run, clock
        self.seq = 0

    def request(self, msg: PfkeyMessage) -> PfkeyMessage:
        wire = msg.encode()
        name = SadbMsgType(msg.msg_type).name
        self.run.say(f"  key manager -> stack  PF_KEY {name} ({len(wire)} bytes)")
        replies: list[PfkeyReply] = self.sadb.handle(decode(wire), self.clock())
        reply = decode(replies[0].message.encode())
        self.run.say(
            f"  stack -> key manager  {name} reply, errno {reply.errno}, "
            f"sent to {replies[0].audience.value}"
        )
        return reply

    def getspi(self) -> int:
        self.seq += 1
        reply = self.request(getspi(INITIATOR, RESPONDER, seq=self.seq))
        sa_ext = reply.find(ExtType.SA)
        assert isinstance(sa_ext, SadbSa)
        return sa_ext.spi

    def update(self, spi: int) -> None:
        self.seq += 1
        msg = keyed(
            SadbMsgType.UPDATE, spi, INITIATOR, RESPONDER, seq=self.seq,
            encrypt=EncryptAlg.AES_GCM_16, encrypt_key=DEMO_KEY,
        )  # fmt: skip
        self.request(msg)


def run_demo() -> DemoRun:
    run = DemoRun()
    now = [1000.0]

    def process(sa: SecurityAssociation, packet: bytes) -> None:
        spi, seq = struct.unpack_from("!II", packet)
        run.delivered.append((spi, seq))
        run.say(f"  dataplane: ESP seq {seq} for SPI {spi:#010x} processed with the SA's keys")

    sadb = Sadb(on_inbound_release=process)
    km = _KeyManager(sadb, run, lambda: now[0])

    def arrive(spi: int, seq: int) -> HoldResult | None:
        """The inbound path of the dataplane: SPI lookup, then hold or process."""
        packet = _esp_packet(spi, seq)
        run.sent += 1
        sa = sadb.lookup_inbound(spi, RESPONDER_B)
        assert sa is not None
        if not sa.ready:
            result = sadb.hold_inbound(sa, packet)
            if result is HoldResult.HELD:
                run.say(f"  dataplane: ESP seq {seq} for SPI {spi:#010x} held on the LARVAL SA")
                return result
        process(sa, packet)
        return None

    run.say("1. The ordinary path")
    run.say("  IKE Quick Mode #1 arrives; the responder reserves an inbound SPI.")
    spi = km.getspi()
    run.say(f"  SA {spi:#010x} is LARVAL: an SPI, no keys yet.")
    run.say("  The initiator has Quick Mode #2 and sends ESP before #3 reaches us.")
    arrive(spi, 1)
    now[0] += 0.01
    run.say("  Quick Mode #3 arrives; key management fills the SA in.")
    km.update(spi)
    run.say(f"  SA {spi:#010x} is MATURE; the held packet went through above.")

    run.say("")
    run.say("2. The seed's race, forced")
    spi2 = km.getspi()
    sa2 = sadb.lookup_inbound(spi2, RESPONDER_B)
    assert sa2 is not None
    run.say(f"  ESP seq 1 for SPI {spi2:#010x}: lookup finds the SA LARVAL ...")
    run.say("  ... and before the packet is held, Quick Mode #3 wins the race:")
    km.update(spi2)
    run.sent += 1
    result = sadb.hold_inbound(sa2, _esp_packet(spi2, 1))
    run.say(
        f"  the hold re-checks the state under the SA's lock: MATURE, so "
        f"{result.value} the packet now."
    )
    if result is HoldResult.PROCESS:
        process(sa2, _esp_packet(spi2, 1))
    counters = run.counters = sadb.counters.snapshot()
    run.say("")
    run.say(
        "SADB counters: "
        + ", ".join(f"{k} {counters[k]}" for k in ("held", "released", "lost_races", "expired"))
    )
    run.say(f"Delivered {len(run.delivered)} of {run.sent} packets; none lost, no assertion.")
    return run


def demo_json(run: DemoRun) -> dict[str, Any]:
    dropped = run.counters.get("replaced", 0) + run.counters.get("expired", 0)
    return {
        "packets": {
            "sent": run.sent,
            "delivered": len(run.delivered),
            "held": run.counters.get("held", 0),
            "dropped": dropped,
        },
        "delivered": [{"spi": spi, "seq": seq} for spi, seq in run.delivered],
        "sadb_counters": run.counters,
    }


def main(
    as_json: bool = False, stack_only: bool = False, ikev1: bool = False,
    remote_access: bool = False,
) -> int:  # fmt: skip
    if remote_access:
        if stack_only or ikev1:
            raise LarvalError("demo --remote-access is IKEv2 between two hosts: it takes "
                              "neither --stack-only nor --ikev1")  # fmt: skip
        from larval import demo_remote_access

        return demo_remote_access.main(as_json=as_json)
    if not stack_only:
        from larval import demo_ladder

        return demo_ladder.main(as_json=as_json, version=1 if ikev1 else 2)
    run = run_demo()
    if as_json:
        print(json.dumps(demo_json(run)))
    else:
        print("\n".join(run.lines))
    return 0
