"""What the whole ISAKMP SA holds, as its exchanges see it: `IsakmpSa`.

The cookies, the role, the Phase 1 choice and keys (and the cipher and IVs they make),
the NAT and vendor-ID state, the CHILD_SAs, the connection's configuration and the
callbacks to the key manager belong to the ISAKMP SA, not to any one exchange; so do
the protection of its messages (`seal`, `open`, `verify_hash`, RFC 2409 Appendix B), NAT
detection (RFC 3947) and the vendor IDs it announces. The exchanges
(`larval.ikev1.phase1`, `quick_mode`, `informational`) read and fill it in; the session
(`larval.ikev1.session.IkeV1Session`) is this plus the dispatcher, the timers and the
user calls. An exchange hands the session what to send as `Outgoing`, and receives what
arrived as `Inbound`; neither side of that does I/O.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from larval.crypto.ike_transforms import Transform as Ikev2Transform
from larval.crypto.ikev1_keys import Ikev1Cipher, Ikev1Prf, Phase1Keys, phase2_iv
from larval.crypto.randomness import RandomBytes
from larval.ike import IKE_PORT, NAT_T_PORT
from larval.ike.auth_config import AuthInfo
from larval.ike.config import ChildConfig, ChildPolicy, IkeConfig, IPAddress
from larval.ike.events import ChildSaUp, Event
from larval.ike.identity import IdType as PeerIdType
from larval.ike.transport import IkeTransport, OverTransport, RandomIds, Request

from .config import Phase1Choice
from .constants import (
    VID_DPD,
    VID_FRAGMENTATION_CAPABLE,
    VID_NAT_T_RFC3947,
    EncapsulationMode,
    ExchangeType,
    IdType,
    NotifyType,
    PayloadType,
    ProtocolId,
    is_fragmentation_vid,
)
from .errors import IkeV1DecodeError, IkeV1ProtocolError
from .framing import Ikev1Framing
from .message import IkeV1Header, IkeV1Message, decode_encrypted, encode_encrypted
from .modecfg import VID_CISCO_UNITY, VID_XAUTH, ReceivedConfig
from .payloads import HashPayload, IdPayload, NatDPayload, NotifyPayload, Payload, VendorIdPayload

if TYPE_CHECKING:  # the Phase 1 tasks build on the ISAKMP SA
    from .phase1 import Phase1Settings
    from .select import Fits

__all__ = [
    "DELIVERY_WAIT_MAX",
    "DELIVERY_WAIT_MIN",
    "NONCE_SIZE",
    "PHASE1",
    "Address",
    "ChildSa",
    "Inbound",
    "IsakmpSa",
    "Outgoing",
    "after_hash",
    "body_of",
    "delivery_wait",
]

Address = tuple[str, int]
log = logging.getLogger("larval.ike")
NONCE_SIZE = 32
PHASE1 = 0  # the Message ID of every Phase 1 message (RFC 2408 §3.1)
#: Bounds of the wait after a message nothing answers (AM3, QM3), for what must follow it
#: only once the peer has it: QM1, the first ESP on a new outbound SA (seconds).
DELIVERY_WAIT_MIN, DELIVERY_WAIT_MAX = 0.02, 0.3


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message as it reached an exchange: its header, the datagram (whole, reassembled
    from fragments where it came in them) and where it came from."""

    header: IkeV1Header
    data: bytes
    addr: Address


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message an exchange hands the session to send: the datagram (sealed where the
    exchange protects it), how the logs name it, and the Message ID it is resent under
    until answered (None: sent once, and again only as the reply to a resent message)."""

    datagram: bytes
    text: str
    resend: int | None = None


@dataclass(eq=False, slots=True)
class ChildSa:
    """A pair of IPsec SAs of this ISAKMP SA, as far as IKE is concerned."""

    config: ChildConfig
    spi_in: int
    spi_out: int
    suite: tuple[Ikev2Transform, ...]
    renewed: bool = False  # a newer Quick Mode for the same child replaces it

    def same_as(self, config: ChildConfig) -> bool:
        """The same child between the same networks (what a newer Quick Mode replaces)."""
        mine = self.config
        return (mine.name, mine.local_ts, mine.remote_ts) == (
            config.name, config.local_ts, config.remote_ts)  # fmt: skip


class IsakmpSa(OverTransport):
    """One ISAKMP SA's own state, and the protection of its messages."""

    def __init__(
        self,
        config: IkeConfig,
        *,
        initiator: bool,
        allocate_spi: Callable[[], int],
        child_policy: ChildPolicy | None,
        random_bytes: RandomBytes,
        framing: Ikev1Framing,
    ) -> None:
        self.config, self.initiator, self.random = config, initiator, random_bytes
        #: A GETSPI: the inbound SPI of a new IPsec SA, LARVAL before it goes on the wire;
        #: and, for a responder, an inverse ACQUIRE: what policy accepts for Quick Mode IDs.
        self.allocate_spi, self.child_policy = allocate_spi, child_policy
        self.spi_i = b""  # CKY-I (RFC 2408 §3.1)
        self.spi_r = b""  # CKY-R
        # Message IDs, retransmission, the replies to retransmitted messages and fragments.
        self._framing = framing
        self._transport: IkeTransport[bytes] = IkeTransport.of(
            config, RandomIds(random_bytes), framing, self.name
        )
        self.local_port = IKE_PORT
        self.natted = False
        self.peer_dpd = self.peer_nat_t = False
        self.peer_initial_contact = False
        self.children: dict[int, ChildSa] = {}  # by inbound SPI
        self.choice: Phase1Choice | None = None
        self.prf: Ikev1Prf | None = None
        self.keys: Phase1Keys | None = None
        self.cipher: Ikev1Cipher | None = None
        self.p1_last = b""  # the last Phase 1 CBC block: Phase 2 IVs start from it
        #: How this end and the peer proved themselves in Phase 1, once they have.
        self.auth_local: AuthInfo | None = None
        self.auth_remote: AuthInfo | None = None
        self.source: Address | None = None  # where the message being taken came from
        #: The peer's ID payload of Phase 1, once it proved it.
        self.peer_id: IdPayload | None = None
        #: The peer announced Cisco Unity (`larval.ikev1.modecfg.VID_CISCO_UNITY`).
        self.peer_unity = False
        #: The virtual addresses of Mode Config: the peer's (gateway) or this end's (client).
        self.virtual_ips: tuple[IPAddress, ...] = ()
        #: What the gateway's Mode Config gave this client (addresses, DNS, domains).
        self.received = ReceivedConfig()
        #: The split networks a gateway told a Unity peer (UNITY_SPLIT_INCLUDE).
        self.unity_split: tuple[ipaddress.IPv4Network, ...] = ()
        self._events: deque[Event] = deque()

    @property
    def fragmentation(self) -> bool:
        """This end announces the FRAGMENTATION vendor ID and takes fragments; False: it
        does neither, and sends every message whole."""
        return self._framing.enabled

    @fragmentation.setter
    def fragmentation(self, enabled: bool) -> None:
        self._framing.enabled = enabled

    @property
    def fragment_size(self) -> int:
        """The longest message sent whole to a peer that takes fragments; a longer one
        goes as fragments of at most this many bytes each, and as many of them as it
        takes (up to the peer's limit: `larval.ikev1.fragments`)."""
        return self._framing.fragment_size

    @fragment_size.setter
    def fragment_size(self, size: int) -> None:
        self._framing.fragment_size = size

    @property
    def peer_fragmentation(self) -> bool:
        """The peer announced the FRAGMENTATION vendor ID."""
        return self._framing.peer

    def name(self) -> str:
        """How log lines name the ISAKMP SA: connection[CKY-I/CKY-R]."""
        spi_i, spi_r = (self.spi_i or bytes(8)).hex(), (self.spi_r or bytes(8)).hex()
        return f"{self.config.name}[{spi_i}/{spi_r}]"

    def report(self, event: Event) -> None:
        """An event for the key manager (`next_event`)."""
        self._events.append(event)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # -- the transport, as the exchanges use it --------------------------------------------

    def new_message_id(self) -> int:
        """A fresh Message ID for a Quick Mode or Informational exchange (RFC 2408 §3.1)."""
        return self._transport.new_message_id()

    def answered(self, message_id: int) -> Request | None:
        """The message sent under `message_id` is answered: it is resent no more."""
        return self._transport.answered(message_id)

    # -- keys and protection (RFC 2409 §5, Appendix B) -------------------------------------

    def keyed(self, choice: Phase1Choice, keys: Phase1Keys) -> None:
        """Phase 1 chose `choice` and made `keys`: the ISAKMP SA's from now on."""
        self.choice = choice
        self.prf = Ikev1Prf(choice.hash_name)
        self.keys = keys
        self.cipher = Ikev1Cipher(choice.encryption, keys.enc_key)

    def phase2_iv(self, message_id: int) -> bytes:
        assert self.prf is not None
        return phase2_iv(self.prf.hash_name, self.p1_last, message_id)

    def message(
        self, exchange: ExchangeType, payloads: tuple[Payload, ...] | list[Payload], mid: int = 0
    ) -> IkeV1Message:
        """A message of this ISAKMP SA: its cookies (CKY-R zero until known)."""
        return IkeV1Message(self.spi_i, self.spi_r or bytes(8), exchange, mid, tuple(payloads))

    def seal(self, message: IkeV1Message, iv: bytes) -> tuple[bytes, bytes]:
        """The message encrypted with `iv`, and the IV of the next (Appendix B)."""
        cipher = self.cipher
        assert cipher is not None
        next_iv = [iv]

        def encrypt(plaintext: bytes) -> bytes:
            ciphertext, next_iv[0] = cipher.encrypt(plaintext, iv)
            return ciphertext

        return encode_encrypted(message, encrypt, cipher.block_size), next_iv[0]

    def open(self, data: bytes, iv: bytes) -> tuple[IkeV1Message, bytes]:
        """The message `data` decrypted with `iv`, and the IV of the next (Appendix B)."""
        cipher = self.cipher
        if cipher is None:
            raise IkeV1DecodeError(
                "an encrypted message before there are keys", NotifyType.INVALID_FLAGS
            )
        next_iv = [iv]

        def decrypt(ciphertext: bytes) -> bytes:
            plaintext, next_iv[0] = cipher.decrypt(ciphertext, iv)
            return plaintext

        return decode_encrypted(data, decrypt, cipher.block_size), next_iv[0]

    def verify_hash(self, message: IkeV1Message, expected: bytes) -> None:
        """The message opens with HASH(1), (2) or (3) and it is `expected` (§5.5, §5.7)."""
        first = message.payloads[0] if message.payloads else None
        if not isinstance(first, HashPayload) or not secrets.compare_digest(first.data, expected):
            raise IkeV1ProtocolError(NotifyType.INVALID_HASH_INFORMATION, "HASH does not verify")
        self.authenticated()

    def authenticated(self) -> None:
        """The message being taken is the peer's: answer, and send ESP in UDP, where it came
        from. Behind a NAT that is the port the NAT made of the peer's 4500 (RFC 3947 §4
        expects it; RFC 7296 §2.23 says the same of IKEv2), learnt only from a message
        that proves itself, so that no forged source can divert the SA."""
        source = self.source
        if source is not None and source[0] == self.remote[0] and source[1] != IKE_PORT:
            self.remote = source  # the port; an SA's addresses stay what they are

    # -- identities ------------------------------------------------------------------------

    def id_payload(self) -> IdPayload:
        id_type, data = self.config.local_id
        return IdPayload(IdType(int(id_type)), data)

    def peer_id_ok(self, payload: IdPayload) -> bool:
        """Is the peer's ID the configured one (`remote_id`, or `remote_id_match` where
        the configured one has wildcards)? The ID types both versions share have the same
        numbers (`larval.ike.identity`)."""
        claimed = (PeerIdType(int(payload.id_type)), payload.data)
        if self.config.remote_id_match is not None:
            return self.config.remote_id_match(*claimed)
        expected = self.config.remote_id
        return expected is None or claimed == (PeerIdType(int(expected[0])), expected[1])

    def select_connection(self, idii: IdPayload, fits: Fits) -> Phase1Settings | None:
        """A responder that had more than one connection for the peer's addresses takes
        the one IDii names (`larval.ikev1.select`), and returns how Phase 1 goes on with
        it (its authenticator and lifetime); None: the connection stays. This one has no
        other."""
        return None

    def notify(self, notify_type: NotifyType, data: bytes = b"") -> NotifyPayload:
        """N(type) about this ISAKMP SA: its SPI is the two cookies (RFC 2408 §3.14)."""
        return NotifyPayload(notify_type, ProtocolId.ISAKMP, self.spi_i + self.spi_r, data)

    # -- NAT traversal (RFC 3947) and vendor IDs -------------------------------------------

    def _nat_hash(self, address: IPAddress, port: int) -> bytes:
        """HASH(CKY-I | CKY-R | IP | Port) with the negotiated hash (RFC 3947 §3.2)."""
        assert self.choice is not None
        prf = Ikev1Prf(self.choice.hash_name)
        return prf.hash(self.spi_i + self.spi_r + address.packed + struct.pack(">H", port))

    def nat_d(self) -> tuple[NatDPayload, ...]:
        """NAT-D of the destination, then of the source (RFC 3947 §3.2); with `encap`, a
        source that cannot match, so both ends take a NAT for granted (as strongSwan)."""
        if not self.peer_nat_t:
            return ()
        remote = self._nat_hash(self.config.remote_addr, self.remote[1])
        local = self._nat_hash(self.config.local_addr, self.local_port)
        if self.config.encap:
            local = self.random(len(local))
        return NatDPayload(remote), NatDPayload(local)

    def check_nat(self, message: IkeV1Message, addr: Address) -> None:
        hashes = [p.data for p in message.get(NatDPayload)]
        natted = self.config.encap
        if hashes:
            ours = self._nat_hash(self.config.local_addr, self.local_port)
            theirs = self._nat_hash(ipaddress.ip_address(addr[0]), addr[1])
            natted = natted or hashes[0] != ours or theirs not in hashes[1:]
        self.natted = natted and self.peer_nat_t

    def float_to_nat_t(self) -> None:
        """RFC 3947 §4: once a NAT is detected, the initiator moves to port 4500."""
        if self.natted:
            self.remote = (self.remote[0], NAT_T_PORT)
            self.local_port = NAT_T_PORT

    def encapsulation(self, mode: str) -> int:
        """The ENCAPSULATION_MODE of an IPsec SA in `mode`, in UDP behind a NAT."""
        if mode == "transport":
            return EncapsulationMode.UDP_TRANSPORT if self.natted else EncapsulationMode.TRANSPORT
        return EncapsulationMode.UDP_TUNNEL if self.natted else EncapsulationMode.TUNNEL

    def vendor_ids(self, message: IkeV1Message) -> None:
        vids = {p.data for p in message.get(VendorIdPayload)}
        self.peer_dpd = self.peer_dpd or VID_DPD in vids
        self.peer_nat_t = self.peer_nat_t or VID_NAT_T_RFC3947 in vids
        self._framing.peer = self._framing.peer or any(map(is_fragmentation_vid, vids))
        self.peer_unity = self.peer_unity or VID_CISCO_UNITY in vids

    def vids(self) -> tuple[VendorIdPayload, ...]:
        """DPD and NAT-T always; fragmentation when we take fragments, and as a responder
        only when the initiator announced it too (as strongSwan)."""
        vids: tuple[VendorIdPayload, ...] = (
            VendorIdPayload(VID_DPD),
            VendorIdPayload(VID_NAT_T_RFC3947),
        )
        if self.fragmentation and (self.initiator or self.peer_fragmentation):
            vids += (VendorIdPayload(VID_FRAGMENTATION_CAPABLE),)
        if self.config.local_xauth is not None or self.config.remote_xauth is not None:
            vids += (VendorIdPayload(VID_XAUTH),)  # draft-beaulieu-ike-xauth §3
        if self.peer_unity and not self.initiator:
            vids += (VendorIdPayload(VID_CISCO_UNITY),)
        return vids

    # -- CHILD_SAs -------------------------------------------------------------------------

    def add_child(self, up: ChildSaUp) -> None:
        """A Quick Mode for a child and its networks, started by either end, replaces the
        SAs it had for them: their soft EXPIREs need not start another one
        (`rekey_child`). One child may hold SAs for several networks side by side (a
        Cisco Unity client's Quick Mode per split network): each is kept with the
        networks its Quick Mode agreed, which its rekeying asks again."""
        config = replace(up.child, local_ts=up.local_ts, remote_ts=up.remote_ts)
        for child in self.children.values():
            child.renewed = child.renewed or child.same_as(config)
        self.children[up.spi_in] = ChildSa(config, up.spi_in, up.spi_out, up.suite)
        self.report(up)


def body_of(message: IkeV1Message, payload_type: PayloadType) -> bytes:
    """The body of the first payload of that type as received (SAi_b, IDii_b: §5)."""
    for payload, wire in zip(message.payloads, message.wire_payloads, strict=True):
        if payload.payload_type == payload_type:
            return wire[4:]
    raise IkeV1ProtocolError(NotifyType.PAYLOAD_MALFORMED, f"no {payload_type.name} payload")


def after_hash(message: IkeV1Message) -> bytes:
    """The payloads after HASH as received, generic headers included (§5.5, §5.7)."""
    return b"".join(message.wire_payloads[1:])


def delivery_wait(rtt: float | None) -> float:
    """How long after a message nothing answers (AM3, QM3) what depends on it waits.

    IKEv1 acknowledges neither: the responder fills in its inbound SA only when QM3
    arrives (RFC 2409 §5.5), and a peer without a LARVAL hold (charon with kernel-
    libipsec) drops ESP that comes first, so the first packet, held since the ACQUIRE,
    would leave with QM3 and be lost; a threaded responder may take a QM1 sent right
    behind AM3 first, and drop it. One round trip, as the exchange's first pair took
    (AM1 -> AM2, QM1 -> QM2), lets the message arrive and be processed; bounded, as the
    commit bit (§5.5) that would say so exactly is not widely honoured.
    """
    if rtt is None:
        return DELIVERY_WAIT_MAX
    return min(max(rtt, DELIVERY_WAIT_MIN), DELIVERY_WAIT_MAX)
