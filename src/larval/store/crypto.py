"""The state key, and each stored value sealed under it with AES-GCM.

A value is stored as ``nonce (12 bytes) || ciphertext || tag (16 bytes)``, sealed with
the record's ``kind NUL key`` as associated data: a value copied or moved to another
record fails to open, as does one changed by a single bit, or one sealed under another
key.

The nonce is 12 random bytes per seal. Random nonces are safe while far fewer than
2^32 values are sealed under one key (NIST SP 800-38D §8.3): a store seals one value
per record written, and its writes are batched (sequence numbers reserved in blocks of
2^14, replay windows checkpointed on a timer), so a key sees millions of seals over
years, not billions. A counter would have to survive the very crashes the store exists
for; a random nonce cannot be rolled back.

The key file holds the 32 key bytes, either raw or as 64 hex digits (a trailing newline
allowed); `StateKey.create` writes hex, as ``openssl rand -hex 32`` would. It must be
mode 0600 or stricter. The key's bytes never appear in a ``repr``, a log or an error.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from larval.store import StoreError

__all__ = ["KEY_SIZE", "NONCE_SIZE", "SealError", "StateKey", "StateKeyError", "read_key_file"]

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16


class StateKeyError(StoreError):
    """The key file is missing, readable by others, or not a key: names the file and why."""


class SealError(StoreError):
    """A stored value does not open under the key: tampered, moved, or another key's."""


class StateKey:
    """An AES-256-GCM key for the store's values; `source` says where it came from."""

    def __init__(self, key: bytes, source: str = "a key") -> None:
        if len(key) != KEY_SIZE:
            raise StateKeyError(f"{source}: a state key is {KEY_SIZE} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self.source = source

    def __repr__(self) -> str:
        return f"<StateKey from {self.source}>"

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> StateKey:
        """Read a key file (`read_key_file`)."""
        return cls(read_key_file(path), os.fspath(path))

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> StateKey:
        """Write a new random key to a file that must not exist yet, mode 0600."""
        name = os.fspath(path)
        key = secrets.token_bytes(KEY_SIZE)
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as e:
            raise StateKeyError(f"{name}: cannot create the state key: {e.strerror}") from None
        try:
            os.write(fd, key.hex().encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(Path(name).parent)
        return cls(key, name)

    def seal(self, kind: str, key: str, value: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, bytes(value), _associated(kind, key))

    def open(self, kind: str, key: str, sealed: bytes) -> bytes:
        """The value sealed for (kind, key); raises `SealError` (the message names the
        record, never the key or the value)."""
        if len(sealed) < NONCE_SIZE + TAG_SIZE:
            raise SealError(f"{kind} {key!r}: {len(sealed)} bytes is too short to be sealed")
        try:
            return self._aead.decrypt(
                sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], _associated(kind, key)
            )
        except InvalidTag:
            raise SealError(
                f"{kind} {key!r}: does not open under {self.source} "
                "(another key, changed, or moved from another record)"
            ) from None


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """The 32 key bytes of a key file, raw or hex; refused unless mode 0600 or stricter.
    Every backend that seals values reads its key with this."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
            data = f.read(2 * KEY_SIZE + 3)
    except OSError as e:
        raise StateKeyError(f"{name}: cannot read the state key: {e.strerror}") from None
    if mode & 0o077:
        raise StateKeyError(
            f"{name}: the state key is mode {mode:04o}, open to group or others; chmod 600 it"
        )
    return _parse_key(name, data)


def _associated(kind: str, key: str) -> bytes:
    return kind.encode() + b"\0" + key.encode()


def _parse_key(name: str, data: bytes) -> bytes:
    if len(data) == KEY_SIZE:
        return data
    text = data.strip()
    if len(text) == 2 * KEY_SIZE:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    raise StateKeyError(
        f"{name}: not a state key: {KEY_SIZE} raw bytes or {2 * KEY_SIZE} hex digits expected"
    )


def fsync_dir(path: Path) -> None:
    """Make the names in the directory `path` durable (a file created or renamed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
