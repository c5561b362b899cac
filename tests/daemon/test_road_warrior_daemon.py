"""The daemon's road-warrior side, without starting it: the dataplane's routes at start
leave out a connection that asks for virtual IPs (those wait for the address), and a
reload that brings such a connection gives the daemon its host side."""

from __future__ import annotations

from pathlib import Path

from larval.daemon.ike_daemon import IkeDaemon
from tests.badinput import write_private

BASE = """
[daemon]
addresses = ["127.0.0.1"]
tun = "larval0"
control_socket = "{tmp}/control"

[connections.s2s]
local_addrs = ["127.0.0.1"]
remote_addrs = ["127.0.0.2"]

[connections.s2s.children.net]
local_ts = ["192.0.2.0/24"]
remote_ts = ["198.51.100.0/24"]

[secrets.ike]
secret = "0123456789abcdef-psk"
"""

HOME = """
[connections.home]
local_addrs = ["127.0.0.1"]
remote_addrs = ["127.0.0.3"]
vips = ["0.0.0.0"]

[connections.home.children.net]
remote_ts = ["203.0.113.0/24"]
"""


def test_a_road_warriors_networks_are_not_routed_at_start(tmp_path: Path) -> None:
    path = write_private(tmp_path / "larval.toml", BASE.format(tmp=tmp_path) + HOME)
    daemon = IkeDaemon(str(path))
    assert daemon.dataplane_config is not None
    assert daemon.dataplane_config.routes == ["198.51.100.0/24"]
    assert daemon._road_warrior is not None


def test_a_gateway_has_no_host_side_until_a_reload_brings_vips(tmp_path: Path) -> None:
    path = write_private(tmp_path / "larval.toml", BASE.format(tmp=tmp_path))
    daemon = IkeDaemon(str(path))
    assert daemon._road_warrior is None
    write_private(path, BASE.format(tmp=tmp_path) + HOME)
    daemon.reload()
    assert "home" in daemon.keymgr.connections
    assert daemon._road_warrior is not None


def test_the_host_side_routes_into_the_configured_table(tmp_path: Path) -> None:
    text = BASE.format(tmp=tmp_path).replace(
        "[daemon]\n", "[daemon]\nrouting_table = 4000\nrouting_table_prio = 300\n"
    )
    daemon = IkeDaemon(str(write_private(tmp_path / "larval.toml", text + HOME)))
    assert daemon._road_warrior is not None
    installer = daemon._road_warrior._installer
    assert installer is not None and (installer.table, installer.priority) == (4000, 300)
