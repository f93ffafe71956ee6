"""HTTP/1.1 framing for the proxy on llhttp (via httptools): sans-I/O, bytes in, events out.

`ServerConnection` parses what a client sends (keep-alive, pipelining, chunked bodies, CONNECT) and
frames the proxy's answers; `ClientConnection` frames one request to an upstream at a time and
parses the answer. Like h11, which this replaces (it took about seven times the CPU to parse and
frame the two messages of a proxied request), neither touches a socket or a clock.

llhttp runs strict (no leniency flags): invalid tokens, bare CR or LF, obsolete line folding,
duplicate or signed Content-Length, Content-Length together with Transfer-Encoding, and a request
Transfer-Encoding that does not end in `chunked` are refused. The checks here add the HTTP version
(1.0 and 1.1 only), the header count and the size of a head (also bounding what llhttp buffers
for one incomplete field), no body on CONNECT or on an Upgrade request, and consistent framing of
everything the proxy writes. A refusal is a `ProtocolError` carrying the status to answer.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Final

import httptools


class ProtocolError(Exception):
    """The peer broke HTTP/1.1 framing (or a limit); `status` is what to answer (400 or 431)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class LocalProtocolError(Exception):
    """The proxy tried to write something HTTP/1.1 does not allow here (a programming error, or a
    response after one was already started)."""


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: `next_event` has nothing until more bytes arrive
NEED_DATA: Final = _Sentinel("NEED_DATA")
#: the peer closed the connection between messages
CLOSED: Final = _Sentinel("CLOSED")


@dataclass(slots=True, eq=False)
class Request:
    """A request head. `headers` keep the names as sent; values have surrounding blanks removed."""

    method: bytes
    target: bytes
    http_version: bytes
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    expect_continue: bool = False
    upgrade: bool = False

    def __repr__(self) -> str:
        return f"Request({self.method!r}, {self.target!r}, {self.http_version!r}, {len(self.headers)} headers)"


@dataclass(slots=True, eq=False)
class Response:
    """A final (non-1xx) response head from an upstream."""

    status_code: int
    reason: bytes
    http_version: bytes
    headers: list[tuple[bytes, bytes]]

    def __repr__(self) -> str:
        return f"Response({self.status_code}, {len(self.headers)} headers)"


@dataclass(slots=True, eq=False)
class Data:
    """A piece of a message body."""

    data: bytes


class EndOfMessage:
    """The end of a message (trailers of a chunked body are read and dropped)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "EndOfMessage()"


END: Final = EndOfMessage()

Event = Request | Response | Data | EndOfMessage

_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
#: a block of header lines as written: token names, values without CR, LF, NUL or other controls
#: (one C-level match for the whole block: per-field checks cost three times as much)
_HEADER_BLOCK = re.compile(rb"(?:[-!#$%&'*+.^_`|~0-9A-Za-z]+: [^\x00-\x08\x0a-\x1f\x7f]*\r\n)*")
#: a request target as sent upstream: visible ASCII only
_TARGET = re.compile(rb"[\x21-\x7e]+")
_BLANKS = b" \t"
_CHUNKED_END = b"0\r\n\r\n"


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of a header (`name` in lower case), or None."""
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _tokens(headers: list[tuple[bytes, bytes]], name: bytes) -> set[bytes]:
    """The comma-separated tokens of every `name` header, lower case."""
    out: set[bytes] = set()
    for k, v in headers:
        if k.lower() == name:
            out.update(t.strip().lower() for t in v.split(b","))
    return out


def _status_reason(status: int) -> bytes:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


_REASONS: dict[int, bytes] = {}


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase of a status code (b"" when there is none)."""
    r = _REASONS.get(status)
    if r is None:
        r = _REASONS[status] = _status_reason(status)
    return r


def _head_bytes(start_line: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    block = b"".join([k + b": " + v + b"\r\n" for k, v in headers])
    # the line count stops a value that carries CRLF plus a well-formed line of its own
    if block.count(b"\n") != len(headers) or _HEADER_BLOCK.fullmatch(block) is None:
        bad = next((k for k, v in headers if _HEADER_BLOCK.fullmatch(k + b": " + v + b"\r\n") is None), b"?")
        raise LocalProtocolError(f"invalid header field {bad[:40]!r}")
    return start_line + b"\r\n" + block + b"\r\n"


# --------------------------------------------------------------------------- body framing (writing)

_NONE, _LENGTH, _CHUNKED, _UNTIL_CLOSE = 0, 1, 2, 3


class _BodyWriter:
    __slots__ = ("mode", "remaining")

    def __init__(self, mode: int, remaining: int = 0) -> None:
        self.mode = mode
        self.remaining = remaining

    def data(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        mode = self.mode
        if mode == _CHUNKED:
            return b"%x\r\n%b\r\n" % (len(chunk), chunk)
        if mode == _LENGTH:
            if len(chunk) > self.remaining:
                raise LocalProtocolError("more body than the declared Content-Length")
            self.remaining -= len(chunk)
            return chunk
        if mode == _UNTIL_CLOSE:
            return chunk
        raise LocalProtocolError("this message has no body")

    def end(self) -> bytes:
        if self.mode == _CHUNKED:
            return _CHUNKED_END
        if self.mode == _LENGTH and self.remaining:
            raise LocalProtocolError("less body than the declared Content-Length")
        return b""


def _content_length(value: bytes) -> int:
    v = value.strip(_BLANKS)
    if not v.isdigit() or len(v) > 18:
        raise LocalProtocolError(f"invalid Content-Length {value[:30]!r}")
    return int(v)


# --------------------------------------------------------------------------- the client side of the proxy

class ServerConnection:
    """The proxy's side of a client connection: parses requests, frames responses.

    `next_event()` returns a `Request`, then `Data`… and `END`, then the next request (pipelined
    ones are queued), `NEED_DATA` when more bytes are needed (`receive_data`; b"" means the peer
    closed) or `CLOSED`; it raises `ProtocolError`. A CONNECT (or Upgrade) request ends the parsing:
    the bytes after its head are in `trailing_data`.
    """

    def __init__(self, *, max_head_bytes: int = 64 * 1024, max_headers: int = 100) -> None:
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers
        self._parser = httptools.HttpRequestParser(self)
        self._events: deque[Event] = deque()
        self._error: ProtocolError | None = None
        self._cb_error: ProtocolError | None = None
        self._eof = False
        self._stopped = False  # after CONNECT/Upgrade or an error: nothing more is parsed
        self._in_message = False
        self._in_head = False
        self._progress = False
        self._quiet = 0  # bytes fed since the parser last produced an event
        self._url: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self.trailing_data = b""
        # the request being answered
        self.request: Request | None = None
        self.request_done = False
        self._seen_body = False
        self._body: _BodyWriter | None = None
        self.response_done = False
        self._must_close = False

    # ------------------------------------------------------------------ llhttp callbacks
    def on_message_begin(self) -> None:
        self._in_message = True
        self._in_head = True
        self._url = []
        self._headers = []
        self._head_size = 0

    def _fail(self, message: str, status: int = 400) -> None:
        self._cb_error = ProtocolError(message, status)
        raise self._cb_error

    def on_url(self, part: bytes) -> None:
        self._url.append(part)
        self._head_size += len(part)
        if self._head_size > self.max_head_bytes:
            self._fail("request head too large", 431)

    def on_header(self, name: bytes, value: bytes) -> None:
        # The head's size is checked once it is complete (one field is at most a read long here;
        # an unfinished one is bounded by the quiet-bytes check in receive_data).
        if self._in_head:
            headers = self._headers
            if len(headers) >= self.max_headers:
                self._fail("too many header fields", 431)
            headers.append((name, value.rstrip(_BLANKS)))
            return
        self._head_size += len(name) + len(value) + 4  # a trailer of a chunked body: dropped
        if self._head_size > self.max_head_bytes:
            self._fail("trailer section too large", 431)

    def on_headers_complete(self) -> None:
        p = self._parser
        version = p.get_http_version()
        if version != "1.1" and version != "1.0":
            self._fail("unsupported HTTP version")
        method = p.get_method()
        headers = self._headers
        upgrade = p.should_upgrade()
        keep_alive = version == "1.1" and not upgrade
        expect = False
        has_body = False
        size = self._head_size
        for k, v in headers:
            size += len(k) + len(v) + 4
            lk = k.lower()
            if lk == b"connection":
                if keep_alive and b"close" in _tokens([(k, v)], b"connection"):
                    keep_alive = False
            elif lk == b"expect":
                expect = v.lower() == b"100-continue"
            elif lk == b"transfer-encoding" or (lk == b"content-length" and v.strip(_BLANKS) != b"0"):
                has_body = True
        if size > self.max_head_bytes:
            self._fail("request head too large", 431)
        if upgrade and has_body:
            # llhttp hands everything after an upgrade head to the new protocol: such a body would
            # be neither forwarded nor inspected, so it is refused.
            self._fail("CONNECT with a body" if method == b"CONNECT" else "Upgrade request with a body")
        self._head_size = 0
        self._in_head = False
        self._progress = True
        self._events.append(Request(method, b"".join(self._url), version.encode(), headers, keep_alive,
                                    expect and version == "1.1", upgrade))

    def on_body(self, data: bytes) -> None:
        self._progress = True
        self._events.append(Data(data))

    def on_message_complete(self) -> None:
        self._in_message = False
        self._progress = True
        self._events.append(END)

    def on_chunk_complete(self) -> None:
        self._progress = True
        self._head_size = 0  # the trailer allowance counts from the last chunk

    # ------------------------------------------------------------------ input
    def receive_data(self, data: bytes) -> None:
        """Bytes from the client; b"" when it closed (or half-closed) the connection."""
        if not data:
            self._eof = True
            return
        if self._stopped:
            if self._error is None:
                self.trailing_data += data
            return
        self._progress = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._stopped = True
            self.trailing_data = data[int(exc.args[0]):]
            return
        except httptools.HttpParserError as exc:
            self._stopped = True
            self._error = self._cb_error or ProtocolError(f"malformed request: {exc}")
            return
        if self._progress:
            self._quiet = 0
        else:
            # Nothing complete came out of these bytes: a head, chunk metadata or trailers in the
            # making. Bounded here because llhttp's wrapper buffers an unfinished field whole.
            self._quiet += len(data)
            if self._quiet > self.max_head_bytes:
                self._stopped = True
                self._error = ProtocolError("request head too large" if self._in_head else
                                            "chunk metadata or trailers too large", 431)

    @property
    def has_partial_request(self) -> bool:
        """Whether part of a request that is not complete yet has been received."""
        return self._in_message or bool(self._events)

    def next_event(self) -> Event | _Sentinel:
        if self._events:
            ev = self._events.popleft()
            if ev is END:
                if self.request is not None and not self.request_done:
                    self.request_done = True
            elif isinstance(ev, Request):
                if self.request is not None:
                    self._events.appendleft(ev)  # pipelined: it waits until this exchange is over
                    raise LocalProtocolError("the next request is read only after start_next_cycle()")
                self.request = ev
                if ev.upgrade:
                    self._must_close = True  # the proxy does not switch protocols
            else:
                self._seen_body = True
            return ev
        if self._error is not None:
            raise self._error
        if self._eof:
            if self._in_message or (self.request is not None and not self.request_done):
                raise ProtocolError("client closed the connection in the middle of a request")
            return CLOSED
        if self._stopped and self.request is not None and self.request_done:
            return CLOSED
        return NEED_DATA

    @property
    def they_are_waiting_for_100_continue(self) -> bool:
        r = self.request
        return (r is not None and r.expect_continue and self._body is None and not self.request_done
                and not self._seen_body)

    # ------------------------------------------------------------------ output
    @property
    def response_started(self) -> bool:
        return self._body is not None

    def informational(self, status: int = 100) -> bytes:
        if not 100 <= status < 200 or status == 101 or self._body is not None:
            raise LocalProtocolError("not an informational response here")
        return b"HTTP/1.1 %d %b\r\n\r\n" % (status, reason_phrase(status))

    def response(self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes | None = None) -> bytes:
        """The head of the (final) response to the current request, framing headers added.

        A Content-Length among `headers` frames the body; without one the body is chunked (or, for
        an HTTP/1.0 client, delimited by closing). Transfer-Encoding and Connection are the
        proxy's own: callers leave them out, except `connection: close`."""
        if self._body is not None:
            raise LocalProtocolError("a response was already started")
        if not 200 <= status <= 999:
            raise LocalProtocolError(f"invalid final status {status}")
        req = self.request
        out = list(headers)
        length: int | None = None
        close = self._must_close or req is None or not req.keep_alive
        for k, v in headers:
            lk = k.lower()
            if lk == b"content-length":
                if length is not None:
                    raise LocalProtocolError("two Content-Length headers")
                length = _content_length(v)
            elif lk == b"transfer-encoding":
                raise LocalProtocolError("Transfer-Encoding is set by the framing layer")
            elif lk == b"connection":
                if v.strip(_BLANKS).lower() != b"close":
                    raise LocalProtocolError("only `connection: close` may be set")
                close = True
        if (req is not None and req.method == b"HEAD") or status in (204, 304):
            body = _BodyWriter(_NONE)
        elif length is not None:
            body = _BodyWriter(_LENGTH, length)
        elif req is not None and req.http_version == b"1.1":
            body = _BodyWriter(_CHUNKED)
            out.append((b"transfer-encoding", b"chunked"))
        else:
            body = _BodyWriter(_UNTIL_CLOSE)
            close = True
        if close:
            self._must_close = True
            if not any(k.lower() == b"connection" for k, _ in headers):
                out.append((b"connection", b"close"))
        self._body = body
        return _head_bytes(b"HTTP/1.1 %d %b" % (status, reason_phrase(status) if reason is None else reason), out)

    def data(self, chunk: bytes) -> bytes:
        if self._body is None or self.response_done:
            raise LocalProtocolError("no response body is open")
        return self._body.data(chunk)

    def end(self) -> bytes:
        if self._body is None or self.response_done:
            raise LocalProtocolError("no response body is open")
        out = self._body.end()
        self.response_done = True
        return out

    def full_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                      reason: bytes | None = None) -> bytes:
        """Head, body and end of a response in one piece (one write, one copy of the body); a
        Content-Length is added when `headers` have none."""
        if header(headers, b"content-length") is None:
            headers = [*headers, (b"content-length", b"%d" % len(body))]
        head = self.response(status, headers, reason)
        assert self._body is not None
        if self._body.mode == _NONE:  # HEAD, 204, 304: the head says what the body would be
            return head + self.end()
        return head + self._body.data(body) + self.end()

    @property
    def keep_alive(self) -> bool:
        """Whether the connection can serve another request once this exchange is complete."""
        return not self._must_close

    def start_next_cycle(self) -> None:
        """Forget the answered request; the next one (maybe already queued) can be read."""
        if not (self.request_done and self.response_done) or self._must_close:
            raise LocalProtocolError("the exchange is not complete or the connection must close")
        self.request = None
        self.request_done = False
        self._seen_body = False
        self._body = None
        self.response_done = False


# --------------------------------------------------------------------------- the upstream side of the proxy

class ClientConnection:
    """The proxy's side of an upstream connection: one request at a time, its response parsed.

    `next_event()` returns the final `Response` (1xx answers are skipped), `Data`… and `END`,
    `NEED_DATA`, or `CLOSED` when the server closed without answering; it raises `ProtocolError`.
    """

    def __init__(self, *, max_head_bytes: int = 64 * 1024, max_headers: int = 256) -> None:
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers
        self._parser = httptools.HttpResponseParser(self)
        self._reset_cycle()

    def _reset_cycle(self) -> None:
        self._events: deque[Event] = deque()
        self._error: ProtocolError | None = None
        self._cb_error: ProtocolError | None = None
        self._eof = False
        self._progress = False
        self._quiet = 0
        self._in_head = False
        self._informational = False
        self._reason: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._until_close = False
        self._head_request = False
        self._started = False  # any byte of a response received
        self._got_head = False
        self._complete = False
        self._ignore = False  # after a HEAD response's head: nothing else is read
        self._reusable = True
        self._sent = False

    # ------------------------------------------------------------------ output
    def request(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
        """A whole request with a buffered body (Content-Length framing), as bytes to send."""
        if self._sent:
            raise LocalProtocolError("a request is already in flight on this connection")
        if not _TOKEN.fullmatch(method):
            raise LocalProtocolError(f"invalid method {method[:20]!r}")
        if not _TARGET.fullmatch(target):
            raise LocalProtocolError("invalid request target")
        length: int | None = None
        for k, v in headers:
            lk = k.lower()
            if lk == b"content-length":
                if length is not None:
                    raise LocalProtocolError("two Content-Length headers")
                length = _content_length(v)
            elif lk == b"transfer-encoding":
                raise LocalProtocolError("Transfer-Encoding is set by the framing layer")
        if length is None and body:
            headers = [*headers, (b"content-length", b"%d" % len(body))]
        elif length is not None and length != len(body):
            raise LocalProtocolError("Content-Length does not match the body")
        self._sent = True
        self._head_request = method == b"HEAD"
        return _head_bytes(b"%b %b HTTP/1.1" % (method, target), headers) + body

    # ------------------------------------------------------------------ llhttp callbacks
    def _fail(self, message: str, status: int = 502) -> None:
        self._cb_error = ProtocolError(message, status)
        raise self._cb_error

    def on_message_begin(self) -> None:
        if self._complete or self._ignore:
            self._reusable = False  # bytes after the response: the connection is not trusted again
            self._fail("data after the response")
        self._started = True
        self._in_head = True
        self._reason = []
        self._headers = []
        self._head_size = 0

    def on_status(self, part: bytes) -> None:
        self._reason.append(part)
        self._head_size += len(part)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:
            headers = self._headers
            if len(headers) >= self.max_headers:
                self._fail("too many response header fields")
            headers.append((name, value.rstrip(_BLANKS)))
            return
        if self._ignore:
            return
        self._head_size += len(name) + len(value) + 4  # trailers: dropped
        if self._head_size > self.max_head_bytes:
            self._fail("response trailers too large")

    def on_headers_complete(self) -> None:
        p = self._parser
        self._in_head = False
        self._progress = True
        status = p.get_status_code()
        if 100 <= status < 200:
            if status == 101:
                self._fail("upstream switched protocols")
            self._informational = True
            return
        version = p.get_http_version()
        if version != "1.1" and version != "1.0":
            self._fail("unsupported HTTP version in the upstream response")
        headers = self._headers
        chunked = False
        length = False
        size = self._head_size
        for k, v in headers:
            size += len(k) + len(v) + 4
            lk = k.lower()
            if lk == b"transfer-encoding":
                chunked = v.lower().rstrip(_BLANKS).endswith(b"chunked")
            elif lk == b"content-length":
                length = True
            elif lk == b"connection" and b"close" in _tokens([(k, v)], b"connection"):
                self._reusable = False
        if size > self.max_head_bytes:
            self._fail("response head too large")
        self._head_size = 0
        if version != "1.1":
            self._reusable = False
        self._got_head = True
        self._events.append(Response(status, b"".join(self._reason), version.encode(), headers))
        if self._head_request:
            # llhttp does not know the request was HEAD and would wait for the declared body:
            # the message ends here, and the connection is not reused.
            self._ignore = True
            self._reusable = False
            self._complete = True
            self._events.append(END)
        elif not chunked and not length and status not in (204, 304):
            self._until_close = True  # the body ends when the server closes
            self._reusable = False

    def on_body(self, data: bytes) -> None:
        if self._ignore:
            return
        self._progress = True
        self._events.append(Data(data))

    def on_message_complete(self) -> None:
        if self._ignore:
            return
        self._progress = True
        if self._informational:
            self._informational = False
            self._started = False
            return
        self._complete = True
        self._events.append(END)

    def on_chunk_complete(self) -> None:
        self._progress = True
        self._head_size = 0

    # ------------------------------------------------------------------ input
    def receive_data(self, data: bytes) -> None:
        """Bytes from the upstream; b"" when it closed the connection."""
        if not data:
            self._eof = True
            self._reusable = False
            if self._until_close and self._got_head and not self._complete:
                self._complete = True
                self._events.append(END)
            return
        if self._error is not None or self._ignore:
            if self._complete:
                self._reusable = False
            return
        self._progress = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._error = ProtocolError("upstream switched protocols", 502)
        except httptools.HttpParserError as exc:
            self._error = self._cb_error or ProtocolError(f"malformed upstream response: {exc}", 502)
        if self._error is not None:
            self._reusable = False
            return
        if self._progress:
            self._quiet = 0
        else:
            self._quiet += len(data)
            if self._quiet > self.max_head_bytes:
                self._error = ProtocolError("upstream response head, chunk metadata or trailers too large", 502)
                self._reusable = False

    def next_event(self) -> Event | _Sentinel:
        if self._events:
            return self._events.popleft()
        if self._error is not None:
            raise self._error
        if self._eof:
            if not self._started or self._complete:
                return CLOSED
            raise ProtocolError("upstream closed the connection in the middle of the response", 502)
        return NEED_DATA

    @property
    def has_pending_events(self) -> bool:
        """Whether `next_event` has something without more input."""
        return bool(self._events)

    @property
    def reused_ok(self) -> bool:
        """Whether the exchange completed cleanly and the connection may carry another request."""
        return self._sent and self._complete and self._reusable and not self._eof and not self._events

    def start_next_cycle(self) -> None:
        if not self.reused_ok:
            raise LocalProtocolError("the connection cannot be reused")
        self._reset_cycle()
