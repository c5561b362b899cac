"""Known answers from an independent implementation: larval's key derivation against
strongSwan's, for IKEv2 and IKEv1.

larval's IKE side runs in this process: a session drawing from a seeded source, behind
UDP 500 and 4500 sockets opened in namespace a, framed as `larval run` frames them. charon
answers in namespace b with every subsystem logging at level 4, where it writes the
Diffie-Hellman secret, SKEYSEED and SK_* (IKEv2), SKEYID, SKEYID_d/a/e, the cipher key
and the first IV (IKEv1), and each CHILD_SA's keys, as hex dumps.

The test then takes the DH private value and the nonce larval drew from its source and
derives, with larval's own functions, what charon must have logged; each value must be in
charon's log exactly. A private value larval did not use must give other keys, so the
comparison can fail. Secrets stay in the test's tmp directory: charon's log is there, and
a mismatch names the value, never its bytes.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from larval.bench.charon import Charon, ConnConfig
from larval.bench.charon import ChildConfig as CharonChild
from larval.crypto.dh import DhGroup, DhKeyPair
from larval.crypto.ike_keys import derive_ike_sa_keys
from larval.crypto.ike_proposals import parse_ike_proposal
from larval.crypto.ike_transforms import (
    IntegId,
    TransformType,
    encr_key_size,
    integ_key_size,
)
from larval.crypto.ikev1_keys import Ikev1Prf, derive_phase1, ikev1_dh_group, skeyid_psk
from larval.crypto.prf import Prf
from larval.errors import LarvalError
from larval.esp import NON_ESP_MARKER
from larval.ike import IKE_PORT, NAT_T_PORT
from larval.ike.config import ChildConfig, IkeConfig
from larval.ike.events import ChildSaFailed, ChildSaUp, Event, IkeSaDown
from larval.ikev1 import message as v1message
from larval.ikev1 import payloads as v1payloads
from larval.ikev1.session import IkeV1Session
from larval.ikev2 import message as v2message
from larval.ikev2 import payloads as v2payloads
from larval.ikev2.session import IkeSession
from larval.net.netns import Netns
from tests.ikev2.test_session import child, config
from tests.interop.harness import INNER, NET, OUTER, PSK, Site, Topology, needs_charon, needs_netns
from tests.seeded import SeededRandom

pytestmark = [
    needs_netns,
    needs_charon,
    pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning"),
]

Wire = list[tuple[str, bytes]]  # ("out" | "in", IKE message without the non-ESP marker)


# -- charon's side: the hex dumps of its log ----------------------------------------------

# 10:33:42 11[IKE] <1> SKEYSEED => 32 bytes @ 0x7fa264009d50
# 10:33:42 11[IKE] <1>    0: 29 F1 2C 15 4F BD B5 4D 59 E7 AB D2 FD 29 21 D6  ).,.O..MY....)!.
_DUMP = re.compile(r"^\S+ (\d+)\[\w+\] (?:<[^>]*> )?(.+?) => (\d+) bytes @ 0x[0-9a-fA-F]+$")
_ROW = re.compile(r"^\S+ (\d+)\[\w+\] (?:<[^>]*> )?\s*\d+: ((?:[0-9A-F]{2} )+)")


def charon_dumps(log: str) -> dict[str, list[bytes]]:
    """Every value charon dumped (``label => n bytes``), by label, in the order logged."""
    dumps: dict[str, list[bytes]] = {}
    pending: dict[str, tuple[str, int, bytearray]] = {}  # by charon thread
    for line in log.splitlines():
        if m := _DUMP.match(line):
            pending[m[1]] = (m[2], int(m[3]), bytearray())
        elif (m := _ROW.match(line)) and m[1] in pending:
            label, size, data = pending[m[1]]
            data += bytes.fromhex("".join(m[2].split()[: min(16, size - len(data))]))
        else:
            continue
        for thread, (label, size, data) in list(pending.items()):
            if len(data) == size:
                dumps.setdefault(label, []).append(bytes(data))
                del pending[thread]
    return dumps


def start_charon(topo: Topology, version: int, proposal: str, esp: str) -> Charon:
    site = topo.b
    site.ns.run(["ip", "address", "add", f"{INNER[site.name]}/32", "dev", "lo"])
    charon = Charon(site.ns, site.dir / "charon", loglevel=4)
    charon.write_config(
        ConnConfig(site.address, OUTER[site.peer], PSK,
                   CharonChild(NET[site.name], NET[site.peer], esp_proposals=esp),
                   proposals=proposal, version=version)
    )  # fmt: skip
    topo.charons.append(charon)
    charon.start()
    return charon


def wait_for_labels(
    charon: Charon, labels: set[str], timeout: float = 10
) -> dict[str, list[bytes]]:
    """charon's dumps once every label in `labels` is there (QM3 may still be on its way)."""
    deadline = time.monotonic() + timeout
    while True:
        dumps = charon_dumps((charon.dir / "charon.log").read_text(errors="replace"))
        missing = labels - dumps.keys()
        if not missing:
            return dumps
        if time.monotonic() > deadline:
            pytest.fail(f"charon logged no {sorted(missing)}: {charon.dir / 'charon.log'}")
        time.sleep(0.2)


def mismatches(ours: dict[str, bytes], theirs: dict[str, list[bytes]]) -> list[str]:
    """The labels whose value charon did not log exactly once as larval has it."""
    return [label for label, value in ours.items() if theirs.get(label) != [value]]


# -- larval's side: a session over UDP in namespace a -------------------------------------

Session = IkeSession | IkeV1Session


def _bind(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    return sock


@dataclass
class UdpIke:
    """UDP 500 and 4500 in a namespace, framed as `larval run` frames IKE: bare on 500,
    behind the non-ESP marker on 4500 (RFC 3948 §2.2)."""

    ns: Netns
    address: str

    def run(
        self, session: Session, start: ChildConfig, timeout: float = 20
    ) -> tuple[Wire, ChildSaUp]:
        """Initiate, carry datagrams until the CHILD_SA is up (and a second more, for
        the last message to go out); the wire and the ChildSaUp."""
        socks = {port: self.ns.call(_bind, self.address, port) for port in (IKE_PORT, NAT_T_PORT)}
        wire: Wire = []
        up: ChildSaUp | None = None
        up_at = 0.0
        try:
            session.initiate(start, time.monotonic())
            deadline = time.monotonic() + timeout
            while time.monotonic() < (deadline if up is None else min(deadline, up_at + 1.0)):
                now = time.monotonic()
                for data, (host, port) in session.datagrams_to_send(now):
                    wire.append(("out", data))
                    if port == NAT_T_PORT:
                        socks[NAT_T_PORT].sendto(NON_ESP_MARKER + data, (host, port))
                    else:
                        socks[IKE_PORT].sendto(data, (host, port))
                for event in _events(session):
                    if isinstance(event, IkeSaDown | ChildSaFailed):
                        pytest.fail(f"larval gave up: {event}")
                    if isinstance(event, ChildSaUp) and up is None:
                        up, up_at = event, now
                timer = session.get_timer()
                wait = 0.1 if timer is None else max(0.0, min(0.1, timer - now))
                readable, _, _ = select.select(list(socks.values()), [], [], wait)
                for sock in readable:
                    data, addr = sock.recvfrom(65535)
                    if sock is socks[NAT_T_PORT]:
                        if not data.startswith(NON_ESP_MARKER):
                            continue  # ESP: no dataplane here
                        data = data[len(NON_ESP_MARKER) :]
                    wire.append(("in", data))
                    session.receive_datagram(data, (addr[0], addr[1]), time.monotonic())
                if timer is not None and time.monotonic() >= timer:
                    session.handle_timer(time.monotonic())
        finally:
            for sock in socks.values():
                sock.close()
        if up is None:
            pytest.fail(f"no CHILD_SA with charon within {timeout} s")
        return wire, up


def _events(session: Session) -> Iterator[Event]:
    while (event := session.next_event()) is not None:
        yield event


def _ike_config(site: Site, proposal: str) -> IkeConfig:
    local, remote = ipaddress.ip_address(site.address), ipaddress.ip_address(OUTER[site.peer])
    return config(local, remote, psk=PSK.encode(), proposals=(proposal,))


def _child(site: Site, esp: str) -> ChildConfig:
    local, remote = ipaddress.ip_network(NET[site.name]), ipaddress.ip_network(NET[site.peer])
    return child(local, remote, (esp,))


def drawn_key_pair(group: DhGroup, drawn: list[bytes], public: bytes) -> DhKeyPair:
    """The key pair larval made from its source: `group.generate` replayed on the draws
    from each one on, until one gives the public value larval sent."""
    for start in range(len(drawn)):
        replay = iter(drawn[start:])

        def source(n: int, replay: Iterator[bytes] = replay) -> bytes:
            chunk = next(replay, b"")
            if len(chunk) != n:
                raise LarvalError("not this draw")
            return chunk

        try:
            pair = group.generate(source)
        except LarvalError:
            continue
        if pair.public_bytes == public:
            return pair
    pytest.fail(f"no draw of larval's source gives the {group!r} public value it sent")


def child_keys(up: ChildSaUp) -> dict[str, bytes]:
    """A CHILD_SA's keys as the session that initiated it derived them, named as charon
    names them: the initiator's are those it sends with."""
    keys = {
        "encryption initiator key": up.keys_out.encr_key,
        "encryption responder key": up.keys_in.encr_key,
    }
    if up.keys_out.integ_key:
        keys |= {
            "integrity initiator key": up.keys_out.integ_key,
            "integrity responder key": up.keys_in.integ_key,
        }
    return keys


def _first(wire: Wire, way: str, decode: object, kind: type) -> tuple[object, object]:
    """The first message sent `way` that decodes in the clear and holds a `kind`."""
    for direction, data in wire:
        if direction != way:
            continue
        try:
            message = decode(data)  # type: ignore[operator]
        except LarvalError:
            continue  # encrypted, or a fragment
        payload = message.first(kind)
        if payload is not None:
            return message, payload
    pytest.fail(f"no {kind.__name__} {way} on the wire")


# -- IKEv2 --------------------------------------------------------------------------------

IKEV2_CASES = [
    ("aes128-sha256-x25519", "aes128-sha256"),
    ("aes256gcm16-prfsha384-ecp384", "aes256gcm16"),
    ("aes128-sha256-modp2048", "aes128gcm16"),
]


@pytest.mark.parametrize(("proposal", "esp"), IKEV2_CASES, ids=[c[0] for c in IKEV2_CASES])
def test_ikev2_keys_are_the_ones_charon_derived(tmp_path: Path, proposal: str, esp: str) -> None:
    suite = {t.type: t for t in parse_ike_proposal(proposal)}
    encr, dh = suite[TransformType.ENCR], suite[TransformType.DH]
    integ = suite.get(TransformType.INTEG)
    integ_id = IntegId(integ.id if integ is not None else IntegId.NONE)
    prf = Prf(suite[TransformType.PRF].id)
    source = SeededRandom(f"kat-ikev2-{proposal}")
    with Topology(tmp_path) as topo:
        charon = start_charon(topo, 2, proposal, esp)
        spis = itertools.count(0xC0DE0000)
        session = IkeSession(_ike_config(topo.a, proposal), initiator=True,
                             allocate_spi=lambda: next(spis), random_bytes=source)  # fmt: skip
        # IKE_SA_INIT { SA, KE, Ni, N(NAT_D)... } -->  <-- { SA, KE, Nr, N(NAT_D)... }
        # IKE_AUTH { SK{IDi, AUTH, SA, TSi, TSr} } -->  <-- { SK{IDr, AUTH, SA, TSi, TSr} }
        wire, up = UdpIke(topo.a.ns, topo.a.address).run(session, _child(topo.a, esp))
        theirs = wait_for_labels(charon, {"SKEYSEED", "Sk_pr secret"} | child_keys(up).keys())

    request, ke_i = _first(wire, "out", v2message.decode_message, v2payloads.KePayload)
    response, ke_r = _first(wire, "in", v2message.decode_message, v2payloads.KePayload)
    assert isinstance(request, v2message.IkeMessage) and isinstance(response, v2message.IkeMessage)
    assert isinstance(ke_i, v2payloads.KePayload) and isinstance(ke_r, v2payloads.KePayload)
    nonce_i = request.first(v2payloads.NoncePayload)
    nonce_r = response.first(v2payloads.NoncePayload)
    assert nonce_i is not None and nonce_r is not None
    assert nonce_i.data in source.drawn  # Ni came from the injected source
    pair = drawn_key_pair(DhGroup.of(dh.id), source.drawn, ke_i.data)

    def ours(pair: DhKeyPair) -> dict[str, bytes]:
        g_ir = pair.shared_secret(ke_r.data)
        keys = derive_ike_sa_keys(
            prf, nonce_i.data, nonce_r.data, g_ir, response.spi_i, response.spi_r,
            encr_key_size(encr), integ_key_size(integ_id),
        )  # fmt: skip
        values = {
            "shared Diffie Hellman secret": g_ir,
            "SKEYSEED": keys.skeyseed,
            "Sk_d secret": keys.sk_d,
            "Sk_ei secret": keys.sk_ei,
            "Sk_er secret": keys.sk_er,
            "Sk_pi secret": keys.sk_pi,
            "Sk_pr secret": keys.sk_pr,
        }
        # An AEAD has no SK_a (RFC 5282 §7.1), and charon logs none.
        if integ_id != IntegId.NONE:
            values |= {"Sk_ai secret": keys.sk_ai, "Sk_ar secret": keys.sk_ar}
        return values

    log = tmp_path / "b" / "charon" / "charon.log"
    assert not mismatches(ours(pair), theirs), f"larval and charon differ, see {log}"
    assert not mismatches(child_keys(up), theirs), f"CHILD_SA keys differ, see {log}"
    # Another private value gives other keys: the comparison above can fail.
    other = DhGroup.of(dh.id).generate(SeededRandom("not larval's"))
    assert sorted(mismatches(ours(other), theirs)) == sorted(ours(other))


# -- IKEv1 --------------------------------------------------------------------------------

# (IKE proposal, its hash, its cipher key length in bytes, ESP proposal)
IKEV1_CASES = [
    ("aes256-sha256-modp2048", "sha256", 32, "aes128-sha256"),
    ("aes128-sha256-ecp256", "sha256", 16, "aes128gcm16"),
]


@pytest.mark.parametrize(
    ("proposal", "hash_name", "key_len", "esp"), IKEV1_CASES, ids=[c[0] for c in IKEV1_CASES]
)
def test_ikev1_keys_are_the_ones_charon_derived(
    tmp_path: Path, proposal: str, hash_name: str, key_len: int, esp: str
) -> None:
    dh_id = {t.type: t for t in parse_ike_proposal(proposal)}[TransformType.DH].id
    source = SeededRandom(f"kat-ikev1-{proposal}")
    with Topology(tmp_path) as topo:
        charon = start_charon(topo, 1, proposal, esp)
        spis = itertools.count(0xC0DE0000)
        session = IkeV1Session(_ike_config(topo.a, proposal), initiator=True,
                               allocate_spi=lambda: next(spis), random_bytes=source,
                               child_policy=lambda tsi, tsr: None)  # fmt: skip
        # MM1 { SA, VID... } -->  <-- MM2   MM3 { KE, Ni, NAT-D... } -->  <-- MM4
        # MM5 *{ IDii, HASH_I } -->  <-- MM6 *{ IDir, HASH_R }
        # QM1 *{ HASH(1), SA, Ni, IDci, IDcr } -->  <-- QM2   QM3 *{ HASH(3) } -->
        wire, up = UdpIke(topo.a.ns, topo.a.address).run(session, _child(topo.a, esp))
        labels = {"SKEYID", "SKEYID_e", "encryption key Ka"} | child_keys(up).keys()
        theirs = wait_for_labels(charon, labels)

    mm3, ke_i = _first(wire, "out", v1message.decode_message, v1payloads.KePayload)
    mm4, ke_r = _first(wire, "in", v1message.decode_message, v1payloads.KePayload)
    assert isinstance(mm3, v1message.IkeV1Message) and isinstance(mm4, v1message.IkeV1Message)
    assert isinstance(ke_i, v1payloads.KePayload) and isinstance(ke_r, v1payloads.KePayload)
    nonce_i, nonce_r = mm3.first(v1payloads.NoncePayload), mm4.first(v1payloads.NoncePayload)
    assert nonce_i is not None and nonce_r is not None
    assert nonce_i.data in source.drawn  # Ni came from the injected source
    group = ikev1_dh_group(dh_id)
    pair = drawn_key_pair(group, source.drawn, ke_i.data)

    def ours(pair: DhKeyPair) -> dict[str, bytes]:
        prf = Ikev1Prf(hash_name)
        g_xy = pair.shared_secret(ke_r.data)
        skeyid = skeyid_psk(prf, PSK.encode(), nonce_i.data, nonce_r.data)
        keys = derive_phase1(prf, skeyid, g_xy, mm4.cookie_i, mm4.cookie_r, key_len, 16,
                             g_xi=ke_i.data, g_xr=ke_r.data)  # fmt: skip
        return {
            "shared Diffie Hellman secret": g_xy,
            "SKEYID": keys.skeyid,
            "SKEYID_d": keys.skeyid_d,
            "SKEYID_a": keys.skeyid_a,
            "SKEYID_e": keys.skeyid_e,
            "encryption key Ka": keys.enc_key,
            "initial IV": keys.iv,
        }

    log = tmp_path / "b" / "charon" / "charon.log"
    assert not mismatches(ours(pair), theirs), f"larval and charon differ, see {log}"
    assert not mismatches(child_keys(up), theirs), f"IPsec SA keys differ, see {log}"
    # Another private value gives other keys: the comparison above can fail. SKEYID and
    # the IV stay: with a pre-shared key SKEYID takes no g^xy (RFC 2409 §5.4), and the IV
    # hashes the public values on the wire (Appendix B).
    other = group.generate(SeededRandom("not larval's"))
    assert set(mismatches(ours(other), theirs)) == set(ours(other)) - {"SKEYID", "initial IV"}
