"""larval as a remote-access gateway for any peer (``remote_addrs = ["%any"]``, a pool) and
two charons as road warriors (``vips = 0.0.0.0``) at once: from two addresses; from behind
one NAT router (MASQUERADE with port translation), so that both come from one address
and only the ports tell them apart; and on two connections that differ by the remote
identity, each client landing on its own. Each gets its own IKE SA, its own address (a
reserved one per identity, so that each charon knows its own beforehand) and CHILD_SA,
and pings the gateway's protected network while the other does.

    client c1 (192.0.2.1) ---\\                    /--- G 192.0.2.2, TUN 203.0.113.1/24
    client c2 (192.0.2.5) ---- routed to G ------/
    NAT: c1 192.0.2.130, c2 192.0.2.131 --- bridge 192.0.2.129 | router 192.0.2.1 --- G
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest

from larval.bench.charon import Charon, CharonError, ChildConfig, ConnConfig
from larval.net.netns import Netns, veth_pair
from tests.interop.certs import IDS, Spec, make_set
from tests.interop.harness import (
    INNER,
    NAT_PORTS,
    PSK,
    LarvalDaemon,
    Site,
    needs_charon,
    needs_netns,
)
from tests.interop.test_nat import needs_nft

pytestmark = [needs_netns, needs_charon]

GATEWAY = "192.0.2.2"
HOME = "203.0.113.0/24"
POOL = "10.3.0.0/24"
VIPS = {"carol": "10.3.0.10", "dave": "10.3.0.20"}
SECRETS = {"carol": "carol-interop-psk-0123456789", "dave": "dave-interop-psk-0123456789"}
SUITE = ("aes128-sha256-x25519", "aes128gcm16")
#: Each identity's reserved address, by whose it is.
IDENTITIES = {"carol@example.org": "carol", "dave@example.org": "dave"}


def gateway_config(
    site: Site, connections: str, credentials: Path | None, identities: dict[str, str]
) -> str:
    """larval's: a TUN on the home network, the pool with each identity's address (by
    whose it is: carol's or dave's), and `connections` (TOML) for any peer."""
    reserved = ", ".join(f'"{who}" = "{VIPS[name]}"' for who, name in identities.items())
    return f"""
[daemon]
{f'credentials = "{credentials}"' if credentials else ""}
addresses = ["{GATEWAY}"]
tun = "larval0"
tun_addresses = ["{INNER["b"]}/24"]
control_socket = "{site.dir / "control"}"
pfkey_socket = "{site.dir / "pfkey"}"

[pools.rw]
addrs = "{POOL}"
reserved = {{ {reserved} }}
{connections}"""


def rw_connection(name: str, remote_id: str, secret: str) -> str:
    return f"""
[connections.{name}]
local_addrs = ["{GATEWAY}"]
remote_addrs = ["%any"]
proposals = ["{SUITE[0]}"]
pools = ["rw"]
local = {{ auth = "psk", id = "{GATEWAY}" }}
remote = {{ auth = "psk", id = "{remote_id}" }}

[connections.{name}.children.home]
local_ts = ["{HOME}"]
remote_ts = ["{POOL}"]
esp_proposals = ["{SUITE[1]}"]

[secrets.ike-{name}]
ids = ["{GATEWAY}"{"" if remote_id == "%any" else f', "{remote_id}"'}]
secret = "{secret}"
"""


def road_warrior(address: str, who: str, secret: str) -> str:
    """charon's swanctl.conf: ``who@example.org`` with a PSK, asking for an address."""
    return f"""connections {{
    rw {{
        version = 2
        local_addrs = {address}
        remote_addrs = {GATEWAY}
        encap = no
        mobike = no
        vips = 0.0.0.0
        proposals = {SUITE[0]}
        local {{
            auth = psk
            id = {who}@example.org
        }}
        remote {{
            auth = psk
            id = {GATEWAY}
        }}
        children {{
            net {{
                remote_ts = {HOME}
                esp_proposals = {SUITE[1]}
            }}
        }}
    }}
}}
secrets {{
    ike-rw {{
        id-local = {who}@example.org
        id-remote = {GATEWAY}
        secret = "{secret}"
    }}
}}
"""


class Clients:
    """The gateway's namespace and two clients' (carol, dave), joined as `layout` says:
    ``"routed"`` (each on a link of its own to the gateway) or ``"nat"`` (both on one
    LAN behind a NAT router). Everything goes when the `with` block ends."""

    def __init__(self, tmp: Path, layout: str) -> None:
        self.tmp, self.layout = tmp, layout
        self.stack = ExitStack()
        self.charons: dict[str, Charon] = {}
        self.addresses: dict[str, str] = {}

    def __enter__(self) -> Clients:
        try:
            self._build()
        except BaseException:
            self.stack.close()
            raise
        return self

    def _build(self) -> None:
        tag = uuid.uuid4().hex[:6]
        gw_ns = self.stack.enter_context(Netns(f"gwG{tag}"))
        self.ns = {who: self.stack.enter_context(Netns(f"gw{who[0].upper()}{tag}"))
                   for who in ("carol", "dave")}  # fmt: skip
        if self.layout == "routed":
            # Two links; the gateway's one address (the tunnels' end) reached over both.
            veth_pair(self.ns["carol"], gw_ns, "192.0.2.1/30", f"{GATEWAY}/30", name_b="c0")
            veth_pair(self.ns["dave"], gw_ns, "192.0.2.5/30", "192.0.2.6/30", name_b="d0")
            self.ns["dave"].run(["ip", "route", "add", GATEWAY, "via", "192.0.2.6"])
            self.addresses = {"carol": "192.0.2.1", "dave": "192.0.2.5"}
        else:
            router = self.stack.enter_context(Netns(f"gwN{tag}"))
            router.run(["ip", "link", "add", "br0", "type", "bridge"])
            for i, who in enumerate(("carol", "dave")):
                veth_pair(self.ns[who], router, f"192.0.2.{130 + i}/25", f"198.51.100.{1 + i}/32",
                          name_b=f"p{i}")  # fmt: skip
                router.run(["ip", "address", "flush", "dev", f"p{i}"])
                router.run(["ip", "link", "set", f"p{i}", "master", "br0"])
                self.ns[who].run(["ip", "route", "add", "default", "via", "192.0.2.129"])
            router.run(["ip", "address", "add", "192.0.2.129/25", "dev", "br0"])
            router.run(["ip", "link", "set", "br0", "up"])
            veth_pair(router, gw_ns, "192.0.2.1/25", f"{GATEWAY}/25", name_a="out0")
            router.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            rules = self.tmp / "nat.nft"
            rules.write_text(
                "table ip nat {\n chain post {\n  type nat hook postrouting priority srcnat;\n"
                f'  oifname "out0" meta l4proto udp masquerade to :{NAT_PORTS}\n'
                '  oifname "out0" masquerade\n }\n}\n'
            )
            router.run(["nft", "-f", str(rules)])
            self.addresses = {"carol": "192.0.2.130", "dave": "192.0.2.131"}
        for ns in (gw_ns, *self.ns.values()):
            ns.run(["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"])
        self.gateway = Site("b", gw_ns, self.tmp / "gw", GATEWAY)
        self.gateway.dir.mkdir(parents=True, exist_ok=True)

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def larval(
        self, connections: str, credentials: Path | None = None,
        identities: dict[str, str] = IDENTITIES,
    ) -> LarvalDaemon:  # fmt: skip
        config = gateway_config(self.gateway, connections, credentials, identities)
        daemon = LarvalDaemon(self.gateway, config)
        self.stack.callback(daemon.stop)
        daemon.start()
        return daemon

    def charon(
        self, who: str, secret: str, swanctl: str = "", credentials: Path | None = None
    ) -> Charon:
        """carol's or dave's charon, with its (reserved) virtual address on its loopback
        for charon's route to the home network (charon installs none itself here)."""
        ns, address = self.ns[who], self.addresses[who]
        ns.run(["ip", "address", "add", f"{VIPS[who]}/32", "dev", "lo"])
        charon = Charon(ns, self.tmp / who)
        charon.write_config(ConnConfig(address, GATEWAY, secret, ChildConfig("dynamic", HOME)))
        swanctl = swanctl or road_warrior(address, who, secret)
        (charon.dir / "swanctl" / "swanctl.conf").write_text(swanctl)
        if credentials is not None:
            shutil.copytree(credentials, charon.dir / "swanctl", dirs_exist_ok=True)
        self.stack.callback(charon.stop)
        charon.start()
        self.charons[who] = charon
        return charon

    def _ping(self, who: str) -> subprocess.Popen[str]:
        argv = ["ip", "netns", "exec", self.ns[who].name, "ping", "-c", "5", "-i", "0.2", "-W",
                "2", "-I", VIPS[who], INNER["b"]]  # fmt: skip
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def ping_both(self) -> dict[str, str]:
        """Both clients ping the gateway's home address from their own at once."""
        procs = {who: self._ping(who) for who in ("carol", "dave")}
        return {who: p.communicate(timeout=30)[0] for who, p in procs.items()}


def _check_both(clients: Clients, larval: LarvalDaemon, names: dict[str, str]) -> None:
    """Both up at once, each with its own IKE SA, address and CHILD_SA; pings both ways."""
    for charon in clients.charons.values():
        charon.initiate("net")
    status = larval.wait_for("child")
    ikes = {s["virtual_ips"][0]: s for s in status["ike_sas"]}  # type: ignore[union-attr, index]
    assert sorted(ikes) == sorted(VIPS.values()), status
    for who, vip in VIPS.items():
        assert ikes[vip]["name"] == names[who], ikes[vip]
        assert f"[{vip}]" in clients.charons[who].list_sas()
    children = sorted(c["remote_ts"][0] for c in status["child_sas"])  # type: ignore[union-attr, index]
    assert children == [f"{VIPS['carol']}/32", f"{VIPS['dave']}/32"], status
    results = clients.ping_both()
    for who, out in results.items():
        assert " 0% packet loss" in out, (who, out, larval.log.read_text()[-4000:])


def test_two_charons_at_two_addresses_get_their_own_addresses(tmp_path: Path) -> None:
    with Clients(tmp_path, "routed") as clients:
        larval = clients.larval(rw_connection("rw", "%any", PSK))
        clients.charon("carol", PSK)
        clients.charon("dave", PSK)
        _check_both(clients, larval, {"carol": "rw", "dave": "rw"})
        remotes = {s["remote"] for s in larval.status()["ike_sas"]}  # type: ignore[union-attr, index]
        assert remotes == {"192.0.2.1", "192.0.2.5"}


@needs_nft
def test_two_charons_behind_one_nat_each_have_their_own_ike_sa(tmp_path: Path) -> None:
    """Both come from the router's 192.0.2.1, from ports it chose: each IKE SA is answered
    at its own, and each CHILD_SA's ESP in UDP goes to its own mapping of 4500."""
    with Clients(tmp_path, "nat") as clients:
        larval = clients.larval(rw_connection("rw", "%any", PSK))
        clients.charon("carol", PSK)
        clients.charon("dave", PSK)
        _check_both(clients, larval, {"carol": "rw", "dave": "rw"})
        sas = larval.status()["ike_sas"]  # type: ignore[index]
        assert {s["remote"] for s in sas} == {"192.0.2.1"}  # type: ignore[union-attr, index]
        ports = {s["remote_port"] for s in sas}  # type: ignore[union-attr, index]
        assert len(ports) == 2 and all(20000 <= p <= 30000 for p in ports), sas
        assert all(s["encapsulated"] for s in sas), sas  # type: ignore[union-attr, index]


def test_two_connections_by_remote_identity_each_client_on_its_own(tmp_path: Path) -> None:
    """Each connection takes one identity with its own PSK; IKE_SA_INIT is answered by
    the first, and dave's IKE_AUTH moves his IKE SA to his."""
    with Clients(tmp_path, "routed") as clients:
        larval = clients.larval(
            rw_connection("carol", "carol@example.org", SECRETS["carol"])
            + rw_connection("dave", "dave@example.org", SECRETS["dave"])
        )
        clients.charon("carol", SECRETS["carol"])
        clients.charon("dave", SECRETS["dave"])
        _check_both(clients, larval, {"carol": "carol", "dave": "dave"})
        assert "switching to connection dave for IDi dave@example.org" in larval.log.read_text()


def test_an_identity_no_connection_takes_is_refused(tmp_path: Path) -> None:
    """erin's PSK is right for no connection: AUTHENTICATION_FAILED, one line naming why."""
    with Clients(tmp_path, "routed") as clients:
        dave = rw_connection("dave", "dave@example.org", SECRETS["dave"])
        larval = clients.larval(
            dave + rw_connection("carol", "carol@example.org", SECRETS["carol"])
        )
        charon = clients.charon("carol", SECRETS["carol"])
        conf = charon.dir / "swanctl" / "swanctl.conf"
        conf.write_text(conf.read_text().replace("carol@example.org", "erin@example.org"))
        charon.swanctl("--load-all", "--noprompt")
        with pytest.raises(CharonError):
            charon.initiate("net", timeout=15)
        log = larval.log.read_text()
        why = ("no connection for IDi erin@example.org, IDr 192.0.2.2 authenticating by psk: "
               "dave: another remote id; carol: another remote id")  # fmt: skip
        assert "WARNING dave[" in log and why in log, log[-3000:]
        assert log.count("WARNING") == 1, log[-3000:]
        assert larval.status()["ike_sas"] == []


def test_a_certificate_client_and_a_psk_client_each_on_its_connection(tmp_path: Path) -> None:
    """carol proves herself with a certificate (moon.example.org), dave with a PSK. The
    PSK connection comes first and answers both IKE_SA_INITs, with the CERTREQ of the
    certificate connection's CA too, so charon (send_cert = ifasked) sends carol's
    certificate, and her signature moves her IKE SA to the certificate connection."""
    certs = make_set(Spec("ecdsa"), tmp_path / "pki")
    gw_creds = certs.credentials(tmp_path / "sun-credentials", "sun")
    carol_creds = certs.credentials(tmp_path / "moon-credentials", "moon")
    cert_conn = f"""
[connections.certs]
local_addrs = ["{GATEWAY}"]
remote_addrs = ["%any"]
proposals = ["{SUITE[0]}"]
pools = ["rw"]
local = {{ auth = "pubkey", certs = ["sun.pem"], id = "{IDS["b"]}" }}
remote = {{ auth = "pubkey", id = "%any" }}

[connections.certs.children.home]
local_ts = ["{HOME}"]
remote_ts = ["{POOL}"]
esp_proposals = ["{SUITE[1]}"]
"""
    with Clients(tmp_path, "routed") as clients:
        identities = {IDS["a"]: "carol", "dave@example.org": "dave"}
        larval = clients.larval(rw_connection("psk", "%any", PSK) + cert_conn, gw_creds, identities)
        carol = road_warrior(clients.addresses["carol"], "carol", PSK)
        carol = carol.replace("auth = psk\n            id = carol@example.org",
                              f"auth = pubkey\n            certs = moon.pem\n"
                              f"            id = {IDS['a']}")  # fmt: skip
        carol = carol.replace(f"auth = psk\n            id = {GATEWAY}",
                              f"auth = pubkey\n            id = {IDS['b']}")  # fmt: skip
        assert carol.count("pubkey") == 2, carol
        clients.charon("carol", PSK, swanctl=carol, credentials=carol_creds)
        clients.charon("dave", PSK)
        _check_both(clients, larval, {"carol": "certs", "dave": "psk"})
        sas = {s["name"]: s for s in larval.status()["ike_sas"]}  # type: ignore[union-attr, index]
        assert sas["certs"]["auth_remote"]["method"] == "pubkey", sas
        assert sas["psk"]["auth_remote"]["method"] == "psk", sas
