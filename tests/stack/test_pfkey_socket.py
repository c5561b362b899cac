"""The stack's PF_KEY socket, over the real socket, checked with a decoder of the test's own."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import stat
import struct
import time

import pytest

from larval.net.unix_socket import SocketBusyError, listen
from larval.pfkey import (
    AlgType,
    EncryptAlg,
    ExtType,
    KmProto,
    PfkeyMessage,
    SadbAddress,
    SadbMsgType,
    SadbXEreg,
    SaType,
)
from larval.pfkey.requests import getspi, keyed
from tests.stack import rawpfkey as raw
from tests.stack.conftest import RunningStack

POLICY = """
[policies.s2s]
local_ts = ["203.0.113.0/24"]
remote_ts = ["198.51.100.0/24"]
action = "protect"
mode = "tunnel"
local_addrs = ["192.0.2.2"]
remote_addrs = ["192.0.2.1"]
esp_proposals = ["aes256gcm16", "aes128-sha256"]
rekey_time = "50m"
life_time = "1h"
"""


def ipv4_udp(src: str, dst: str, sport: int = 5000, dport: int = 53) -> bytes:
    """An IPv4/UDP packet (RFC 791, RFC 768); checksums are not looked at here."""
    payload = b"query"
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )  # fmt: skip
    return header + udp


def recv(sock: socket.socket) -> raw.Raw:
    return raw.parse(sock.recv(65536))


def nothing_more(sock: socket.socket) -> bool:
    sock.settimeout(0.3)
    try:
        sock.recv(65536)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(5)
    return False


def register(sock: socket.socket, extended: bool) -> raw.Raw:
    if extended:
        # illumos extended REGISTER: satype UNSPEC with the SA types in SADB_X_EXT_EREG.
        msg = PfkeyMessage(SadbMsgType.REGISTER, SaType.UNSPEC, seq=1, pid=7,
                           extensions=(SadbXEreg((SaType.ESP,)),))  # fmt: skip
    else:
        msg = PfkeyMessage(SadbMsgType.REGISTER, SaType.ESP, seq=1, pid=7)
    sock.send(msg.encode())
    reply = recv(sock)
    assert (reply.msg_type, reply.errno) == (SadbMsgType.REGISTER, 0)
    return reply


def test_socket_is_private_and_a_stale_one_is_replaced(running_stack: RunningStack) -> None:
    mode = os.stat(running_stack.pfkey_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


def test_register_reply_lists_the_supported_algorithms(running_stack: RunningStack) -> None:
    with running_stack.client() as sock:
        reply = register(sock, extended=False)
        assert set(reply.exts) == {raw.EXT_SUPPORTED_AUTH, raw.EXT_SUPPORTED_ENCRYPT}
        # struct sadb_supported (8 bytes) then 8-byte struct sadb_alg, id first.
        encrypt = reply.exts[raw.EXT_SUPPORTED_ENCRYPT][0]
        ids = {encrypt[off] for off in range(8, len(encrypt), 8)}
        assert {EncryptAlg.AES_GCM_16, EncryptAlg.AES, EncryptAlg.CHACHA20_POLY1305} <= ids


def test_getspi_and_update_over_the_socket(running_stack: RunningStack) -> None:
    with running_stack.client() as km, running_stack.client() as other:
        km.send(getspi("192.0.2.1", "192.0.2.2", seq=5, pid=99).encode())
        reply = recv(km)
        assert (reply.msg_type, reply.errno, reply.seq, reply.pid) == (1, 0, 5, 99)
        spi, state = raw.sa_spi(reply.exts[raw.EXT_SA][0])
        assert state == 0 and spi >= 256  # LARVAL
        update = keyed(SadbMsgType.UPDATE, spi, "192.0.2.1", "192.0.2.2", seq=6, pid=99,
                       encrypt=EncryptAlg.AES_GCM_16, encrypt_key=bytes(20))  # fmt: skip
        km.send(update.encode())
        for sock in (km, other):  # RFC 2367 §3.1.2: to every socket, without keys
            done = recv(sock)
            assert (done.msg_type, done.errno, done.seq) == (SadbMsgType.UPDATE, 0, 6)
            assert raw.sa_spi(done.exts[raw.EXT_SA][0]) == (spi, 1)
            assert 8 not in done.exts and 9 not in done.exts


def test_plain_and_extended_registrants_get_their_own_acquire(
    running_stack: RunningStack,
) -> None:
    assert running_stack.service is not None
    running_stack.service.load_policy(POLICY, "test.toml")
    with running_stack.client() as plain, running_stack.client() as extended, \
            running_stack.client() as bystander:  # fmt: skip
        register(plain, extended=False)
        register(extended, extended=True)
        packet = ipv4_udp("203.0.113.5", "198.51.100.7")
        verdict = running_stack.service.stack.outbound(packet, 0.0)
        assert verdict.verdict.value == "held"

        regular = recv(plain)
        assert (regular.msg_type, regular.satype) == (raw.SADB_ACQUIRE, SaType.ESP)
        assert raw.address(regular.exts[raw.EXT_ADDRESS_SRC][0])[0] == "192.0.2.2"
        assert raw.address(regular.exts[raw.EXT_ADDRESS_DST][0])[0] == "192.0.2.1"
        combs = raw.combs(regular.exts[raw.EXT_PROPOSAL][0])
        assert [(c[1], c[4], c[5]) for c in combs] == [
            (EncryptAlg.AES_GCM_16, 256, 256),
            (EncryptAlg.AES, 128, 128),
        ]
        assert combs[1][0] == 5 and combs[1][2:4] == (256, 256)  # HMAC-SHA-256, 256-bit key
        assert raw.comb_lifetimes(regular.exts[raw.EXT_PROPOSAL][0], 0)[2:] == (3000, 3600)
        assert raw.EXT_X_EPROP not in regular.exts

        ext = recv(extended)
        assert ext.msg_type == raw.SADB_ACQUIRE and ext.seq == regular.seq
        assert raw.EXT_PROPOSAL not in ext.exts
        ecombs = raw.ecombs(ext.exts[raw.EXT_X_EPROP][0])
        assert ecombs[0] == [(SaType.ESP, AlgType.CRYPT, EncryptAlg.AES_GCM_16, 256, 256)]
        assert sorted(ecombs[1]) == sorted(
            [
                (SaType.ESP, AlgType.AUTH, 5, 256, 256),
                (SaType.ESP, AlgType.CRYPT, EncryptAlg.AES, 128, 128),
            ]
        )
        assert raw.address(ext.exts[raw.EXT_ADDRESS_PROXY][0])[::3] == ("203.0.113.0", 24)
        assert raw.address(ext.exts[raw.EXT_X_ADDRESS_INNER_DST][0])[::3] == ("198.51.100.0", 24)
        assert raw.kmc(ext.exts[raw.EXT_X_KM_COOKIE][0])[0] == KmProto.IKE

        # One ACQUIRE per acquire record, not one per packet.
        running_stack.service.stack.outbound(packet, 1.0)
        running_stack.settle()
        assert nothing_more(plain) and nothing_more(extended) and nothing_more(bystander)


def test_inverse_acquire(running_stack: RunningStack) -> None:
    assert running_stack.service is not None
    running_stack.service.load_policy(POLICY, "test.toml")
    with running_stack.client() as km:
        # The responder asks what policy would accept for the peer's traffic selectors.
        ask = PfkeyMessage(
            SadbMsgType.X_INVERSE_ACQUIRE, SaType.ESP, seq=3, pid=11,
            extensions=(
                SadbAddress(ExtType.ADDRESS_SRC, ipaddress.ip_address("192.0.2.2")),
                SadbAddress(ExtType.ADDRESS_DST, ipaddress.ip_address("192.0.2.1")),
                SadbAddress(ExtType.ADDRESS_PROXY, ipaddress.ip_address("203.0.113.0"),
                            prefixlen=24),
                SadbAddress(ExtType.X_ADDRESS_INNER_DST, ipaddress.ip_address("198.51.100.0"),
                            prefixlen=24),
            ),
        )  # fmt: skip
        km.send(ask.encode())
        reply = recv(km)
        assert (reply.msg_type, reply.errno, reply.seq) == (raw.SADB_X_INVERSE_ACQUIRE, 0, 3)
        ecombs = raw.ecombs(reply.exts[raw.EXT_X_EPROP][0])
        assert ecombs[0][0][2] == EncryptAlg.AES_GCM_16

        nobody = PfkeyMessage(
            SadbMsgType.X_INVERSE_ACQUIRE, SaType.ESP, seq=4, pid=11,
            extensions=(
                SadbAddress(ExtType.ADDRESS_SRC, ipaddress.ip_address("192.0.2.2")),
                SadbAddress(ExtType.ADDRESS_DST, ipaddress.ip_address("192.0.2.99")),
            ),
        )  # fmt: skip
        km.send(nobody.encode())
        refused = recv(km)
        assert (refused.errno, refused.seq, refused.exts) == (errno.ENOENT, 4, {})


def test_garbage_and_vanishing_clients_do_not_affect_others(
    running_stack: RunningStack,
) -> None:
    with running_stack.client() as good:
        register(good, extended=False)
        bad = running_stack.client()
        bad.send(b"\x02\x01\x00\x03\xff\xff")  # shorter than a base header
        reply = recv(bad)
        assert reply.errno == errno.EMSGSIZE
        bad.send(b"\x02\x01\x00\x03\x05\x00\x00\x00" + bytes(8) + b"\xff" * 24)  # lying length
        assert recv(bad).errno != 0
        lie = bytearray(getspi("192.0.2.1", "192.0.2.2").encode())
        lie[16:18] = (200).to_bytes(2, "little")  # an extension running past the end
        bad.send(bytes(lie))
        assert recv(bad).errno == errno.EINVAL
        bad.close()  # vanishes without a word

        good.send(getspi("192.0.2.1", "192.0.2.2", seq=9, pid=1).encode())
        reply = recv(good)
        assert (reply.errno, reply.seq) == (0, 9)
        assert running_stack.service is not None
        assert len(running_stack.service.stack.sadb) == 1
        running_stack.settle()
        assert running_stack.service.pfkey.clients == 1


def test_promiscuous_socket_sees_other_sockets_traffic(running_stack: RunningStack) -> None:
    with running_stack.client() as watcher, running_stack.client() as km:
        watcher.send(PfkeyMessage(SadbMsgType.X_PROMISC, 1, seq=1, pid=3).encode())
        assert recv(watcher).msg_type == SadbMsgType.X_PROMISC
        km.send(getspi("192.0.2.1", "192.0.2.2", seq=2, pid=4).encode())
        recv(km)
        seen = [recv(watcher), recv(watcher)]  # the request, then its reply
        assert [(m.msg_type, m.pid, bool(m.exts.get(raw.EXT_SA))) for m in seen] == [
            (SadbMsgType.GETSPI, 4, False),
            (SadbMsgType.GETSPI, 4, True),
        ]


def test_a_second_stack_on_a_live_socket_is_refused(running_stack: RunningStack) -> None:
    with pytest.raises(SocketBusyError, match="already serving"):
        listen(running_stack.pfkey_path, socket.SOCK_SEQPACKET, "--pfkey-socket")
    # and the refused one took nothing away: the first still answers
    with running_stack.client() as sock:
        assert register(sock, extended=False).errno == 0


def test_a_stale_socket_file_is_replaced(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "pfkey")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dead.bind(path)
    dead.close()  # the file stays behind, as after a crash
    sock, bound = listen(path, socket.SOCK_SEQPACKET, "--pfkey-socket")
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as client:
            client.connect(path)
    finally:
        sock.close()
        bound.remove()
    assert not os.path.exists(path)


def test_expire_reaches_registered_sockets_only(running_stack: RunningStack) -> None:
    from larval.pfkey import SadbLifetime

    with running_stack.client() as km, running_stack.client() as other:
        register(km, extended=False)
        add = keyed(SadbMsgType.ADD, 0x4000, "192.0.2.2", "192.0.2.1", seq=2, pid=7,
                    encrypt=EncryptAlg.AES_GCM_16, encrypt_key=bytes(20),
                    soft=SadbLifetime(ExtType.LIFETIME_SOFT, addtime=1),
                    hard=SadbLifetime(ExtType.LIFETIME_HARD, addtime=2))  # fmt: skip
        km.send(add.encode())
        assert recv(km).errno == 0 and recv(other).errno == 0  # the ADD, to everyone
        # The ager runs every second: the soft EXPIRE comes about 1 s after the ADD and the
        # hard one about 2 s after; the timeout is headroom for a machine under load.
        km.settimeout(20)
        soft = recv(km)
        hard = recv(km)
        assert [soft.msg_type, hard.msg_type] == [8, 8]  # SADB_EXPIRE
        assert 4 in soft.exts and 3 in hard.exts  # LIFETIME_SOFT, then LIFETIME_HARD
        assert raw.sa_spi(hard.exts[raw.EXT_SA][0]) == (0x4000, 3)  # DEAD
        assert nothing_more(other)


def test_a_slow_promiscuous_reader_is_told_what_it_missed(running_stack: RunningStack) -> None:
    from larval.net.pfkey_server import MAX_QUEUED_BYTES

    assert running_stack.service is not None and running_stack.service.pfkey is not None
    big = b"\x02\x01\x00\x03\xff\xff" + bytes(150_000)  # garbage: copied, then refused
    with running_stack.client() as watcher, running_stack.client() as sender:
        watcher.send(PfkeyMessage(SadbMsgType.X_PROMISC, 1, seq=1, pid=3).encode())
        assert recv(watcher).msg_type == SadbMsgType.X_PROMISC
        sent = 40  # 6 MB of copies for a watcher that does not read
        for _ in range(sent):
            sender.send(big)
            assert recv(sender).errno != 0
        missed = running_stack.service.pfkey.missed
        # Bounded in bytes: what waits is at most MAX_QUEUED_BYTES (and the kernel's buffer).
        assert missed >= sent - (MAX_QUEUED_BYTES + 600_000) // len(big) > 0
        copies = 0
        while True:
            data = watcher.recv(MAX_QUEUED_BYTES)
            if len(data) == len(big):
                copies += 1
                continue
            notice = raw.parse(data)  # once caught up: ENOBUFS, and how many (in seq)
            assert (notice.msg_type, notice.errno, notice.pid) == (1, errno.ENOBUFS, 0)
            assert notice.seq == missed and copies + missed == sent
            break
        # The watcher is still served: it sees the next request whole.
        sender.send(getspi("192.0.2.1", "192.0.2.2", seq=9, pid=4).encode())
        assert recv(sender).errno == 0
        assert recv(watcher).msg_type == SadbMsgType.GETSPI


def test_a_dump_waits_for_a_reader_that_is_slow(running_stack: RunningStack) -> None:
    """Replies to a client's own request are not dropped: it is not read from until it
    has taken them."""
    from larval.net.pfkey_server import MAX_QUEUED

    count = MAX_QUEUED + 500
    with running_stack.client() as km:
        for i in range(count):
            add = keyed(SadbMsgType.ADD, 0x10000 + i, "192.0.2.2", "192.0.2.1", seq=i, pid=7,
                        encrypt=EncryptAlg.AES_GCM_16, encrypt_key=bytes(20))  # fmt: skip
            km.send(add.encode())
            assert recv(km).errno == 0
        km.send(PfkeyMessage(SadbMsgType.DUMP, SaType.UNSPEC, seq=99, pid=7).encode())
        km.send(getspi("192.0.2.1", "192.0.2.2", seq=100, pid=7).encode())  # read after it
        running_stack.settle()
        time.sleep(0.5)  # not reading: the stack's queue for km fills
        spis = set()
        while True:
            reply = recv(km)
            assert (reply.msg_type, reply.errno) == (SadbMsgType.DUMP, 0)
            if reply.seq == 0:
                break  # the end marker
            spis.add(raw.sa_spi(reply.exts[raw.EXT_SA][0])[0])
        assert len(spis) == count
        after = recv(km)
        assert (after.msg_type, after.seq, after.errno) == (SadbMsgType.GETSPI, 100, 0)
