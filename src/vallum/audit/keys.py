"""The Ed25519 key that signs audit checkpoints, and its exported public half.

- The private key is a PEM (PKCS#8, unencrypted) file created on first run with mode 0600.
- The public key is exported beside the log as ``audit.pub``: PEM SubjectPublicKeyInfo.
  `load_public_key` also accepts the 32 raw key bytes in base64 (one line).
- A key id is the first 16 hex digits of SHA-256 over the 32 raw public key bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PUBLIC_KEY_NAME = "audit.pub"
PRIVATE_KEY_NAME = "audit.key"


class AuditKeyError(ValueError):
    """A key file that cannot be read or is not an Ed25519 key."""


def raw_public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """Short identifier of a public key (16 hex digits)."""
    return hashlib.sha256(raw_public_bytes(key)).hexdigest()[:16]


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_or_create_signing_key(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """Load the signing key at `path`, or create it (mode 0600). Returns (key, created)."""
    for _ in range(50):
        try:
            return _load_or_create(path)
        except FileExistsError:
            time.sleep(0.02)  # another process is creating it right now
        except AuditKeyError:
            if time.time() - _mtime(path) > 2:
                raise
            time.sleep(0.02)  # …or has not finished writing it
    return _load_or_create(path)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _load_or_create(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        # O_EXCL: two processes racing to create the key must not overwrite each other's.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        return key, True
    except OSError as exc:
        raise AuditKeyError(f"cannot read signing key {path}: {exc.strerror}") from None
    try:
        loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise AuditKeyError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise AuditKeyError(f"{path} is not an Ed25519 key")
    key = loaded
    if os.stat(path).st_mode & 0o077:
        # A key readable by others lets them forge checkpoints: tighten it, the owner can still read.
        os.chmod(path, 0o600)
    return key, False


def export_public_key(key: Ed25519PublicKey, directory: Path) -> tuple[Path, str | None]:
    """Write ``audit.pub`` beside the log. An older, different key is kept as ``audit.pub.<key id>``.

    Returns (path, id of the replaced key or None).
    """
    path = directory / PUBLIC_KEY_NAME
    pem = public_pem(key)
    replaced: str | None = None
    if path.exists():
        try:
            old = load_public_key(path)
        except AuditKeyError:
            old = None
        if old is not None and raw_public_bytes(old) == raw_public_bytes(key):
            return path, None
        if old is not None:
            replaced = key_id(old)
            os.replace(path, directory / f"{PUBLIC_KEY_NAME}.{replaced}")
    tmp = directory / f".{PUBLIC_KEY_NAME}.tmp"
    tmp.write_bytes(pem)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path, replaced


def parse_public_key(data: bytes, source: str = "key") -> Ed25519PublicKey:
    """A public key from PEM, or from the base64 of the 32 raw bytes."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text)
        except ValueError as exc:
            raise AuditKeyError(f"{source}: not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise AuditKeyError(f"{source}: not an Ed25519 public key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise AuditKeyError(f"{source}: neither PEM nor base64") from None
    if len(raw) != 32:
        raise AuditKeyError(f"{source}: a raw Ed25519 public key has 32 bytes, not {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AuditKeyError(f"cannot read public key {path}: {exc.strerror}") from None
    return parse_public_key(data, str(path))


def verify_signature(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True
