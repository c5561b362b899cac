"""Two IKEv1 sessions in memory with a fake clock, each step annotated with its message."""

from __future__ import annotations

import ipaddress
import itertools
import warnings
from collections.abc import Iterator

from larval.crypto.ike_proposals import esp_proposal_transforms, parse_ike_proposal
from larval.ikev1.session import IkeV1Session, State
from larval.ikev2.config import (
    ChildConfig,
    ChildSaUp,
    Event,
    IkeConfig,
    IkeSaUp,
    identity,
)

A, B = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")
NET_A, NET_B = ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("203.0.113.0/24")
PSK = b"interop-test-psk-0123456789"

# cryptography warns about the MODP groups; they are what IKEv1 peers still use.
warnings.filterwarnings("ignore", category=DeprecationWarning)


def config(
    local: ipaddress.IPv4Address,
    remote: ipaddress.IPv4Address,
    *,
    psk: bytes = PSK,
    proposals: tuple[str, ...] = ("aes128-sha256-ecp256",),
    encap: bool = False,
    dpd: float = 0.0,
) -> IkeConfig:
    return IkeConfig(
        name="s2s",
        local_addr=local,
        remote_addr=remote,
        local_id=identity(str(local)),
        remote_id=identity(str(remote)),
        psk=psk,
        proposals=tuple(parse_ike_proposal(p) for p in proposals),
        encap=encap,
        dpd_delay=dpd,
    )


def child(
    local: ipaddress.IPv4Network,
    remote: ipaddress.IPv4Network,
    esp: tuple[str, ...] = ("aes128gcm16",),
) -> ChildConfig:
    return ChildConfig("net", tuple(esp_proposal_transforms(p) for p in esp), (local,), (remote,))


class Pair:
    """An initiator at A and a responder at B, joined by a wire the test controls."""

    def __init__(
        self,
        init_cfg: IkeConfig,
        resp_cfg: IkeConfig,
        resp_child: ChildConfig | None,
        *,
        aggressive: bool = False,
    ) -> None:
        spis = itertools.count(0x1000)
        self.now = 0.0
        self.allocated: list[int] = []

        def allocate() -> int:
            spi = next(spis)
            self.allocated.append(spi)
            return spi

        self.i = IkeV1Session(
            init_cfg, initiator=True, allocate_spi=allocate, aggressive=aggressive
        )
        self.r = IkeV1Session(
            resp_cfg,
            initiator=False,
            allocate_spi=allocate,
            child_policy=lambda tsi, tsr: resp_child,
        )
        self.wire: list[tuple[str, bytes]] = []

    def step(self, sender: IkeV1Session, drop: bool = False) -> int:
        """Carry what `sender` has queued to the other end; how many datagrams."""
        other, addr = (self.r, (str(A), 500)) if sender is self.i else (self.i, (str(B), 500))
        out = sender.datagrams_to_send(self.now)
        for data, _ in out:
            self.wire.append(("i->r" if sender is self.i else "r->i", data))
            if not drop:
                other.receive_datagram(data, addr, self.now)
        return len(out)

    def flush(self) -> int:
        """Carry datagrams both ways until quiet."""
        moved = 0
        while True:
            n = self.step(self.i) + self.step(self.r)
            if not n:
                return moved
            moved += n

    def advance(self, seconds: float) -> None:
        """Let time pass, firing each session's timer when it falls due."""
        end = self.now + seconds
        while True:
            due = [t for t in (self.i.get_timer(), self.r.get_timer()) if t is not None]
            if not due or min(due) > end:
                break
            self.now = max(self.now, min(due))
            for session in (self.i, self.r):
                timer = session.get_timer()
                if timer is not None and timer <= self.now:
                    session.handle_timer(self.now)
            self.flush()
        self.now = end


def events(session: IkeV1Session) -> Iterator[Event]:
    while (e := session.next_event()) is not None:
        yield e


def test_main_mode_and_quick_mode_both_sides_agree() -> None:
    pair = Pair(config(A, B), config(B, A), child(NET_B, NET_A))
    pair.i.initiate(child(NET_A, NET_B), 0.0)
    assert pair.step(pair.i) == 1  # MM1 { SA, VID, VID } -->
    assert pair.step(pair.r) == 1  # <-- MM2 { SA, VID, VID }
    assert pair.step(pair.i) == 1  # MM3 { KE, Ni, NAT-D, NAT-D } -->
    assert pair.step(pair.r) == 1  # <-- MM4 { KE, Nr, NAT-D, NAT-D }
    assert pair.step(pair.i) == 1  # MM5 *{ IDii, HASH_I, N(INITIAL_CONTACT) } -->
    assert pair.step(pair.r) == 1  # <-- MM6 *{ IDir, HASH_R }
    assert pair.i.state is State.ESTABLISHED and pair.r.state is State.ESTABLISHED
    assert pair.r.peer_initial_contact
    assert pair.step(pair.i) == 1  # QM1 *{ HASH(1), SA, Ni, IDci, IDcr } -->
    assert pair.step(pair.r) == 1  # <-- QM2 *{ HASH(2), SA, Nr, IDci, IDcr }
    assert pair.step(pair.i) == 1  # QM3 *{ HASH(3) } -->
    ev_i, ev_r = list(events(pair.i)), list(events(pair.r))
    assert [type(e) for e in ev_i] == [IkeSaUp, ChildSaUp]
    assert [type(e) for e in ev_r] == [IkeSaUp, ChildSaUp]
    ci, cr = ev_i[1], ev_r[1]
    assert isinstance(ci, ChildSaUp) and isinstance(cr, ChildSaUp)
    assert ci.spi_out == cr.spi_in and ci.spi_in == cr.spi_out
    assert ci.keys_out == cr.keys_in and ci.keys_in == cr.keys_out
    assert ci.keys_in != ci.keys_out  # each direction keyed with its own SPI
    assert len(ci.keys_out.encr_key) == 20 and ci.keys_out.integ_key == b""  # AES-128-GCM
    assert ci.local_ts == (NET_A,) and ci.remote_ts == (NET_B,)
    assert cr.local_ts == (NET_B,) and cr.remote_ts == (NET_A,)
    assert not ci.natted and not cr.natted
