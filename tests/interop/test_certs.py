"""larval against strongSwan's charon with certificates, IKEv2 unless said: RSA PKCS#1 v1.5
and RSA-PSS, ECDSA P-256 and P-384, Ed25519, an intermediate CA on each side, subject DNs
as IDs, PSK one way and certificates the other, a 4096-bit RSA chain in IKE fragments,
IKEv1 Main Mode with RSA and ECDSA and Aggressive Mode with RSA; refused: a revoked
certificate either way (and in IKEv1), a certificate that does not carry the ID its end
claims.

Each case runs both ways in one topology, which keeps charon start-ups to one a case:
first larval initiates through its trap policy (the first ping sets off the exchange and
must arrive, as in the PSK suite), then charon deletes the IKE_SA and initiates itself.
charon (moon, in a) and larval (sun, in b) read the same swanctl credentials layout.
Most sets are made by `larval.pki` (charon uses them); the P-384 and Ed25519 sets by
strongSwan's `pki` (larval uses them).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from larval import pki
from larval.bench.charon import CharonError
from larval.ike.identity import IdType, describe_identity
from tests.interop.certs import IDS, OTHER, WRONG_SAN, CertSet, Spec, make_set
from tests.interop.harness import (
    OUTER,
    PSK,
    Charon,
    LarvalDaemon,
    Site,
    Topology,
    needs_charon,
    needs_netns,
)

pytestmark = [needs_netns, needs_charon]

SETS = {
    "rsa": Spec("rsa", 2048, extras=True),
    "ecdsa-256": Spec("ecdsa", 256),
    "ecdsa-384": Spec("ecdsa", 384, maker="strongswan"),
    "ed25519": Spec("ed25519", maker="strongswan"),
    "intermediate": Spec("ecdsa", 256, intermediates=True),
    "rsa-4096": Spec("rsa", 4096, intermediates=True),
}
#: IKE and ESP proposals, by IKE version.
PROPOSALS = {
    1: ("aes128-sha256-modp2048", "aes128-sha256"),
    2: ("aes128-sha256-x25519", "aes128gcm16"),
}
MOON, SUN = IDS["a"], IDS["b"]


#: How charon's log names the signature larval says (in its status) it made, IKEv2.
CHARON_NAMES = {
    "rsa-sha256": "RSA_EMSA_PKCS1_SHA2_256",
    "rsa-sha384": "RSA_EMSA_PKCS1_SHA2_384",
    "rsa-sha512": "RSA_EMSA_PKCS1_SHA2_512",
    "rsa/pss-sha256": r"RSA_EMSA_PSS_SHA2_256_SALT_\d+",
    "rsa/pss-sha384": r"RSA_EMSA_PSS_SHA2_384_SALT_\d+",
    "rsa/pss-sha512": r"RSA_EMSA_PSS_SHA2_512_SALT_\d+",
    "ecdsa-sha256": "(?:ECDSA_WITH_SHA256_DER|ECDSA-256 signature)",
    "ecdsa-sha384": "(?:ECDSA_WITH_SHA384_DER|ECDSA-384 signature)",
    "ecdsa-sha512": "(?:ECDSA_WITH_SHA512_DER|ECDSA-521 signature)",
    "ed25519": "ED25519",
}


#: The same for IKEv1, whose signatures are over a hash already made (RFC 2409 §5.1,
#: RFC 4754): charon names them without one.
IKEV1_CHARON_NAMES = {
    **{f"rsa-{h}": "RSA_EMSA_PKCS1_NULL" for h in ("sha1", "sha256", "sha384", "sha512")},
    **{f"ecdsa-{h}": "ECDSA_WITH_NULL" for h in ("sha256", "sha384", "sha512")},
}


@dataclass(frozen=True)
class Case:
    """Both ends of one case, and what each must see of the other."""

    certs: str  # a key of SETS
    #: What charon signs with, as larval's status names it.
    scheme: str = ""
    #: Both ends' `auth` for themselves (for the peer: "pubkey", any scheme).
    auth: str = "pubkey"
    psk: str = ""  # "larval" or "charon": that end proves itself with the PSK instead
    version: int = 2
    aggressive: bool = False  # IKEv1's Aggressive Mode in place of Main Mode
    moon: str = "moon"  # charon's certificate
    sun: str = "sun"  # larval's
    crl: bool = False  # both ends hold the CA's CRL
    fragments: bool = False  # IKE_AUTH goes in fragments both ways
    #: The ends' IDs are their certificates' subject DNs (each end's own by default).
    dn_ids: bool = False


SUCCESSES = {
    "rsa-pkcs1": Case("rsa", "rsa-sha256"),
    "rsa-pss": Case("rsa", "rsa/pss-sha256", auth="rsa/pss-sha256"),
    "ecdsa-p256": Case("ecdsa-256", "ecdsa-sha256"),
    "ecdsa-p384-strongswan-pki": Case("ecdsa-384", "ecdsa-sha384"),
    "ed25519-strongswan-pki": Case("ed25519", "ed25519"),
    "intermediate-ca": Case("intermediate", "ecdsa-sha256"),
    # A DN as strongSwan's pki writes it (PrintableString), and as larval.pki does
    # (UTF8String): the same DN to strongSwan (RFC 5280 §7.1).
    "dn-identities-strongswan-pki": Case("ecdsa-384", "ecdsa-sha384", dn_ids=True),
    "dn-identities": Case("ecdsa-256", "ecdsa-sha256", dn_ids=True),
    "larval-psk-charon-rsa": Case("rsa", "rsa-sha256", psk="larval"),
    "larval-rsa-charon-psk": Case("rsa", "rsa-sha256", psk="charon"),
    # charon signs with SHA-384 when its RSA key has more than 3072 bits.
    "rsa-4096-chain-in-fragments": Case("rsa-4096", "rsa-sha384", fragments=True),
    # IKEv1's RSA signature carries no hash of its own; larval names it by the PRF's.
    "ikev1-main-mode-rsa": Case("rsa", "rsa-sha256", version=1),
    "ikev1-main-mode-ecdsa": Case("ecdsa-256", "ecdsa-sha256", version=1),
    "ikev1-aggressive-mode-rsa": Case("rsa", "rsa-sha256", version=1, aggressive=True),
}


def _larval_refuses(what: str, cn: str) -> dict[str, str]:
    """The WARNING larval logs, as the initiator and as the responder, when the peer's
    certificate (subject CN=`cn`) does not prove it: `what` (a pattern), and the
    subject as strongSwan writes a DN; alike in both IKE versions."""
    subject = re.escape(f"C=CH, O=larval interop, CN={cn}")
    line = r"authentication of the {peer} failed: {what} \(certificate {subject}\)"
    return {
        role: line.format(peer=peer, what=what, subject=subject)
        for role, peer in (("initiator", "responder"), ("responder", "initiator"))
    }


REVOKED = r"revoked \(keyCompromise\) on [\d-]+ [\d:]+ UTC"
#: What larval logs when charon refuses it: in the IKE_AUTH response (larval initiates),
#: or in an INFORMATIONAL after it (charon initiates).
CHARON_REFUSES = {
    "initiator": r"IKE_AUTH refused: AUTHENTICATION_FAILED",
    "responder": r"the peer refused this end's authentication: AUTHENTICATION_FAILED",
}


@dataclass(frozen=True)
class Refusal:
    """A case one end refuses, and what the logs say of it."""

    case: Case
    #: What larval's log says, by larval's role.
    larval_says: dict[str, str]
    #: What charon's log says beside AUTHENTICATION_FAILED (when charon refuses).
    charon_says: str = ""
    #: larval's roles, in this order in one topology.
    roles: tuple[str, ...] = ("initiator", "responder")


IKEV1_REVOKED = Case("rsa", moon="moon-revoked", crl=True, version=1)
FAILURES = {
    "charon-cert-revoked": Refusal(
        Case("rsa", moon="moon-revoked", crl=True), _larval_refuses(REVOKED, MOON)
    ),
    "larval-cert-revoked": Refusal(
        Case("rsa", sun="sun-revoked", crl=True),
        CHARON_REFUSES,
        "certificate was revoked on .*, reason: key compromise",
    ),
    "charon-cert-without-its-id": Refusal(
        Case("rsa", moon=WRONG_SAN),
        _larval_refuses(f"identity {re.escape(MOON)} not in the certificate", OTHER),
    ),
    "ikev1-charon-cert-revoked-larval-initiates": Refusal(
        IKEV1_REVOKED, _larval_refuses(REVOKED, MOON), roles=("initiator",)
    ),
    "ikev1-charon-cert-revoked-charon-initiates": Refusal(
        IKEV1_REVOKED, _larval_refuses(REVOKED, MOON), roles=("responder",)
    ),
}


@pytest.fixture(scope="session")
def cert_sets(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], CertSet]:
    """Each set made once a session, when a case first asks for it."""
    made: dict[str, CertSet] = {}

    def get(name: str) -> CertSet:
        if SETS[name].maker == "strongswan" and shutil.which("pki") is None:
            pytest.skip("needs strongSwan's pki (strongswan-pki)")
        if name not in made:
            made[name] = make_set(SETS[name], tmp_path_factory.mktemp(f"pki-{name}"))
        return made[name]

    return get


@pytest.mark.parametrize("case", SUCCESSES.values(), ids=SUCCESSES.keys())
def test_established_both_ways(tmp_path: Path, cert_sets: Callable[[str], CertSet],
                               case: Case) -> None:  # fmt: skip
    """Traffic through the CHILD_SA; each end verified the other with the scheme larval's
    status names, and the status shows charon's certificate."""
    certs = cert_sets(case.certs)
    with Topology(tmp_path) as topo:
        charon, larval = _start(topo, certs, case)
        # larval initiates: the first packet, held while the trap policy's IKE_SA comes
        # up with certificates, arrives (count 5, 0% loss).
        result = topo.b.ping(count=5)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:],
                                                    charon.log_tail())  # fmt: skip
        _check_established(topo.b, larval, charon, certs, case, (0, 0), initiator=True)
        # charon deletes it, then initiates.
        charon.swanctl("--terminate", "--ike", "s2s")
        larval.wait_for("none")
        marks = (len(larval.log.read_text()), len(_charon_log(charon)))
        charon.initiate()
        result = topo.a.ping(count=5)
        assert " 0% packet loss" in result.stdout, (result.stdout, larval.log.read_text()[-4000:])
        _check_established(topo.b, larval, charon, certs, case, marks, initiator=False)


@pytest.mark.parametrize("refusal", FAILURES.values(), ids=FAILURES.keys())
def test_refused(tmp_path: Path, cert_sets: Callable[[str], CertSet], refusal: Refusal) -> None:
    """AUTHENTICATION_FAILED on the wire, the reason in larval's log, and no IKE_SA or
    CHILD_SA left on either side, whoever initiates."""
    case = refusal.case
    certs = cert_sets(case.certs)
    with Topology(tmp_path) as topo:
        charon, larval = _start(topo, certs, case)
        for role in refusal.roles:
            marks = (len(larval.log.read_text()), len(_charon_log(charon)))
            if role == "initiator":
                topo.b.ping(count=1)  # through larval's trap policy
            else:
                with pytest.raises(CharonError):
                    charon.initiate(timeout=5)
            wire = _refusal_on_the_wire(case, role, charon_refuses=bool(refusal.charon_says))
            says = refusal.larval_says[role]
            _check_refused(charon, larval, says, refusal.charon_says, wire, marks)


# --- both ends' configurations ------------------------------------------------------------


def _start(topo: Topology, certs: CertSet, case: Case) -> tuple[Charon, LarvalDaemon]:
    ike, esp = PROPOSALS[case.version]
    charon_cert = None if case.psk == "charon" else case.moon
    charon = topo.charon(
        topo.a, proposals=ike, esp=esp, version=case.version,
        swanctl=_charon_swanctl(case, certs),
        credentials=certs.credentials(topo.tmp / "moon-credentials", charon_cert, crl=case.crl),
    )  # fmt: skip
    loaded = charon.swanctl("--list-certs")
    if charon_cert is not None:  # strongSwan writes DNs as larval pki does
        assert pki.format_dn(certs.ends[charon_cert].cert.subject) in loaded, loaded
        assert "has private key" in loaded, loaded
    assert pki.format_dn(certs.root.subject) in loaded, loaded
    if case.crl:
        assert "List of X.509 CRLs" in loaded, loaded
    larval_cert = None if case.psk == "larval" else case.sun
    credentials = certs.credentials(topo.tmp / "sun-credentials", larval_cert, crl=case.crl)
    if case.psk == "larval":
        local = f'{{ auth = "psk", id = "{OUTER["b"]}" }}'
    else:  # with DN IDs, larval's is its certificate's subject by default
        local_id = "" if case.dn_ids else f', id = "{SUN}"'
        local = f'{{ auth = "{case.auth}", certs = ["{case.sun}.pem"]{local_id} }}'
    if case.psk == "charon":
        remote = f'{{ auth = "psk", id = "{OUTER["a"]}" }}'
    else:
        remote = f'{{ auth = "pubkey", id = "{_peer_id(case, certs, "a")}" }}'
    larval = topo.larval(
        topo.b, proposals=[ike], esp=[esp], start_action="trap", version=case.version,
        aggressive=case.aggressive,
        local=local, remote=remote, credentials=str(credentials),
        psk_ids=[OUTER["a"], OUTER["b"], MOON, SUN],
    )  # fmt: skip
    return charon, larval


def _peer_id(case: Case, certs: CertSet, site: str) -> str:
    """The ID of the end in `site` as the other end configures it: its FQDN, or the
    subject DN of its certificate in strongSwan's words."""
    if not case.dn_ids:
        return IDS[site]
    return pki.format_dn(certs.ends[case.moon if site == "a" else case.sun].cert.subject)


def _charon_swanctl(case: Case, certs: CertSet) -> str:
    ike, esp = PROPOSALS[case.version]
    indent = "\n            "
    if case.psk == "charon":
        local = ["auth = psk", f"id = {OUTER['a']}"]
    else:  # with DN IDs, charon's is its certificate's subject by default
        local = [f"auth = {case.auth}", f"certs = {case.moon}.pem"]
        local += [] if case.dn_ids else [f"id = {MOON}"]
    if case.psk == "larval":
        remote = ["auth = psk", f"id = {OUTER['b']}"]
    else:
        remote = ["auth = pubkey", f'id = "{_peer_id(case, certs, "b")}"']
    return f"""connections {{
    s2s {{
        version = {case.version}
        local_addrs = {OUTER["a"]}
        remote_addrs = {OUTER["b"]}
        encap = yes
        mobike = no
        aggressive = {"yes" if case.aggressive else "no"}
        proposals = {ike}
        local {{
            {indent.join(local)}
        }}
        remote {{
            {indent.join(remote)}
        }}
        children {{
            net {{
                local_ts = 198.51.100.0/24
                remote_ts = 203.0.113.0/24
                esp_proposals = {esp}
            }}
        }}
    }}
}}
secrets {{
    ike-s2s {{
        id-moon = {OUTER["a"] if case.psk == "charon" else MOON}
        id-sun = {OUTER["b"] if case.psk == "larval" else SUN}
        secret = "{PSK}"
    }}
}}
"""


# --- what each end must show -----------------------------------------------------------------


def _check_established(site: Site, larval: LarvalDaemon, charon: Charon, certs: CertSet,
                       case: Case, marks: tuple[int, int], *, initiator: bool) -> None:  # fmt: skip
    """What both ends show of the IKE_SA just established (their logs from `marks`)."""
    listing = charon.list_sas()
    assert f"ESTABLISHED, IKEv{case.version}" in listing, listing
    assert "INSTALLED, TUNNEL-in-UDP" in listing, listing
    larval_log, log = larval.log.read_text()[marks[0] :], _charon_log(charon)[marks[1] :]
    status = _status_json(site)
    (ike,) = [sa for sa in status["ike_sas"] if sa["state"] == "established"]
    assert ike["initiator"] is initiator
    assert status["child_sas"], status
    local, remote = ike["auth_local"], ike["auth_remote"]
    if case.psk == "larval":
        assert local["method"] == "psk", ike
        assert f"authentication of '{OUTER['b']}' with pre-shared key successful" in log, log
    else:
        # What larval says it signed with is what charon verified.
        assert local["method"] == "pubkey", ike
        names = CHARON_NAMES if case.version == 2 else IKEV1_CHARON_NAMES
        name = names[local["scheme"]]
        sun = re.escape(_peer_id(case, certs, "b"))
        assert re.search(f"authentication of '{sun}' with {name} successful", log), (ike, log)
        if case.auth != "pubkey":
            assert local["scheme"] == case.auth, ike
        # An intermediate CA charon does not hold went in larval's CERT payloads.
        for ca in certs.ends[case.sun].chain:
            assert f'received issuer cert "{pki.format_dn(ca.subject)}"' in log, log
    if certs.ends[case.moon].chain and case.psk != "charon":
        # and one larval does not hold came in charon's.
        assert re.search(r"received IKE_AUTH \w+ 1 \[ [^]]*CERT CERT ", larval_log), larval_log
    if case.psk == "charon":
        assert remote["method"] == "psk", ike
    else:
        moon = certs.ends[case.moon].cert
        assert (remote["method"], remote["scheme"]) == ("pubkey", case.scheme), ike
        assert (remote["subject"], remote["issuer"]) == (_dn(moon.subject), _dn(moon.issuer)), ike
        table = _status_text(site)
        assert f"remote authentication: pubkey {case.scheme}, {_dn(moon.subject)}" in table, table
    if case.fragments:
        # Both ends announced fragmentation (RFC 7383), and IKE_AUTH went in fragments
        # both ways: larval's CERT CERT AUTH out, charon's back.
        assert re.search(r"sending IKE_AUTH \w+ 1 \[ [^]]*CERT CERT [^]]*\] in \d+ fragments",
                         larval_log), larval_log[-4000:]  # fmt: skip
        assert re.search(r"received fragment \d+ of \d+ of IKE_AUTH", larval_log), larval_log
        assert "reassembled fragmented IKE message" in log, log[-4000:]
        assert "splitting IKE message" in log, log[-4000:]


def _refusal_on_the_wire(case: Case, role: str, *, charon_refuses: bool) -> str:
    """What charon's log shows of the refusal, larval in `role`."""
    if charon_refuses:
        return r"generating \w+ \w+ \d+ \[ N\(AUTH_FAILED\) \]"
    if role == "responder":
        return "received AUTHENTICATION_FAILED (?:error )?notify"
    if case.version == 1:  # an initiator MM6 does not convince deletes the ISAKMP SA, as
        return "received DELETE for IKE_SA"  # charon's main_mode.c does
    return r"parsed INFORMATIONAL request \d+ \[ N\(AUTH_FAILED\) \]"


def _check_refused(charon: Charon, larval: LarvalDaemon, larval_says: str, charon_says: str,
                   wire: str, marks: tuple[int, int], timeout: float = 10) -> None:  # fmt: skip
    """The refusal is on the wire (`wire` in charon's log: AUTHENTICATION_FAILED), its
    reason in larval's (and in charon's, when charon refuses), and neither end keeps an
    IKE_SA or a CHILD_SA."""
    deadline = time.monotonic() + timeout
    while True:
        log = larval.log.read_text()[marks[0] :]
        charon_log = _charon_log(charon)[marks[1] :]
        listing = charon.list_sas()
        status = larval.status()
        done = (re.search(larval_says, log) and re.search(wire, charon_log)
                and re.search(charon_says, charon_log) and not re.search(r"^\S+: #", listing, re.M)
                and not status["child_sas"] and not status["ike_sas"])  # fmt: skip
        if done:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"not refused within {timeout}s (larval's log should say "
                        f"{larval_says!r}, charon's {charon_says!r}):\n{listing}\n{status}\n"
                        f"larval:\n{log[-4000:]}\ncharon:\n{charon_log[-4000:]}")  # fmt: skip
        time.sleep(0.3)
    assert "INSTALLED" not in listing, listing


def _status_json(site: Site) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "larval", "status", "--json", "--control-socket",
         str(site.dir / "control")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result: dict[str, Any] = json.loads(out)
    return result


def _status_text(site: Site) -> str:
    return subprocess.run(
        [sys.executable, "-m", "larval", "status", "--control-socket", str(site.dir / "control")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def _dn(name: x509.Name) -> str:
    """A DN as larval's status and logs write it: strongSwan's order and words."""
    return describe_identity(IdType.ID_DER_ASN1_DN, name.public_bytes())


def _charon_log(charon: Charon) -> str:
    return (charon.dir / "charon.log").read_text(errors="replace")
