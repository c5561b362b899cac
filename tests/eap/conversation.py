"""Run an EAP server against an EAP peer in memory, recording every packet."""

from __future__ import annotations

from dataclasses import dataclass, field

from larval.crypto.randomness import RandomBytes
from larval.eap.md5 import Md5Peer, Md5Server
from larval.eap.mschapv2 import MschapV2Peer, MschapV2Server
from larval.eap.packet import EapPacket

Server = MschapV2Server | Md5Server
Peer = MschapV2Peer | Md5Peer


@dataclass
class Conversation:
    server: Server
    peer: Peer
    #: ("server" or "peer", the packet it sent), in order.
    packets: list[tuple[str, EapPacket]] = field(default_factory=list)

    def run(self, first: bytes | None = None) -> Conversation:
        """From the server's first Request (or ``first``) until one side sends nothing."""
        out: bytes | None = self.server.start() if first is None else first
        while out is not None:
            self.packets.append(("server", EapPacket.decode(out)))
            back = self.peer.receive(out)
            if back is None:
                break
            self.packets.append(("peer", EapPacket.decode(back)))
            out = self.server.receive(back)
        return self

    def last(self, who: str) -> EapPacket:
        return [p for w, p in self.packets if w == who][-1]


def scripted(*chunks: bytes) -> RandomBytes:
    """A random source that hands out ``chunks`` in order, each of the length asked."""
    it = iter(chunks)

    def draw(n: int) -> bytes:
        chunk = next(it)
        assert len(chunk) == n, (len(chunk), n)
        return chunk

    return draw
