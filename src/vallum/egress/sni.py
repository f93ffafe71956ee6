"""A small, bounded parser for the TLS ClientHello: the server name (SNI) and ALPN offers.

Sans-I/O: give it the bytes received so far on a CONNECT tunnel; it answers "need more", a
`ClientHello`, or raises `ClientHelloError` for anything that is not a well-formed TLS handshake.
The handshake may span several TLS records; the total is bounded by `max_bytes`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: a DNS host name as it may appear in SNI (RFC 6066: no IP literals, no trailing dot)
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$)({_LABEL})(\.{_LABEL})*$")

_RECORD_HANDSHAKE = 0x16
_HANDSHAKE_CLIENT_HELLO = 0x01
_EXT_SERVER_NAME = 0x0000
_EXT_ALPN = 0x0010
_MAX_RECORD = 2**14 + 2048


class ClientHelloError(ValueError):
    """The bytes are not a well-formed TLS ClientHello (or it is larger than allowed)."""


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What the proxy needs from a ClientHello."""

    #: the requested server name, lower-cased, or None when the client sent none
    sni: str | None
    #: ALPN protocols offered, in order
    alpn: tuple[str, ...] = ()
    #: bytes of the buffer that the ClientHello's records occupied
    length: int = 0


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise ClientHelloError("truncated ClientHello")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u24(self) -> int:
        return int.from_bytes(self.take(3), "big")

    def vec(self, len_bytes: int) -> bytes:
        n = int.from_bytes(self.take(len_bytes), "big")
        return self.take(n)

    @property
    def remaining(self) -> int:
        return len(self.buf) - self.pos


def parse_client_hello(data: bytes, max_bytes: int = 65536) -> ClientHello | None:
    """Parse a ClientHello from the start of `data`; None when more bytes are needed."""
    handshake = bytearray()
    pos = 0
    need: int | None = None  # total handshake message length, once known
    while True:
        if len(data) - pos < 5:
            if pos == 0 and data and data[0] != _RECORD_HANDSHAKE:
                raise ClientHelloError("not a TLS handshake record")
            return None
        ctype, major = data[pos], data[pos + 1]
        if ctype != _RECORD_HANDSHAKE:
            raise ClientHelloError("not a TLS handshake record")
        if major != 3:
            raise ClientHelloError("unsupported TLS record version")
        rlen = int.from_bytes(data[pos + 3:pos + 5], "big")
        if rlen == 0 or rlen > _MAX_RECORD:
            raise ClientHelloError("bad TLS record length")
        if pos + 5 + rlen > max_bytes:
            raise ClientHelloError("ClientHello larger than allowed")
        if len(data) < pos + 5 + rlen:
            return None
        handshake += data[pos + 5:pos + 5 + rlen]
        pos += 5 + rlen
        if need is None and len(handshake) >= 4:
            if handshake[0] != _HANDSHAKE_CLIENT_HELLO:
                raise ClientHelloError("first handshake message is not a ClientHello")
            need = 4 + int.from_bytes(handshake[1:4], "big")
            if need > max_bytes:
                raise ClientHelloError("ClientHello larger than allowed")
        if need is not None and len(handshake) >= need:
            sni, alpn = _parse_body(bytes(handshake[4:need]))
            return ClientHello(sni=sni, alpn=alpn, length=pos)


def _parse_body(body: bytes) -> tuple[str | None, tuple[str, ...]]:
    r = _Reader(body)
    r.take(2)  # legacy_version
    r.take(32)  # random
    sid = r.vec(1)
    if len(sid) > 32:
        raise ClientHelloError("session id too long")
    suites = r.vec(2)
    if not suites or len(suites) % 2:
        raise ClientHelloError("bad cipher suite list")
    if not r.vec(1):
        raise ClientHelloError("empty compression method list")
    if r.remaining == 0:
        return None, ()
    ext = _Reader(r.vec(2))
    if r.remaining:
        raise ClientHelloError("trailing bytes after extensions")
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    seen: set[int] = set()
    while ext.remaining:
        etype = ext.u16()
        edata = ext.vec(2)
        if etype in seen:
            raise ClientHelloError(f"duplicate extension {etype}")
        seen.add(etype)
        if etype == _EXT_SERVER_NAME:
            sni = _parse_sni(edata)
        elif etype == _EXT_ALPN:
            alpn = _parse_alpn(edata)
    return sni, alpn


def _parse_sni(data: bytes) -> str | None:
    r = _Reader(data)
    lst = _Reader(r.vec(2))
    if r.remaining:
        raise ClientHelloError("trailing bytes in server_name")
    name: str | None = None
    while lst.remaining:
        kind = lst.u8()
        raw = lst.vec(2)
        if kind != 0:
            continue
        if name is not None:
            raise ClientHelloError("more than one host_name in server_name")
        try:
            text = raw.decode("ascii").lower()
        except UnicodeDecodeError:
            raise ClientHelloError("server name is not ASCII") from None
        if not _HOSTNAME.match(text):
            raise ClientHelloError("server name is not a valid host name")
        name = text
    return name


def _parse_alpn(data: bytes) -> tuple[str, ...]:
    r = _Reader(data)
    lst = _Reader(r.vec(2))
    out = []
    while lst.remaining:
        proto = lst.vec(1)
        if not proto:
            raise ClientHelloError("empty ALPN protocol name")
        out.append(proto.decode("latin-1"))
    return tuple(out)
