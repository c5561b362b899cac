"""EAP-TLS (RFC 5216) with TLS 1.2: its packets, a server and a peer.

TLS runs in pyOpenSSL over memory BIOs: pyOpenSSL is PyCA's, by the maintainers of
`cryptography` and built on the same OpenSSL bindings, so it adds no C of its own; it
has what the standard `ssl` module lacks, the keying-material exporter (RFC 5705) that
gives the MSK. Only TLS 1.2: RFC 9190's TLS 1.3 keys use another label than strongSwan
5.9's TLS 1.3, so the two would disagree on the MSK.

The conversation (RFC 5216 §2.1), a full TLS 1.2 handshake::

    server                                            peer
    Request  TLS Start (S)                       ->
                                                 <-  Response  ClientHello
    Request  ServerHello, Certificate,           ->
             ServerKeyExchange, CertificateRequest,
             ServerHelloDone
                                                 <-  Response  Certificate, ClientKeyExchange,
                                                               CertificateVerify, Finished
    Request  ChangeCipherSpec, Finished          ->
                                                 <-  Response  (empty: an ACK)
    EAP Success                                  ->            both hold the MSK

A TLS message longer than a fragment goes in several packets (§2.1.5): the first has
the L flag and the whole message's length, each but the last the M flag, and the other
end answers each fragment but the last with an ACK (an empty packet of its own code).
Fragments are at most `FRAGMENT_SIZE` bytes as EAP packets, as strongSwan sends them;
IKE carries each in an EAP payload of its own message.

Certificates: each end is given its own certificate, key and chain, and a `CertificateCheck`
for the other's. OpenSSL verifies nothing here (the server only demands a certificate);
the check decides, with the layer above's trust store and the identity it expects, once
the other end's Certificate has arrived: the peer before it sends its own certificate, the
server before it sends its Finished. A refused certificate, a TLS alert or a record
OpenSSL cannot parse, too many packets and a TLS message larger than `MAX_MESSAGE` end the
conversation with the reason (`larval.eap.method`).

The keys (§2.3): ``TLS-PRF(master secret, "client EAP encryption", client random ||
server random)``, 128 bytes: the MSK the first 64, the EMSK the next 64, as the exporter
without context gives them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from OpenSSL import SSL

from larval.crypto.randomness import RandomBytes, system_random
from larval.wire import NetReader

from .errors import EapError
from .method import EapMethodMachine
from .packet import EapCode, EapPacket, EapType

__all__ = [
    "FRAGMENT_SIZE",
    "MAX_MESSAGE",
    "MAX_PACKETS",
    "CertificateCheck",
    "EapTlsData",
    "EapTlsPeer",
    "EapTlsServer",
    "TlsCredentials",
    "TlsFlag",
]

#: The largest EAP-TLS packet sent, EAP header included (strongSwan's fragment_size).
FRAGMENT_SIZE = 1024
#: The largest TLS message taken, in all its fragments (strongSwan's, four records' worth).
MAX_MESSAGE = 4 * (16384 + 2048)
#: EAP-TLS packets one conversation takes from the other end (strongSwan's
#: max_message_count); a handshake with a few certificates needs a dozen.
MAX_PACKETS = 32
#: RFC 5216 §2.3: the label of the MSK and EMSK, 64 bytes each.
KEY_LABEL = b"client EAP encryption"
_KEY_SIZE = 64
_HEADER = 6  # EAP Code, Identifier, Length, Type, then the Flags

#: The other end's certificate and the others it sent (leaf first) → None if it is
#: trusted for the identity expected, else the reason.
CertificateCheck = Callable[[x509.Certificate, Sequence[x509.Certificate]], str | None]


class TlsFlag(enum.IntFlag):
    """RFC 5216 §3.1: the Flags octet; the five low bits are reserved."""

    NONE = 0
    LENGTH = 0x80  # L: the TLS Message Length follows
    MORE = 0x40  # M: more fragments follow
    START = 0x20  # S: the server's first Request


@dataclass(frozen=True, slots=True)
class EapTlsData:
    """The Type-Data of an EAP-TLS packet (RFC 5216 §3.1, §3.2)::

         0                   1                   2                   3
         0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |     Flags     |      TLS Message Length
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
        |     TLS Message Length        |       TLS Data...
        +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    The Length is there only with the L flag. An ACK is Flags 0 and nothing else.
    """

    flags: TlsFlag = TlsFlag.NONE
    data: bytes = b""
    length: int | None = None

    @property
    def is_ack(self) -> bool:
        return not self.data and not self.flags & (TlsFlag.START | TlsFlag.MORE)

    def encode(self) -> bytes:
        flags = self.flags & ~TlsFlag.LENGTH
        if self.length is None:
            return bytes([flags]) + self.data
        return bytes([flags | TlsFlag.LENGTH]) + self.length.to_bytes(4, "big") + self.data

    @classmethod
    def decode(cls, data: bytes) -> EapTlsData:
        reader = NetReader(data, "EAP-TLS packet", EapError)
        flags = TlsFlag(reader.pull_u8("Flags") & 0xE0)
        length = None
        if flags & TlsFlag.LENGTH:
            length = reader.pull_u32("TLS Message Length")
            if length > MAX_MESSAGE:
                raise EapError(
                    f"EAP-TLS packet: TLS Message Length {length}, larger than {MAX_MESSAGE}"
                )
        body = reader.pull_rest()
        if length is not None and len(body) > length:
            raise EapError(
                f"EAP-TLS packet: {len(body)} bytes of TLS data, more than its "
                f"TLS Message Length {length}"
            )
        return cls(flags & ~TlsFlag.LENGTH, body, length)


@dataclass(frozen=True)
class TlsCredentials:
    """This end's certificate and key, the CA certificates sent after it, and (a
    server's) the CAs it names in its CertificateRequest."""

    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()
    client_cas: tuple[x509.Certificate, ...] = ()


def _context(credentials: TlsCredentials, server: bool) -> SSL.Context:
    """TLS 1.2 only, no tickets, resumption or renegotiation (one handshake per IKE SA),
    and this end's certificate; a server demands the peer's, whose check is the
    `CertificateCheck`."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD if server else SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_RENEGOTIATION)
    if not server:
        # strongSwan's TLS server sends no renegotiation_info (RFC 5746), which OpenSSL
        # then refuses; renegotiation is off on this end either way.
        ctx.set_options(SSL.OP_LEGACY_SERVER_CONNECT)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    try:
        ctx.use_certificate(credentials.cert)
        ctx.use_privatekey(credentials.key)  # type: ignore[arg-type]
        for ca in credentials.chain:
            ctx.add_extra_chain_cert(ca)
        ctx.check_privatekey()
        if server:
            for ca in credentials.client_cas:
                ctx.add_client_ca(ca)
    except (SSL.Error, TypeError, ValueError) as e:
        raise EapError(
            f"EAP-TLS: this end's certificate or key is unusable: {_reason(e)}"
        ) from None
    mode = SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT if server else SSL.VERIFY_NONE
    # The chain is the CertificateCheck's to judge; OpenSSL only asks for it.
    ctx.set_verify(mode, lambda conn, cert, errno, depth, ok: True)
    return ctx


def _reason(error: Exception) -> str:
    """OpenSSL's error queue in words: the reasons only, without library and function."""
    parts = []
    for item in error.args[0] if error.args and isinstance(error.args[0], list) else ():
        if isinstance(item, tuple) and item:
            parts.append(str(item[-1]))
    return "; ".join(parts) or str(error) or type(error).__name__


class _Tls:
    """One TLS connection over memory BIOs: bytes in, bytes out, the handshake stepped."""

    def __init__(self, credentials: TlsCredentials, server: bool) -> None:
        self.conn = SSL.Connection(_context(credentials, server), None)
        if server:
            self.conn.set_accept_state()
        else:
            self.conn.set_connect_state()
        self.complete = False

    def step(self, data: bytes) -> bytes:
        """Feed the other end's TLS message, advance the handshake, and return what this
        end sends now (maybe nothing)."""
        try:
            if data:
                self.conn.bio_write(data)
            self.conn.do_handshake()
            self.complete = True
        except SSL.WantReadError:
            pass
        except SSL.Error as e:
            raise EapError(f"EAP-TLS: TLS handshake failed: {_reason(e)}") from None
        out = b""
        while True:
            try:
                out += self.conn.bio_read(65536)
            except SSL.WantReadError:
                return out

    def peer_chain(self) -> tuple[x509.Certificate, list[x509.Certificate]] | None:
        leaf = self.conn.get_peer_certificate(as_cryptography=True)
        if leaf is None:
            return None
        sent = self.conn.get_peer_cert_chain(as_cryptography=True) or []
        return leaf, [c for c in sent if c != leaf]

    def keys(self) -> tuple[bytes, bytes]:
        """RFC 5216 §2.3: the MSK and the EMSK."""
        version = self.conn.get_protocol_version_name()
        if version != "TLSv1.2":
            raise EapError(f"EAP-TLS: {version} negotiated, larval takes TLS 1.2 only")
        block = self.conn.export_keying_material(KEY_LABEL, 2 * _KEY_SIZE)
        return block[:_KEY_SIZE], block[_KEY_SIZE:]


class _TlsMachine(EapMethodMachine[enum.Enum]):
    """What the server and the peer share: fragments out and in, the count of packets,
    the certificate check."""

    method = EapType.TLS
    label = "EAP-TLS"
    refused = "{label}: the server refused {identity!r} (EAP Failure)"

    def __init__(
        self, state: enum.Enum, random: RandomBytes, identifier: int | None,
        credentials: TlsCredentials, check: CertificateCheck,
        fragment_size: int, max_packets: int,
    ) -> None:  # fmt: skip
        super().__init__(state, random, identifier)
        if fragment_size < _HEADER + 4 + 1:
            raise EapError(f"EAP-TLS: fragment size {fragment_size} leaves no room for data")
        self._credentials = credentials
        self._check = check
        self._fragment_size = fragment_size
        self._max_packets = max_packets
        self._packets = 0
        self._tls: _Tls | None = None
        self._checked = False
        #: The other end's certificate, once it passed the check (for status).
        self.peer_certificate: x509.Certificate | None = None
        self._incoming = b""  # the fragments of the message being received
        self._announced: int | None = None
        self._outgoing = b""  # what of the message being sent is still to go
        self._first_fragment = True
        self._data: EapTlsData | None = None
        self._pending_msk = b""
        self._emsk = b""

    def input_of(self, packet: EapPacket) -> str:
        if packet.type is not EapType.TLS or packet.code not in (EapCode.REQUEST, EapCode.RESPONSE):
            return super().input_of(packet)
        data = self._data = EapTlsData.decode(packet.data)
        kind = "Start" if data.flags & TlsFlag.START else "ACK" if data.is_ack else "data"
        return f"TLS {kind} {packet.code.name.title()}"

    @property
    def emsk(self) -> bytes | None:
        """RFC 5216 §2.3's EMSK once the method succeeded."""
        return self._emsk if self.msk is not None else None

    # -- in -------------------------------------------------------------------------------

    def _count(self, why: str = "") -> None:
        """One more packet of the other end's; more than `max_packets` end the
        conversation (a peer or server that never finishes)."""
        self._packets += 1
        if self._packets > self._max_packets:
            raise EapError(
                f"EAP-TLS: more than {self._max_packets} packets from the other end {why}".rstrip()
            )

    def _take(self) -> bytes | None:
        """The fragment just received added; the whole TLS message once its last
        fragment is in, else None (the fragment is to be ACKed)."""
        data = self._data
        assert data is not None
        self._count("(too many fragments)")
        if not self._incoming and data.length is not None:
            self._announced = data.length
        self._incoming += data.data
        if self._announced is not None and len(self._incoming) > self._announced:
            raise EapError(
                f"EAP-TLS: {len(self._incoming)} bytes in fragments, more than the TLS "
                f"Message Length {self._announced} of the first"
            )
        if len(self._incoming) > MAX_MESSAGE:
            raise EapError(f"EAP-TLS: a TLS message of more than {MAX_MESSAGE} bytes")
        if data.flags & TlsFlag.MORE:
            return None
        message, self._incoming, self._announced = self._incoming, b"", None
        if not message:
            raise EapError("EAP-TLS: an empty final fragment where TLS data was expected")
        return message

    def _advance(self, message: bytes) -> bytes:
        """TLS fed `message`: what this end sends now, once the other end's certificate
        (as soon as it is there) passed the check."""
        assert self._tls is not None
        out = self._tls.step(message)
        if not self._checked:
            chain = self._tls.peer_chain()
            if chain is not None:
                self._checked = True
                reason = self._check(*chain)
                if reason is not None:
                    raise EapError(f"EAP-TLS: {self._whose} certificate refused: {reason}")
                self.peer_certificate = chain[0]
        if self._tls.complete:
            if not self._checked:
                raise EapError(f"EAP-TLS: handshake complete without the {self._whose} certificate")
            self._pending_msk, self._emsk = self._tls.keys()
        return out

    # -- out ------------------------------------------------------------------------------

    def _next_fragment(self) -> tuple[EapTlsData, bool]:
        """The next fragment of the outgoing message, and whether it is the last."""
        room = self._fragment_size - _HEADER
        length = None
        if self._first_fragment:
            room -= 4
            length = len(self._outgoing)  # L on the first, whole or not (as strongSwan)
        chunk, self._outgoing = self._outgoing[:room], self._outgoing[room:]
        last = not self._outgoing
        flags = TlsFlag.NONE if last else TlsFlag.MORE
        self._first_fragment = last
        return EapTlsData(flags, chunk, length), last

    @property
    def _whose(self) -> str:
        return "the peer's" if self.is_server else "the server's"


class ServerState(enum.Enum):
    START = "start"
    START_SENT = "Start sent"  # the only state a Nak is taken in (RFC 3748 §5.3.1)
    AWAIT_DATA = "awaiting TLS data"
    AWAIT_ACK = "awaiting ACK"
    AWAIT_FINAL_ACK = "awaiting the final ACK"


class EapTlsServer(_TlsMachine):
    """The authenticating end: the TLS server with this end's certificate; the peer's
    certificate, which it must send, is `check`ed for the EAP ``identity``."""

    is_server = True
    opening = (ServerState.START, ServerState.START_SENT)
    transitions: ClassVar = {
        (ServerState.START_SENT, "TLS data Response"): "_on_data",
        (ServerState.START_SENT, "NAK Response"): "_peer_declined",
        (ServerState.AWAIT_DATA, "TLS data Response"): "_on_data",
        (ServerState.AWAIT_ACK, "TLS ACK Response"): "_on_ack",
        (ServerState.AWAIT_FINAL_ACK, "TLS ACK Response"): "_on_final_ack",
    }

    def __init__(
        self,
        identity: str,
        credentials: TlsCredentials,
        check: CertificateCheck,
        random: RandomBytes = system_random,
        *,
        identifier: int | None = None,
        fragment_size: int = FRAGMENT_SIZE,
        max_packets: int = MAX_PACKETS,
    ) -> None:
        super().__init__(ServerState.START, random, identifier, credentials, check,
                         fragment_size, max_packets)  # fmt: skip
        self.identity = identity

    def _opening_data(self) -> bytes:
        """The first Request: EAP-TLS Start."""
        self._tls = _Tls(self._credentials, server=True)
        return EapTlsData(TlsFlag.START).encode()

    def _on_data(self, packet: EapPacket) -> EapPacket:
        self.state = ServerState.AWAIT_DATA
        message = self._take()
        if message is None:
            return self._next_request(EapTlsData().encode())  # ACK the fragment
        self._outgoing = self._advance(message)
        if not self._outgoing:
            raise EapError("EAP-TLS: the TLS handshake stalled (nothing to answer)")
        return self._send_fragment()

    def _on_ack(self, packet: EapPacket) -> EapPacket:
        self._count()
        return self._send_fragment()

    def _send_fragment(self) -> EapPacket:
        fragment, last = self._next_fragment()
        assert self._tls is not None
        if not last:
            self.state = ServerState.AWAIT_ACK
        elif self._tls.complete:
            self.state = ServerState.AWAIT_FINAL_ACK
        else:
            self.state = ServerState.AWAIT_DATA
        return self._next_request(fragment.encode())

    def _on_final_ack(self, packet: EapPacket) -> EapPacket:
        self._end_succeeded(self._pending_msk)
        return EapPacket.success(self.identifier)


class PeerState(enum.Enum):
    IDLE = "idle"
    AWAIT_DATA = "awaiting TLS data"
    AWAIT_ACK = "awaiting ACK"
    AWAIT_SUCCESS = "awaiting EAP Success"


class EapTlsPeer(_TlsMachine):
    """The authenticated end: answers EAP-Identity with ``identity``, runs the TLS client
    with its certificate, and `check`s the server's before it sends its own; holds the
    MSK after the EAP Success. Any other method's Request gets a Nak naming TLS."""

    is_server = False
    transitions: ClassVar = {
        (PeerState.IDLE, "IDENTITY Request"): "_answer_identity",
        (PeerState.IDLE, "other Request"): "_answer_other",
        (PeerState.IDLE, "TLS Start Request"): "_on_start",
        (PeerState.AWAIT_DATA, "TLS data Request"): "_on_data",
        (PeerState.AWAIT_ACK, "TLS ACK Request"): "_on_ack",
        (PeerState.AWAIT_SUCCESS, "EAP Success"): "_on_eap_success",
        **{(state, "NOTIFICATION Request"): "_answer_notification" for state in PeerState},
        **{(state, "EAP Failure"): "_on_eap_failure" for state in PeerState},
        **{
            (state, "EAP Success"): "_on_early_success"
            for state in PeerState
            if state is not PeerState.AWAIT_SUCCESS
        },
    }

    def __init__(
        self,
        identity: str,
        credentials: TlsCredentials,
        check: CertificateCheck,
        *,
        fragment_size: int = FRAGMENT_SIZE,
        max_packets: int = MAX_PACKETS,
    ) -> None:
        super().__init__(PeerState.IDLE, system_random, 0, credentials, check,
                         fragment_size, max_packets)  # fmt: skip
        self.identity = identity

    def _on_start(self, packet: EapPacket) -> EapPacket:
        self._tls = _Tls(self._credentials, server=False)
        self._outgoing = self._advance(b"")  # the ClientHello
        return self._send_fragment(packet)

    def _on_data(self, packet: EapPacket) -> EapPacket:
        message = self._take()
        if message is None:
            return self._ack(packet)
        self._outgoing = self._advance(message)
        assert self._tls is not None
        if self._outgoing:
            return self._send_fragment(packet)
        if not self._tls.complete:
            raise EapError("EAP-TLS: the TLS handshake stalled (nothing to answer)")
        self.state = PeerState.AWAIT_SUCCESS  # the server's Finished verified
        return self._ack(packet)

    def _on_ack(self, packet: EapPacket) -> EapPacket:
        self._count()
        return self._send_fragment(packet)

    def _send_fragment(self, packet: EapPacket) -> EapPacket:
        fragment, last = self._next_fragment()
        self.state = PeerState.AWAIT_DATA if last else PeerState.AWAIT_ACK
        return EapPacket.response(packet.identifier, self.method, fragment.encode())

    def _ack(self, packet: EapPacket) -> EapPacket:
        return EapPacket.response(packet.identifier, self.method, EapTlsData().encode())

    def _on_early_success(self, packet: EapPacket) -> EapPacket | None:
        raise EapError("EAP-TLS: EAP Success before the TLS handshake completed")
