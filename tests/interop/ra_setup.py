"""Setups shared by the remote-access and IPv6 interop tests, on top of `harness`:

* `Topology6`: the two sites joined over IPv6 only (2001:db8::/32, RFC 3849), with
  `larval6` and `charon6` that give larval and charon the harness's site-to-site
  configuration in IPv6 words;
* `RaTopology`: a larval gateway (site b) with clients in namespaces of their own on one
  link (a bridge in b), and a home server behind the gateway on its protected network;
* `gateway_config`: the gateway's TOML (pools, PSK or EAP clients), `road_warrior`: a
  charon client's swanctl.conf, `start_client`: charon with the plugins and
  strongswan.conf settings a road warrior needs (its virtual IP installed, DNS servers
  written to a resolv file of its own);
* for the harness's two sites (charon moon in a, larval sun in b) as each other's
  remote-access peers (EAP, EAP-TLS, RFC 4739 rounds, XAuth): `swanctl_conf` and its
  road-warrior and gateway forms `charon_client`, `charon_gateway`, and `charon_peer`
  that starts it; `larval_peer` and `with_pool` for larval's side, `user_secret`,
  `with_plugins`, `wait_until`, `nothing_left`, `established`, `larval_json`, and the
  plugins' skip markers.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from larval.bench import charon as charon_module
from larval.bench.charon import Charon, ChildConfig, ConnConfig
from larval.net.netns import Netns, veth_pair
from tests.interop.certs import IDS
from tests.interop.harness import (
    INNER,
    NAT_PORTS,
    NET,
    OUTER,
    PSK,
    LarvalDaemon,
    Site,
    Topology,
    larval_config,
)

OUTER6 = {"a": "2001:db8:1::1", "b": "2001:db8:1::2"}
INNER6 = {"a": "2001:db8:a::1", "b": "2001:db8:b::1"}
NET6 = {"a": "2001:db8:a::/64", "b": "2001:db8:b::/64"}


def in_ipv6(text: str) -> str:
    """The harness's site-to-site words (outer addresses, the TUN's address, the
    protected networks) turned into their IPv6 counterparts."""
    words = {f'"{OUTER[s]}"': f'"{OUTER6[s]}"' for s in "ab"}
    words |= {f'"{NET[s]}"': f'"{NET6[s]}"' for s in "ab"}
    words |= {f'"{INNER[s]}/24"': f'"{INNER6[s]}/64"' for s in "ab"}
    for old, new in words.items():
        text = text.replace(old, new)
    return text


def quiet_ipv6(ns: Netns) -> Netns:
    """No duplicate address detection on the links `ns` makes from now on (RFC 4862
    §5.4): a link-local address is usable at once, and the first packets do not wait for
    it."""
    for key in ("default", "all"):
        ns.run(["sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0"])
    return ns


def ping(ns: Netns, source: str, target: str, count: int = 3) -> subprocess.CompletedProcess[str]:
    """`count` pings from `source` to `target` (either family) inside `ns`."""
    family = "-6" if ":" in target else "-4"
    return subprocess.run(
        ["ip", "netns", "exec", ns.name, "ping", family, "-c", str(count), "-i", "0.2",
         "-W", "2", "-I", source, target],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def start_client(
    ns: Netns,
    directory: Path,
    swanctl: str | ConnConfig,
    *,
    plugins: str = "",
    ipv6: bool = False,
    resolv: Path | None = None,
    credentials: Path | None = None,
) -> Charon:
    """charon in `ns` with `swanctl` as its swanctl.conf (or the harness's for that
    connection): `plugins` loaded besides the harness's, IKE on IPv6 too if `ipv6`, and
    as a road warrior (`resolv`) its virtual IPs installed and its DNS servers written to
    that file (the resolve plugin), never the machine's resolver. The caller stops it
    (put it in a Topology's `charons`)."""
    charon = Charon(ns, directory)
    # The harness's strongswan.conf and directories, then this client's words in them.
    if isinstance(swanctl, ConnConfig):
        charon.write_config(swanctl)
    else:
        charon.write_config(
            ConnConfig(OUTER["a"], OUTER["b"], PSK, ChildConfig(NET["a"], NET["b"]))
        )
        (directory / "swanctl" / "swanctl.conf").write_text(swanctl)
    conf_path = directory / "strongswan.conf"
    conf = conf_path.read_text()
    extra = plugins.split()
    if resolv is not None:
        extra += ["attr", "resolve"]
        conf = _once(conf, "install_virtual_ip = no", "install_virtual_ip = yes")
        resolve = f"        resolve {{\n            file = {resolv}\n        }}\n"
        conf = _once(conf, "    plugins {\n", "    plugins {\n" + resolve)
    if extra:
        conf = _once(conf, "    load = ", f"    load = {' '.join(extra)} ")
    if ipv6:
        conf = _once(conf, "use_ipv6 = no", "use_ipv6 = yes")
    conf_path.write_text(conf)
    if credentials is not None:
        shutil.copytree(credentials, directory / "swanctl", dirs_exist_ok=True)
    charon.start()
    return charon


def _once(text: str, old: str, new: str) -> str:
    """`text` with the first `old` made `new`; the harness's strongswan.conf must have it."""
    if old not in text:
        raise AssertionError(f"the harness's strongswan.conf has no {old.strip()!r} any more")
    return text.replace(old, new, 1)


@contextmanager
def _closed_on_error(stack: ExitStack) -> Iterator[None]:
    """A topology half built when something fails goes at once: its namespaces are
    deleted, as `__exit__` would, which does not run when `__enter__` raises."""
    try:
        yield
    except BaseException:
        stack.close()
        raise


# -- IPv6 site to site ------------------------------------------------------------------


#: A site behind the IPv6 NAT router has this address; the router shows OUTER6[site].
PRIVATE6, ROUTER6_INSIDE = "2001:db8:2::2", "2001:db8:2::1"


class Topology6(Topology):
    """The harness's two sites, joined by a veth with IPv6 addresses only: IKE and ESP in
    UDP over IPv6 outer addresses, the protected networks IPv6 as well. `nat`: the site
    behind a router that masquerades it (NAT66) with every UDP source port translated,
    as the harness's IPv4 NAT router does."""

    def __enter__(self) -> Topology6:
        with _closed_on_error(self.stack):
            self._build()
        return self

    def _build(self) -> None:
        tag = uuid.uuid4().hex[:6]
        ns_a = quiet_ipv6(self.stack.enter_context(Netns(f"i6A{tag}")))
        ns_b = quiet_ipv6(self.stack.enter_context(Netns(f"i6B{tag}")))
        self.a = Site("a", ns_a, self.tmp / "a", OUTER6["a"])
        self.b = Site("b", ns_b, self.tmp / "b", OUTER6["b"])
        if self.nat is None:
            veth_pair(ns_a, ns_b, f"{OUTER6['a']}/64", f"{OUTER6['b']}/64")
        else:
            self._nat66_router(tag)
        for site in (self.a, self.b):
            site.dir.mkdir(parents=True, exist_ok=True)
        self.stack.callback(self._stop_all)

    def _nat66_router(self, tag: str) -> None:
        """inside (2001:db8:2::/64) --- router (NAT66) --- outside (2001:db8:1::/64)."""
        inside = self.a if self.nat == "a" else self.b
        outside = self.b if inside is self.a else self.a
        router = quiet_ipv6(self.stack.enter_context(Netns(f"i6N{tag}")))
        inside.address = PRIVATE6
        veth_pair(inside.ns, router, f"{PRIVATE6}/64", f"{ROUTER6_INSIDE}/64", name_b="in0")
        veth_pair(router, outside.ns, f"{OUTER6[inside.name]}/64", f"{OUTER6[outside.name]}/64",
                  name_a="out0")  # fmt: skip
        inside.ns.run(["ip", "-6", "route", "add", "default", "via", ROUTER6_INSIDE])
        router.run(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        rules = self.tmp / "nat66.nft"
        rules.write_text(
            "table ip6 nat {\n chain post {\n  type nat hook postrouting priority srcnat;\n"
            f'  oifname "out0" meta l4proto udp masquerade to :{NAT_PORTS}\n'
            '  oifname "out0" masquerade\n }\n}\n'
        )
        router.run(["nft", "-f", str(rules)])
        self.router = router

    def larval6(self, site: Site, *, daemon_keys: str = "", **kw: object) -> LarvalDaemon:
        """`larval` with the harness's configuration in IPv6 words; `daemon_keys`: lines
        for its [daemon] table."""
        text = in_ipv6(larval_config(site, **kw))  # type: ignore[arg-type]
        daemon = LarvalDaemon(site, text.replace("[daemon]\n", f"[daemon]\n{daemon_keys}\n", 1))
        self.daemons.append(daemon)
        daemon.start()
        return daemon

    def charon6(self, site: Site, *, proposals: str, esp: str, version: int = 2) -> Charon:
        """charon with the harness's PSK site-to-site connection in IPv6 words."""
        me, peer = site.name, site.peer
        site.ns.run(["ip", "address", "add", f"{INNER6[me]}/128", "dev", "lo", "nodad"])
        conn = ConnConfig(
            site.address, OUTER6[peer], PSK,
            ChildConfig(NET6[me], NET6[peer], esp_proposals=esp),
            proposals=proposals, version=version, local_id=OUTER6[me],
        )  # fmt: skip
        charon = start_client(site.ns, site.dir / "charon", conn, ipv6=True)
        self.charons.append(charon)
        return charon

    def ping6(self, site: Site, count: int = 5) -> subprocess.CompletedProcess[str]:
        return ping(site.ns, INNER6[site.name], INNER6[site.peer], count)


# -- remote access ----------------------------------------------------------------------

#: The home server behind the gateway, on the gateway's protected networks.
SERVER = {4: "203.0.113.130", 6: "2001:db8:b::130"}
#: The gateway's own address towards the server.
SERVER_GW = {4: "203.0.113.129", 6: "2001:db8:b::129"}
#: Clients' outer addresses on the gateway's link; the gateway is OUTER["b"] (v4) and
#: OUTER6["b"] (v6) there.
CLIENT = {"c1": ("192.0.2.1", "2001:db8:1::1"), "c2": ("192.0.2.3", "2001:db8:1::3")}


@dataclass
class Client:
    name: str
    ns: Netns
    dir: Path
    address: str  # its outer address (IPv4 or IPv6, as the topology's family)
    charon: Charon | None = None
    resolv: Path = field(init=False)

    def __post_init__(self) -> None:
        self.resolv = self.dir / "resolv.conf"


class RaTopology(Topology):
    """A larval gateway (site b) and road warriors c1, c2 (each a namespace of its own)
    on one link, a bridge in the gateway's namespace; a home server (namespace h) behind
    the gateway on 203.0.113.128/25 and 2001:db8:b::/64; the gateway forwards between
    its TUN and the server. `family`: the outer addresses' (4: OUTER["b"] and CLIENT's
    IPv4 ones, 6: OUTER6["b"] and CLIENT's IPv6 ones)."""

    def __init__(self, tmp: Path, *, family: int = 4, clients: int = 1) -> None:
        super().__init__(tmp)
        self.family = family
        self.nclients = clients
        self.clients: dict[str, Client] = {}

    def __enter__(self) -> RaTopology:
        with _closed_on_error(self.stack):
            self._build()
        return self

    def _build(self) -> None:
        tag = uuid.uuid4().hex[:6]
        gw = quiet_ipv6(self.stack.enter_context(Netns(f"raG{tag}")))
        self.b = Site("b", gw, self.tmp / "b", OUTER["b"] if self.family == 4 else OUTER6["b"])
        self.b.dir.mkdir(parents=True, exist_ok=True)
        gw.run(["ip", "link", "add", "br0", "type", "bridge"])
        gw.run(["ip", "address", "add", f"{OUTER['b']}/24", "dev", "br0"])
        gw.run(["ip", "address", "add", f"{OUTER6['b']}/64", "dev", "br0", "nodad"])
        gw.run(["ip", "link", "set", "br0", "up"])
        for i in range(1, self.nclients + 1):
            name = f"c{i}"
            ns = quiet_ipv6(self.stack.enter_context(Netns(f"ra{i}{tag}")))
            v4, v6 = CLIENT[name]
            gw.run(["ip", "link", "add", f"to{name}", "type", "veth", "peer", "name", "veth0",
                    "netns", ns.name])  # fmt: skip
            gw.run(["ip", "link", "set", f"to{name}", "master", "br0", "up"])
            ns.run(["ip", "address", "add", f"{v4}/24", "dev", "veth0"])
            ns.run(["ip", "address", "add", f"{v6}/64", "dev", "veth0", "nodad"])
            ns.run(["ip", "link", "set", "veth0", "up"])
            ns.run(["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"])
            directory = self.tmp / name
            directory.mkdir(parents=True, exist_ok=True)
            self.clients[name] = Client(name, ns, directory, v4 if self.family == 4 else v6)
        server = quiet_ipv6(self.stack.enter_context(Netns(f"raH{tag}")))
        veth_pair(gw, server, f"{SERVER_GW[4]}/25", f"{SERVER[4]}/25", name_a="home0")
        for ns, address in ((gw, SERVER_GW[6]), (server, SERVER[6])):
            dev = "home0" if ns is gw else "veth0"
            ns.run(["ip", "address", "add", f"{address}/64", "dev", dev, "nodad"])
        server.run(["ip", "route", "add", "default", "via", SERVER_GW[4]])
        server.run(["ip", "-6", "route", "add", "default", "via", SERVER_GW[6]])
        for setting in (
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ):
            gw.run(["sysctl", "-qw", setting])  # fmt: skip
        self.server = server
        self.stack.callback(self._stop_all)

    def gateway(self, config: str) -> LarvalDaemon:
        daemon = LarvalDaemon(self.b, config)
        self.daemons.append(daemon)
        daemon.start()
        return daemon

    def client(self, name: str, swanctl: str, *, plugins: str = "",
               credentials: Path | None = None) -> Charon:  # fmt: skip
        """Start charon as road warrior `name` with `swanctl`: its virtual IPs installed,
        its DNS servers written to the client's `resolv`."""
        client = self.clients[name]
        client.resolv.write_text("# the road warrior's own resolv.conf\n")
        charon = start_client(client.ns, client.dir / "charon", swanctl, plugins=plugins,
                              ipv6=self.family == 6, resolv=client.resolv,
                              credentials=credentials)  # fmt: skip
        client.charon = charon
        self.charons.append(charon)
        return charon

    def ping_server(
        self, name: str, source: str, count: int = 3
    ) -> subprocess.CompletedProcess[str]:
        """From client `name`'s virtual address `source` to the home server."""
        family = ipaddress.ip_address(source).version
        return ping(self.clients[name].ns, source, SERVER[family], count)


@dataclass
class Pool:
    name: str
    addrs: str  # a prefix: the connection's remote_ts is its network
    dns: list[str] = field(default_factory=list)


def gateway_config(
    topo: RaTopology,
    pools: list[Pool],
    *,
    remote: str = "",
    local: str = "",
    eap: dict[str, str] | None = None,
    credentials: str = "",
    local_ts: list[str] | None = None,
) -> str:
    """larval as the gateway: a connection `rw-NAME` for each client NAME (a connection
    names one peer address) with `pools`, its child `net` with remote_ts the pools'
    networks and local_ts the home server's (or `local_ts`); `local`, `remote`: the sides
    (default: the PSK with the outer addresses as IDs); `eap`: EAP users and their
    passwords."""
    gw = topo.b.address
    nets = local_ts or [NET["b"]] + ([NET6["b"]] if any(":" in p.addrs for p in pools) else [])
    remote_ts = [str(ipaddress.ip_network(p.addrs, strict=False)) for p in pools]
    # The gateway's own address on the TUN; the rest of its networks is the home link's.
    text = f"""
[daemon]
{f'credentials = "{credentials}"' if credentials else ""}
addresses = ["{gw}"]
tun = "larval0"
tun_addresses = ["{INNER["b"]}/32", "{INNER6["b"]}/128"]
control_socket = "{topo.b.dir / "control"}"
pfkey_socket = "{topo.b.dir / "pfkey"}"
"""
    for client in topo.clients.values():
        text += f"""
[connections.rw-{client.name}]
version = 2
local_addrs = ["{gw}"]
remote_addrs = ["{client.address}"]
proposals = ["aes128-sha256-x25519"]
encap = true
pools = {_toml([p.name for p in pools])}
local = {local or f'{{ auth = "psk", id = "{gw}" }}'}
remote = {remote or f'{{ auth = "psk", id = "{client.address}" }}'}

[connections.rw-{client.name}.children.net]
local_ts = {_toml(nets)}
remote_ts = {_toml(remote_ts)}
esp_proposals = ["aes128gcm16"]
start_action = "none"
"""
    if not remote:
        ids = [gw] + [c.address for c in topo.clients.values()]
        text += f'\n[secrets.ike-rw]\nids = {_toml(ids)}\nsecret = "{PSK}"\n'
    for pool in pools:
        text += f'\n[pools.{pool.name}]\naddrs = "{pool.addrs}"\n'
        if pool.dns:
            text += f"dns = {_toml(pool.dns)}\n"
    for user, secret in (eap or {}).items():
        text += f'\n[secrets.eap-{user}]\nid = "{user}"\nsecret = "{secret}"\n'
    return text


def _toml(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def road_warrior(
    topo: RaTopology,
    name: str,
    *,
    vips: str = "0.0.0.0",
    auth: str = "psk",
    eap_id: str = "",
    password: str = "",
    gateway: str = "",
    remote_ts: str = "",
    gateway_id: str = "",
    children: dict[str, str] | None = None,
) -> str:
    """charon's swanctl.conf as road warrior `name`: connection `rw`, child `net`, asking
    for `vips`; `auth` "psk" (its outer address as ID) or an EAP method (eap-mschapv2,
    eap-md5) as `eap_id` with `password`, the gateway then proving itself by its
    certificate as `gateway_id` (a PSK gateway otherwise); `children`: child names and
    their remote_ts in place of `net`."""
    client = topo.clients[name]
    gateway = gateway or topo.b.address
    remote_ts = remote_ts or ",".join(
        [NET["b"]] + ([NET6["b"]] if "::" in vips else [])
    )  # fmt: skip
    sections = "".join(
        f"""            {child} {{
                remote_ts = {ts}
                esp_proposals = aes128gcm16
            }}
"""
        for child, ts in (children or {"net": remote_ts}).items()
    )
    if auth == "psk":
        local = f"auth = psk\n            id = {client.address}"
        remote = f"auth = psk\n            id = {gateway}"
        secrets = f"""    ike-rw {{
        id-local = {client.address}
        id-remote = {gateway}
        secret = "{PSK}"
    }}
"""
    else:
        local = f"auth = {auth}\n            eap_id = {eap_id}"
        remote = (
            f"auth = {'pubkey' if gateway_id else 'psk'}\n            id = {gateway_id or gateway}"
        )
        secrets = f"""    eap-{eap_id} {{
        id = {eap_id}
        secret = "{password}"
    }}
"""
    return f"""connections {{
    rw {{
        version = 2
        local_addrs = {client.address}
        remote_addrs = {gateway}
        encap = yes
        mobike = no
        vips = {vips}
        proposals = aes128-sha256-x25519
        local {{
            {local}
        }}
        remote {{
            {remote}
        }}
        children {{
{sections}        }}
    }}
}}
secrets {{
{secrets}}}
"""


# -- charon and larval as each other's remote-access peers (the harness's two sites) -----

_PLUGINS = Path("/usr/lib/ipsec/plugins")
needs_mschapv2 = pytest.mark.skipif(
    not (_PLUGINS / "libstrongswan-eap-mschapv2.so").exists(),
    reason="needs charon's eap-mschapv2 (libcharon-extauth-plugins)",
)
needs_eap_tls = pytest.mark.skipif(
    not (_PLUGINS / "libstrongswan-eap-tls.so").exists(),
    reason="needs charon's eap-tls (libcharon-extra-plugins)",
)
needs_xauth = pytest.mark.skipif(
    not (_PLUGINS / "libstrongswan-xauth-generic.so").exists(),
    reason="needs charon's xauth-generic (libcharon-extauth-plugins)",
)

#: charon plays moon (site a), larval sun (site b); their IKE IDs and certificates' names.
SUN, MOON = IDS["b"], IDS["a"]
IKE_PROPOSAL, ESP_PROPOSAL = "aes128-sha256-x25519", "aes128gcm16"
#: swanctl.conf's sides that the tests name again and again.
MOON_CERT = {"auth": "pubkey", "certs": "moon.pem", "id": MOON}
SUN_BY_CERT = {"auth": "pubkey", "id": SUN}
CAROL_MSCHAPV2 = {"auth": "eap-mschapv2", "eap_id": "carol"}
#: larval's side proving itself with sun's certificate (TOML).
SUN_CERT_TOML = f'{{ auth = "pubkey", certs = ["sun.pem"], id = "{SUN}" }}'


def swanctl_conf(
    name: str,
    sections: Mapping[str, Mapping[str, str]],
    *,
    version: int = 2,
    proposals: str = IKE_PROPOSAL,
    esp: str = ESP_PROPOSAL,
    local_ts: str | None = NET["a"],
    remote_ts: str = NET["b"],
    options: Mapping[str, str] | None = None,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """charon's swanctl.conf in site a: connection `name` to site b (UDP-encapsulated, no
    MOBIKE in IKEv2) with `options`, its `sections` (local, remote, local-1, remote-xauth,
    …: their keys and values) and child ``net`` (no local_ts where `local_ts` is None);
    `secrets`: sections of the secrets block, each ``secret`` written quoted."""
    head: dict[str, str] = {"version": str(version), "local_addrs": OUTER["a"],
                            "remote_addrs": OUTER["b"], "encap": "yes"}  # fmt: skip
    if version == 2:
        head["mobike"] = "no"
    head |= dict(options or {})
    head["proposals"] = proposals
    lines = ["connections {", f"    {name} {{"]
    lines += [f"        {key} = {value}" for key, value in head.items()]
    for section, keys in sections.items():
        lines += [f"        {section} {{", *_keys(keys, 12), "        }"]
    child = {"local_ts": local_ts} if local_ts is not None else {}
    child |= {"remote_ts": remote_ts, "esp_proposals": esp}
    lines += ["        children {", "            net {", *_keys(child, 16), "            }",
              "        }", "    }", "}"]  # fmt: skip
    if secrets:
        lines.append("secrets {")
        for section, keys in secrets.items():
            lines += [f"    {section} {{", *_keys(keys, 8), "    }"]
        lines.append("}")
    return "\n".join(lines) + "\n"


def _keys(keys: Mapping[str, str], indent: int) -> list[str]:
    return [" " * indent + f"{k} = " + (f'"{v}"' if k == "secret" else v)
            for k, v in keys.items()]  # fmt: skip


def swanctl_secret(user: str, password: str, kind: str = "eap") -> dict[str, dict[str, str]]:
    """swanctl.conf's ``secrets { KIND-USER { id = USER; secret = "…" } }`` section (KIND eap
    or xauth)."""
    return {f"{kind}-{user}": {"id": user, "secret": password}}


def charon_client(
    sections: Mapping[str, Mapping[str, str]],
    *,
    remote: Mapping[str, str] = SUN_BY_CERT,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
    **kw: Any,
) -> str:
    """charon as a road warrior (connection ``home``) of larval's gateway, its local
    `sections` (``local`` or ``local-1``, ``local-2``), proving larval by `remote`."""
    return swanctl_conf("home", {**sections, "remote": remote}, secrets=secrets, **kw)


def charon_gateway(
    sections: Mapping[str, Mapping[str, str]],
    *,
    local: Mapping[str, str] = MOON_CERT,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
    **kw: Any,
) -> str:
    """charon as the gateway (connection ``rw``, its certificate always sent) proving
    itself by `local` and asking its remote `sections` of larval."""
    options = {"send_cert": "always", **kw.pop("options", {})}
    return swanctl_conf("rw", {"local": local, **sections}, secrets=secrets, options=options,
                        **kw)  # fmt: skip


def charon_peer(
    topo: Topology,
    swanctl: str,
    *,
    credentials: Path | None = None,
    proposals: str = IKE_PROPOSAL,
    esp: str = ESP_PROPOSAL,
    **kw: Any,
) -> Charon:
    """charon in site a with `swanctl` as its swanctl.conf and the `credentials`
    directory's files beside it (`kw`: the rest of `Topology.charon`'s)."""
    return topo.charon(topo.a, proposals=proposals, esp=esp, swanctl=swanctl,
                       credentials=credentials, **kw)  # fmt: skip


def established(ike_sas: list[dict[str, Any]]) -> dict[str, Any]:
    """The one established IKE SA of a status's `ike_sas` (the test fails if not one)."""
    (ike,) = [sa for sa in ike_sas if sa["state"] == "established"]
    return ike


def with_plugins(monkeypatch: pytest.MonkeyPatch, plugins: str) -> None:
    """charon loads `plugins` besides the harness's for this test."""
    monkeypatch.setattr(charon_module, "PLUGINS", charon_module.PLUGINS + " " + plugins)


def user_secret(user: str, password: str, kind: str = "eap") -> str:
    """larval's ``[secrets.KIND-USER]`` table for `user` (kind eap or xauth)."""
    return f'\n[secrets.{kind}-{user}]\nid = "{user}"\nsecret = "{password}"\n'


def with_pool(config: str, pool: str, extra: str = "", *, pull: bool = True) -> str:
    """The harness's larval configuration as a gateway leasing from pool ``rw`` (`pool`,
    and its further TOML lines `extra`): connection s2s takes the pool (and ``pull =
    false``: it pushes), and its child's remote_ts is the pool."""
    keys = 'pools = ["rw"]' + ("" if pull else "\npull = false")
    config = config.replace('dpd_delay = "0s"', f'dpd_delay = "0s"\n{keys}')
    config = config.replace(f'remote_ts = ["{NET["a"]}"]', f'remote_ts = ["{pool}"]')
    return config + f'\n[pools.rw]\naddrs = "{pool}"\n{extra}'


def larval_peer(
    topo: Topology,
    *,
    start_action: str,
    proposals: str = IKE_PROPOSAL,
    esp: str = ESP_PROPOSAL,
    secrets: Mapping[str, str] | None = None,
    kind: str = "eap",
    edit: Callable[[str], str] | None = None,
    **kw: Any,
) -> LarvalDaemon:
    """larval in site b, started, with the harness's configuration (`kw`: its local,
    remote, credentials, version, …), the `kind` secrets of `secrets` (user → password),
    and `edit` applied to the text last."""
    config = larval_config(topo.b, proposals=[proposals], esp=[esp],
                           start_action=start_action, **kw)  # fmt: skip
    for user, password in (secrets or {}).items():
        config += user_secret(user, password, kind)
    if edit is not None:
        config = edit(config)
    larval = LarvalDaemon(topo.b, config)
    topo.daemons.append(larval)
    larval.start()
    return larval


def charon_log(charon: Charon) -> str:
    return (charon.dir / "charon.log").read_text(errors="replace")


def larval_json(topo: Topology, *args: str) -> Any:
    """`larval ARGS --json` against site b's daemon, as a user runs it."""
    out = subprocess.run(
        [sys.executable, "-m", "larval", *args, "--json", "--control-socket",
         str(topo.b.dir / "control")],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return json.loads(out)


def nothing_left(larval: LarvalDaemon, charon: Charon) -> bool:
    """Neither larval nor charon keeps an IKE SA or a CHILD_SA."""
    status = larval.status()
    return (not status["ike_sas"] and not status["child_sas"]
            and not re.search(r"^\S+: #", charon.list_sas(), re.M))  # fmt: skip


def wait_until(done: Callable[[], object], seconds: float, report: Callable[[], str]) -> None:
    """Ask `done` every 0.3 s until it is true; after `seconds`, fail with `report`."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(report())
        time.sleep(0.3)
