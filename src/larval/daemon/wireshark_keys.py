"""The daemon's SAs in Wireshark's decryption tables (`larval.keymgr.wireshark`): read
from the live IKE sessions and the SADB, and written to files.

* `live_tables`: the lines for every IKE SA whose keys exist and every CHILD_SA installed,
  what `larval keys --wireshark DIR` writes (over the control socket, ``ike.keys``);
* `KeySaver`: ``[daemon] save_keys = DIR``, as strongSwan's save-keys plugin: a line is
  appended as each IKE SA is established or rekeyed and as each ESP SA is added or
  updated in the SADB (both directions of every CHILD_SA, rekeys included);
* `write_tables`: the three files written whole, each atomically (a temporary file in
  DIR, then a rename), so Wireshark never reads half a table.

IKE keys come from the sessions (`IkeSa.sk_keys`), ESP keys from the SADB, read under the
SA's lock. DIR, if larval makes it, is 0700; every file is 0600. The keys go to the files
and nowhere else: what is logged names files, SPIs and algorithms only.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from larval.ike.sa import IkeSa, Phase
from larval.keymgr.manager import KeyManager
from larval.keymgr.wireshark import (
    ESP_SA,
    IKEV1_TABLE,
    IKEV2_TABLE,
    TABLES,
    EspSaKeys,
    NoWiresharkName,
    Tables,
    esp_sa_line,
    ikev1_line,
    ikev2_line,
)
from larval.pfkey import PfkeyError, decode, decode_header
from larval.pfkey.constants import ExtType, SadbMsgType, SaType
from larval.pfkey.extensions import SadbAddress, SadbSa
from larval.sadb import Audience, Sadb, WireReply

__all__ = ["KeySaver", "ike_line", "live_tables", "make_dir", "write_tables"]

log = logging.getLogger("larval.daemon")

_DIR_MODE = 0o700
_FILE_MODE = 0o600


def ike_line(session: IkeSa) -> tuple[str, str] | None:
    """(table, line) of an IKE SA whose keys exist; None before they do; `NoWiresharkName`
    for a suite Wireshark cannot decrypt."""
    keys = session.sk_keys()
    if keys is None:
        return None
    if session.version == 1:
        return IKEV1_TABLE, ikev1_line(session.spi_i, keys)
    return IKEV2_TABLE, ikev2_line(session.spi_i, session.spi_r, session.suite, keys)


def esp_keys(sadb: Sadb, spi: int, dst: bytes) -> EspSaKeys | None:
    """One ESP SA of the SADB with its keys, read under its lock; None if there is none
    (or it is still LARVAL, without keys)."""
    sa = sadb.lookup_esp(spi, dst)
    if sa is None:
        return None
    with sa.lock:
        if not sa.encrypt_key and not sa.auth_key:
            return None
        return EspSaKeys(ipaddress.ip_address(sa.src), ipaddress.ip_address(sa.dst), sa.spi,
                         sa.encrypt, bytes(sa.encrypt_key), sa.auth,
                         bytes(sa.auth_key))  # fmt: skip


def live_tables(keymgr: KeyManager, sadb: Sadb) -> Tables:
    """Every table's lines for what is live now: the IKE SAs with keys (established, or
    between IKE_SA_INIT and IKE_AUTH) and both ESP SAs of every installed CHILD_SA."""
    tables = Tables()
    for session in list(keymgr.sessions.values()):
        if session.phase is Phase.CLOSED:
            continue
        try:
            found = ike_line(session)
        except NoWiresharkName as e:
            tables.skipped.append(str(e))
            continue
        if found is not None:
            tables.lines[found[0]].append(found[1])
    for record in list(keymgr.children.values()):
        for spi, dst in ((record.spi_in, record.local), (record.spi_out, record.remote)):
            sa = esp_keys(sadb, spi, dst.packed)
            if sa is None:
                continue
            try:
                tables.lines[ESP_SA].append(esp_sa_line(sa))
            except NoWiresharkName as e:
                tables.skipped.append(str(e))
    return tables


def make_dir(path: str) -> Path:
    """DIR, made 0700 (and its parents as the umask says) if it is not there."""
    where = Path(path)
    if not where.is_dir():
        where.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        where.chmod(_DIR_MODE)  # whatever the umask took away or left
    return where


def write_tables(path: str, lines: dict[str, list[str]]) -> list[Path]:
    """Each table of `TABLES` written whole into DIR, atomically, 0600: a table with no
    line is written empty, so that no key of an SA gone stays behind. The paths."""
    where = make_dir(path)
    written = []
    for name in TABLES:
        target = where / name
        fd, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=where)  # 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.writelines(f"{line}\n" for line in lines.get(name, ()))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        written.append(target)
    return written


def append_lines(where: Path, name: str, lines: Iterable[str]) -> None:
    """`lines` appended to DIR/`name`, made 0600 if it is new (and set so if not)."""
    fd = os.open(where / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _FILE_MODE)
    try:
        os.fchmod(fd, _FILE_MODE)
        os.write(fd, "".join(f"{line}\n" for line in lines).encode("ascii"))
    finally:
        os.close(fd)


class KeySaver:
    """``[daemon] save_keys = DIR``: the tables of DIR appended to as SAs come up. The
    key manager calls `ike_sa_up`; the replies the stack gives to every PF_KEY socket go
    through `stack_replied`, whose ADDs and UPDATEs of ESP SAs name the SAs to look up."""

    def __init__(self, path: str, sadb: Sadb) -> None:
        self.path = path
        self._sadb = sadb
        self._dir: Path | None = None

    def _where(self) -> Path | None:
        if self._dir is None:
            try:
                self._dir = make_dir(self.path)
            except OSError as e:
                log.error("daemon.save_keys: cannot make %s: %s", self.path, e.strerror)
        return self._dir

    def _append(self, name: str, line: str) -> None:
        where = self._where()
        if where is None:
            return
        try:
            append_lines(where, name, (line,))
        except OSError as e:
            log.error("daemon.save_keys: cannot write %s: %s", where / name, e.strerror)

    def ike_sa_up(self, session: IkeSa) -> None:
        """An IKE SA established, or made by a rekey: its line."""
        try:
            found = ike_line(session)
        except NoWiresharkName as e:
            log.info("daemon.save_keys: no line: %s", e)
            return
        if found is not None:
            self._append(*found)

    def stack_replied(self, replies: list[WireReply]) -> None:
        """What the stack told every PF_KEY socket: an ESP SA added or updated (no keys
        in the message itself) has its line, with the keys from the SADB."""
        for reply in replies:
            if reply.audience is not Audience.ALL or not _keyed_esp_header(reply.data):
                continue
            msg = decode(reply.data)
            sa_ext, dst = msg.find(ExtType.SA), msg.find(ExtType.ADDRESS_DST)
            if isinstance(sa_ext, SadbSa) and isinstance(dst, SadbAddress):
                self._esp_sa(sa_ext.spi, dst.addr.packed)

    def _esp_sa(self, spi: int, dst: bytes) -> None:
        sa = esp_keys(self._sadb, spi, dst)
        if sa is None:
            return
        try:
            line = esp_sa_line(sa)
        except NoWiresharkName as e:
            log.info("daemon.save_keys: no line: %s", e)
            return
        self._append(ESP_SA, line)


def _keyed_esp_header(data: bytes) -> bool:
    """An ADD or UPDATE of an ESP SA that the stack took, by its base header alone."""
    try:
        header = decode_header(data)
    except PfkeyError:
        return False
    return (
        header.msg_type in (SadbMsgType.ADD, SadbMsgType.UPDATE)
        and header.satype == SaType.ESP
        and not header.errno
    )
