"""The local certificate authority for TLS interception, and per-host leaf certificates.

`init_ca(folder)` creates `ca.pem` and `ca.key` (mode 0600). `CertificateAuthority.context_for(host)`
mints (and caches, LRU) a server `SSLContext` whose leaf certificate, signed by the CA, names
`host`. One EC P-256 key serves every leaf: minting then costs a signature, not a key generation.
Clients trust interception by trusting `ca.pem`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.pem"
CA_KEY = "ca.key"


class CAError(RuntimeError):
    """The CA files are missing or unusable."""


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vallum"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def init_ca(folder: str | Path, *, force: bool = False, now: dt.datetime | None = None,
            days: int = 3650) -> tuple[Path, Path]:
    """Create a CA in `folder` (key mode 0600). Refuses to overwrite unless `force`."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = d / CA_CERT, d / CA_KEY
    if not force and (cert_path.exists() or key_path.exists()):
        raise CAError(f"a CA already exists in {d} (use --force to replace it)")
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("vallum interception CA")
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_bytes)
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def mint_leaf(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, leaf_key: ec.EllipticCurvePrivateKey,
              host: str, now: dt.datetime, days: int = 30) -> x509.Certificate:
    """A server certificate for `host` (a DNS name or an IP address) signed by the CA."""
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(host[:64]))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


class CertificateAuthority:
    """A loaded CA that hands out server `SSLContext`s per host, cached."""

    def __init__(self, folder: str | Path, cache_size: int = 1024) -> None:
        d = Path(folder)
        try:
            self.cert = x509.load_pem_x509_certificate((d / CA_CERT).read_bytes())
            key = serialization.load_pem_private_key((d / CA_KEY).read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise CAError(f"cannot load the CA from {d} ({exc}); run `vallum tls init`") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CAError("the CA key must be an EC key (created by `vallum tls init`)")
        self.key = key
        self.folder = d
        self.cache_size = cache_size
        self._leaf_key = ec.generate_private_key(ec.SECP256R1())
        self._leaf_key_pem = self._leaf_key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption())
        self._cache: OrderedDict[str, ssl.SSLContext] = OrderedDict()
        self._lock = threading.Lock()
        self.minted = 0

    def context_for(self, host: str, now: dt.datetime | None = None) -> ssl.SSLContext:
        """A server context presenting a leaf for `host` (HTTP/1.1 only via ALPN)."""
        host = host.lower()
        with self._lock:
            ctx = self._cache.get(host)
            if ctx is not None:
                self._cache.move_to_end(host)
                return ctx
        ctx = self._build(host, now or dt.datetime.now(dt.UTC))
        with self._lock:
            self._cache[host] = ctx
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return ctx

    def _build(self, host: str, now: dt.datetime) -> ssl.SSLContext:
        leaf = mint_leaf(self.cert, self.key, self._leaf_key, host, now)
        self.minted += 1
        chain = leaf.public_bytes(serialization.Encoding.PEM) + self.cert.public_bytes(serialization.Encoding.PEM)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        # ssl only loads certificates from files: a private temporary folder, removed at once.
        with tempfile.TemporaryDirectory(prefix="vallum-leaf-") as tmp:
            cert_file, key_file = Path(tmp) / "leaf.pem", Path(tmp) / "leaf.key"
            cert_file.write_bytes(chain)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(self._leaf_key_pem)
            ctx.load_cert_chain(cert_file, key_file)
        return ctx
