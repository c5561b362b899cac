"""strongSwan's charon in a network namespace, for benchmarks and interop tests.

charon runs with kernel-libipsec (userspace ESP over a TUN device, always in UDP 4500,
since this kernel has no ESP) and is configured through swanctl. Each instance gets a
directory of its own; it is bind-mounted over /run inside the instance's mount namespace
(`ip netns exec` makes a private one), so charon's fixed pid file does not collide.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from larval.errors import LarvalError
from larval.net.netns import Netns

CHARON = "/usr/lib/ipsec/charon"

# Plugin order is preference order: kernel-libipsec registers before kernel-netlink, and
# openssl (AES-NI) comes before the portable C ciphers.
PLUGINS = (
    "random nonce openssl aes sha1 sha2 hmac gcm chapoly curve25519 gmp kdf drbg pem pkcs1 "
    "pkcs8 x509 pubkey revocation constraints kernel-libipsec kernel-netlink socket-default "
    "vici updown"
)


class CharonError(LarvalError):
    """charon could not be started, configured or asked."""


def charon_available() -> bool:
    return os.path.exists(CHARON) and shutil.which("swanctl") is not None


@dataclass
class ChildConfig:
    local_ts: str
    remote_ts: str
    esp_proposals: str = "aes128gcm16"
    start_action: str = "none"
    mode: str = "tunnel"
    rekey_time: str = "1h"
    # swanctl's defaults where empty: life_time is rekey_time plus 10 % in whole seconds
    # (so 6s for a rekey_time of 6s: the CHILD_SA expires, is deleted and made again,
    # and is never rekeyed), rand_time is life_time less rekey_time.
    life_time: str = ""
    rand_time: str = ""


@dataclass
class ConnConfig:
    local_addr: str
    remote_addr: str
    psk: str
    child: ChildConfig
    proposals: str = "aes128-sha256-x25519"
    version: int = 2
    encap: bool = True
    rekey_time: str = "4h"
    dpd_delay: str = "0"
    aggressive: bool = False
    fragment_size: int = 0  # charon's IKE fragment size, IP datagram bytes (0: its 1280)
    local_id: str = ""  # the identity, when not local_addr (behind a NAT)
    # Certificates in place of the PSK: this end's certificate (a file of swanctl/x509/,
    # whose key is in swanctl/private/) and the identity the peer's must carry.
    local_cert: str = ""
    remote_id: str = ""


class Charon:
    """One charon in `ns`, with its files under `directory`."""

    def __init__(self, ns: Netns, directory: Path, loglevel: int = 1) -> None:
        self.ns = ns
        self.dir = directory
        self.loglevel = loglevel
        self.vici = directory / "charon.vici"
        self.proc: subprocess.Popen[bytes] | None = None

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "STRONGSWAN_CONF": str(self.dir / "strongswan.conf"),
            "SWANCTL_DIR": str(self.dir / "swanctl"),
        }

    def _strongswan_conf(self, settings: str, *, ike_name: bool) -> str:
        """strongswan.conf's charon section: `settings`, then the plugins, the vici
        socket and the log file every instance has."""
        # The IKE SA's name on every line, where the log is read (interop tests).
        ike_name_line = "            ike_name = yes\n" if ike_name else ""
        return f"""charon {{
    load = {PLUGINS}
    load_modular = no
{settings}\
    plugins {{
        vici {{
            socket = unix://{self.vici}
        }}
        socket-default {{
            use_ipv6 = no
        }}
    }}
    syslog {{
        daemon {{
            default = -1
        }}
    }}
    filelog {{
        log {{
            path = {self.dir / "charon.log"}
            time_format = %T
{ike_name_line}\
            default = {self.loglevel}
            flush_line = yes
        }}
    }}
}}
"""

    def write_config(self, conn: ConnConfig) -> None:
        (self.dir / "run").mkdir(parents=True, exist_ok=True)
        for sub in ("x509", "x509ca", "private", "pubkey", "conf.d"):
            (self.dir / "swanctl" / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "strongswan.conf").write_text(
            self._strongswan_conf(
                f"""\
    # Aggressive Mode with a PSK exposes a hash of it; charon refuses it unless told
    # otherwise. Only the interop tests' peers say so.
    i_dont_care_about_security_and_use_aggressive_mode_psk = {"yes" if conn.aggressive else "no"}
    install_routes = yes
    install_virtual_ip = no
    {f"fragment_size = {conn.fragment_size}" if conn.fragment_size else ""}
    retransmit_tries = 3
    retransmit_timeout = 2.0
""",
                ike_name=True,
            )
            + """\
swanctl {
    load = random nonce aes sha1 sha2 hmac openssl pem pkcs1 pkcs8 x509 pubkey
}
"""
        )
        child = conn.child
        swanctl = self.dir / "swanctl" / "swanctl.conf"
        swanctl.write_text(
            f"""connections {{
    s2s {{
        version = {conn.version}
        local_addrs = {conn.local_addr}
        remote_addrs = {conn.remote_addr}
        encap = {"yes" if conn.encap else "no"}
        aggressive = {"yes" if conn.aggressive else "no"}
        mobike = no
        proposals = {conn.proposals}
        rekey_time = {conn.rekey_time}
        dpd_delay = {conn.dpd_delay}
{_sides(conn)}        children {{
            net {{
                local_ts = {child.local_ts}
                remote_ts = {child.remote_ts}
                esp_proposals = {child.esp_proposals}
                mode = {child.mode}
                start_action = {child.start_action}
                rekey_time = {child.rekey_time}
{_child_times(child)}            }}
        }}
    }}
}}
{_secrets(conn)}"""
        )
        swanctl.chmod(0o600)

    def start(self, timeout: float = 15.0) -> None:
        self.vici.unlink(missing_ok=True)  # a stale socket would look like a started charon
        log = open(self.dir / "charon.stdout", "wb")  # noqa: SIM115 - owned by the process
        self.proc = self.ns.popen(
            ["env", f"STRONGSWAN_CONF={self.dir / 'strongswan.conf'}", "sh", "-c",
             'mount --bind "$1" /run && exec setsid "$2"', "sh", str(self.dir / "run"), CHARON],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while not self.vici.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise CharonError(f"charon in {self.ns.name} did not start: {self.log_tail()}")
            time.sleep(0.1)
        self.swanctl("--load-all", "--noprompt")

    def swanctl(self, *args: str, timeout: float = 60) -> str:
        result = subprocess.run(
            ["ip", "netns", "exec", self.ns.name, "swanctl", *args, "--uri", f"unix://{self.vici}"],
            env=self._env(), capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if result.returncode != 0:
            raise CharonError(f"swanctl {' '.join(args)}: {result.stdout}{result.stderr}")
        return result.stdout

    def initiate(self, child: str = "net", timeout: int = 30) -> str:
        return self.swanctl("--initiate", "--child", child, "--timeout", str(timeout))

    def list_sas(self) -> str:
        return self.swanctl("--list-sas")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for name in ("charon.stdout", "charon.log"):
            path = self.dir / name
            if path.exists():
                out.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(out)


def _child_times(child: ChildConfig) -> str:
    """The child's life_time and rand_time lines, where they are set."""
    lines = [f"{key} = {value}" for key, value in
             (("life_time", child.life_time), ("rand_time", child.rand_time)) if value]  # fmt: skip
    return "".join(f"                {line}\n" for line in lines)


def _sides(conn: ConnConfig) -> str:
    """swanctl.conf's local and remote sections: a PSK, or certificates."""
    local_id = conn.local_id or conn.local_addr
    remote_id = conn.remote_id or conn.remote_addr
    auth, certs = ("pubkey", f"\n            certs = {conn.local_cert}") if conn.local_cert \
        else ("psk", "")  # fmt: skip
    return f"""\
        local {{
            auth = {auth}{certs}
            id = {local_id}
        }}
        remote {{
            auth = {auth}
            id = {remote_id}
        }}
"""


def _secrets(conn: ConnConfig) -> str:
    if conn.local_cert:
        return ""
    return f"""\
secrets {{
    ike-s2s {{
        id-local = {conn.local_id or conn.local_addr}
        id-remote = {conn.remote_addr}
        secret = "{conn.psk}"
    }}
}}
"""
