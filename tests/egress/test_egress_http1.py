"""`vallum.egress.http1`: request and response framing on llhttp. Plain bytes in, events out —
no sockets here except in the last section, which drives the same cases through a running proxy.
Where h11 (the previous parser) and http1 both accept a message, they must read it the same way."""

from __future__ import annotations

import socket

import h11
import pytest
from egress_support import raw_request, route
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vallum.egress import http1
from vallum.egress.http1 import (
    CLOSED,
    END,
    NEED_DATA,
    ClientConnection,
    Data,
    LocalProtocolError,
    ProtocolError,
    Request,
    Response,
    ServerConnection,
)


def drain(conn: ServerConnection | ClientConnection) -> list:
    """Every event available now (stops at NEED_DATA/CLOSED, which are included)."""
    out = []
    while True:
        ev = conn.next_event()
        out.append(ev)
        if ev is NEED_DATA or ev is CLOSED:
            return out


def one_request(conn: ServerConnection) -> tuple[Request, bytes]:
    """The next whole request (head and body); answers it with an empty 200 and starts the next cycle."""
    head = conn.next_event()
    assert isinstance(head, Request), head
    body = b""
    while True:
        ev = conn.next_event()
        if ev is END:
            break
        assert isinstance(ev, Data), ev
        body += ev.data
    conn.full_response(200, [], b"")
    if conn.keep_alive:
        conn.start_next_cycle()
    return head, body


# --------------------------------------------------------------------------- requests


def test_request_head_body_and_pipelining_in_one_read():
    c = ServerConnection()
    c.receive_data(b"POST http://a.example/x?q=1 HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n"
                   b"X-Pad:   spaced value \t \r\n\r\nhelloGET http://a.example/y HTTP/1.1\r\nHost: a\r\n\r\n")
    req, body = one_request(c)
    assert (req.method, req.target, req.http_version, body) == (b"POST", b"http://a.example/x?q=1", b"1.1", b"hello")
    assert req.headers == [(b"Host", b"a.example"), (b"Content-Length", b"5"), (b"X-Pad", b"spaced value")]
    assert req.keep_alive
    req2, body2 = one_request(c)
    assert req2.target == b"http://a.example/y" and body2 == b""
    assert c.next_event() is NEED_DATA
    c.receive_data(b"")
    assert c.next_event() is CLOSED


def test_next_request_waits_for_the_current_exchange():
    c = ServerConnection()
    c.receive_data(b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\nGET http://b/ HTTP/1.1\r\nHost: b\r\n\r\n")
    assert isinstance(c.next_event(), Request) and c.next_event() is END
    with pytest.raises(LocalProtocolError):
        c.next_event()  # the pipelined request is not handed out before this one is answered
    with pytest.raises(LocalProtocolError):
        c.start_next_cycle()  # …and the cycle cannot end before the response did
    c.full_response(200, [], b"ok")
    c.start_next_cycle()
    assert c.next_event().target == b"http://b/"


def test_chunked_request_body_and_trailers_dropped():
    c = ServerConnection()
    c.receive_data(b"POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    req, body = one_request(c)
    assert body == b"hello world"
    assert [k for k, _ in req.headers] == [b"Host", b"Transfer-Encoding"]


@pytest.mark.parametrize("data", [
    b"GARBAGE\r\n\r\n",
    b"GET\r\n\r\n",
    b"get http://a/ HTTP/1.1\r\n\r\n",
    b"G\x00T http://a/ HTTP/1.1\r\n\r\n",
    b"GET http://a/ HTTP/9.9\r\nHost: a\r\n\r\n",
    b"GET http://a/ HTTP/2.0\r\nHost: a\r\n\r\n",
    b"GET http://a/ HTTP/0.9\r\nHost: a\r\n\r\n",
    b"GET http://a/x y HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://a/\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\nBad Header\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\nHost : a\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\n Host: a\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\nX: a\x00b\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\nX: a\rb\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\nX: a\nY: b\r\n\r\n",
    b"GET http://a/ HTTP/1.1\nHost: a\n\n",
    b"GET http://a/ HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
    # request smuggling shapes
    b"POST http://a/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"POST http://a/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na",
    b"POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nab",
    b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    b"POST http://a/ HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"POST http://a/ HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
    b"POST http://a/ HTTP/1.1\r\nContent-Length: 0x5\r\n\r\nhello",
    b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
    # no body on CONNECT or an Upgrade request: llhttp would hand it to the tunnel uninspected
    b"CONNECT a.example:443 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"CONNECT a.example:443 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST http://a/ HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\nhi",
])
def test_malformed_requests_are_protocol_errors(data):
    for feed in ([data], [data[i:i + 1] for i in range(len(data))]):  # whole, and byte by byte
        c = ServerConnection()
        with pytest.raises(ProtocolError) as exc:
            for d in feed:
                c.receive_data(d)
                while isinstance(ev := c.next_event(), Request | Data):
                    pass
                if ev is END:
                    raise AssertionError("accepted a malformed request")
        assert exc.value.status == 400


def test_client_closing_mid_request_is_an_error_and_between_requests_is_not():
    c = ServerConnection()
    c.receive_data(b"POST http://a/ HTTP/1.1\r\nContent-Length: 10\r\n\r\nhalf")
    assert isinstance(c.next_event(), Request) and c.next_event().data == b"half"
    c.receive_data(b"")
    with pytest.raises(ProtocolError):
        c.next_event()
    c = ServerConnection()
    c.receive_data(b"GET http://a/ HTT")
    assert c.next_event() is NEED_DATA and c.has_partial_request
    c.receive_data(b"")
    with pytest.raises(ProtocolError):
        c.next_event()


def test_header_count_and_head_size_limits():
    many = b"GET http://a/ HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(60)) + b"\r\n"
    c = ServerConnection(max_headers=50)
    c.receive_data(many)
    with pytest.raises(ProtocolError) as exc:
        c.next_event()
    assert exc.value.status == 431
    c = ServerConnection(max_headers=60)
    c.receive_data(many)
    assert isinstance(c.next_event(), Request)
    # one field that never ends, fed in small pieces: refused once past the limit, not buffered on
    c = ServerConnection(max_head_bytes=4096)
    c.receive_data(b"GET http://a/ HTTP/1.1\r\nX-Big: ")
    fed = 0
    with pytest.raises(ProtocolError) as exc:
        while fed < 1_000_000:
            c.receive_data(b"a" * 100)
            fed += 100
            assert c.next_event() is NEED_DATA
    assert exc.value.status == 431 and fed < 4096 + 200
    # a long URL, and a long head arriving in one read
    for data in (b"GET http://a/" + b"p" * 5000 + b" HTTP/1.1\r\n\r\n",
                 b"GET http://a/ HTTP/1.1\r\nX: " + b"v" * 5000 + b"\r\n\r\n"):
        c = ServerConnection(max_head_bytes=4096)
        c.receive_data(data)
        with pytest.raises(ProtocolError) as exc:
            drain(c)
        assert exc.value.status == 431


def test_trailers_and_chunk_metadata_are_bounded():
    c = ServerConnection(max_head_bytes=2048)
    c.receive_data(b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX-T: ")
    with pytest.raises(ProtocolError) as exc:
        for _ in range(100):
            c.receive_data(b"t" * 100)
            drain(c)
    assert exc.value.status == 431


def test_connect_and_upgrade_end_the_parsing():
    c = ServerConnection()
    c.receive_data(b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n\x16\x03\x01\x00")
    req = c.next_event()
    assert isinstance(req, Request) and req.method == b"CONNECT" and req.target == b"api.example.com:443"
    assert c.next_event() is END
    assert c.trailing_data == b"\x16\x03\x01\x00"
    c.receive_data(b"more")
    assert c.trailing_data == b"\x16\x03\x01\x00more"
    # an Upgrade request is served once and the connection then closes (the proxy does not switch)
    c = ServerConnection()
    c.receive_data(b"GET http://a/ HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
    req = c.next_event()
    assert req.upgrade and not req.keep_alive and c.next_event() is END
    out = c.full_response(200, [], b"no")
    assert b"connection: close" in out and not c.keep_alive


def test_keep_alive_rules():
    for head, keep in ((b"GET http://a/ HTTP/1.1\r\n\r\n", True),
                       (b"GET http://a/ HTTP/1.1\r\nConnection: close\r\n\r\n", False),
                       (b"GET http://a/ HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n", False),
                       (b"GET http://a/ HTTP/1.0\r\n\r\n", False),
                       (b"GET http://a/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False)):
        c = ServerConnection()
        c.receive_data(head)
        req = c.next_event()
        assert req.keep_alive is keep
        c.next_event()
        out = c.full_response(200, [(b"content-type", b"text/plain")], b"x")
        assert (b"connection: close" in out) is (not keep) and c.keep_alive is keep


# --------------------------------------------------------------------------- responses to the client


def parse_with_h11(raw: bytes, method: bytes = b"GET") -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Read a response the way an independent client (h11) does."""
    cl = h11.Connection(h11.CLIENT)
    cl.send(h11.Request(method=method, target=b"/", headers=[(b"host", b"a")]))
    cl.send(h11.EndOfMessage())
    cl.receive_data(raw)
    cl.receive_data(b"")
    status, headers, body = 0, [], b""
    while True:
        ev = cl.next_event()
        if isinstance(ev, h11.Response):
            status, headers = ev.status_code, list(ev.headers)
        elif isinstance(ev, h11.Data):
            body += ev.data
        elif isinstance(ev, h11.EndOfMessage | h11.ConnectionClosed):
            return status, headers, body
        elif ev is h11.NEED_DATA:
            raise AssertionError("response incomplete")


def server_for(head: bytes) -> ServerConnection:
    c = ServerConnection()
    c.receive_data(head)
    assert isinstance(c.next_event(), Request) and c.next_event() is END
    return c


def test_response_framing_choices():
    get11 = b"GET http://a/ HTTP/1.1\r\n\r\n"
    c = server_for(get11)
    out = c.response(200, [(b"content-type", b"text/plain")]) + c.data(b"abc") + c.data(b"") + c.data(b"de") + c.end()
    assert b"transfer-encoding: chunked" in out and parse_with_h11(out)[2] == b"abcde"
    c = server_for(get11)
    out = c.response(200, [(b"Content-Length", b"5")], b"Fine") + c.data(b"abcde") + c.end()
    assert out.startswith(b"HTTP/1.1 200 Fine\r\n") and parse_with_h11(out)[2] == b"abcde"
    c = server_for(b"GET http://a/ HTTP/1.0\r\n\r\n")
    out = c.response(200, []) + c.data(b"until close") + c.end()
    assert b"chunked" not in out and b"connection: close" in out and not c.keep_alive
    assert out.endswith(b"\r\n\r\nuntil close")
    c = server_for(b"HEAD http://a/ HTTP/1.1\r\n\r\n")
    out = c.full_response(200, [(b"content-length", b"1234")], b"ignored")
    assert out.endswith(b"content-length: 1234\r\n\r\n")
    for status in (204, 304):
        c = server_for(get11)
        out = c.full_response(status, [], b"")
        assert parse_with_h11(out)[0] == status and c.keep_alive


def test_response_framing_is_enforced():
    get11 = b"GET http://a/ HTTP/1.1\r\n\r\n"
    c = server_for(get11)
    c.response(200, [(b"content-length", b"3")])
    with pytest.raises(LocalProtocolError):
        c.data(b"abcd")
    c = server_for(get11)
    c.response(200, [(b"content-length", b"3")])
    c.data(b"ab")
    with pytest.raises(LocalProtocolError):
        c.end()
    c = server_for(get11)
    c.response(200, [])
    with pytest.raises(LocalProtocolError):
        c.response(200, [])
    c = server_for(b"HEAD http://a/ HTTP/1.1\r\n\r\n")
    c.response(200, [])
    with pytest.raises(LocalProtocolError):
        c.data(b"x")
    for bad in ([(b"x-a", b"v\r\nInjected: 1")], [(b"bad name", b"v")], [(b"x", b"a\x01b")], [(b"x", b"a\x7f")],
                [(b"transfer-encoding", b"chunked")], [(b"connection", b"keep-alive")],
                [(b"content-length", b"1"), (b"content-length", b"1")], [(b"content-length", b"-1")]):
        c = server_for(get11)
        with pytest.raises(LocalProtocolError):
            c.response(200, bad)
    with pytest.raises(LocalProtocolError):
        server_for(get11).response(99, [])


def test_100_continue():
    c = ServerConnection()
    c.receive_data(b"POST http://a/ HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert isinstance(c.next_event(), Request)
    assert c.they_are_waiting_for_100_continue
    assert c.informational(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    c.receive_data(b"hi")
    assert c.next_event().data == b"hi" and not c.they_are_waiting_for_100_continue


# --------------------------------------------------------------------------- the upstream side


def test_upstream_request_serialisation_and_validation():
    u = ClientConnection()
    out = u.request(b"POST", b"/a?b=c", [(b"host", b"x.example"), (b"content-type", b"text/plain")], b"body")
    assert out == (b"POST /a?b=c HTTP/1.1\r\nhost: x.example\r\ncontent-type: text/plain\r\n"
                   b"content-length: 4\r\n\r\nbody")
    with pytest.raises(LocalProtocolError):
        u.request(b"GET", b"/", [])  # one request in flight at a time
    for method, target, headers, body in (
            (b"GET", b"/a\r\nX: y", [], b""), (b"GET", b"/a b", [], b""), (b"GET", "/é".encode(), [], b""),
            (b"GET", b"", [], b""), (b"G T", b"/", [], b""), (b"GET", b"/", [(b"x", b"a\r\nb: c")], b""),
            (b"GET", b"/", [(b"x", b"a\x00")], b""), (b"POST", b"/", [(b"content-length", b"3")], b"ab"),
            (b"POST", b"/", [(b"transfer-encoding", b"chunked")], b"ab")):
        with pytest.raises(LocalProtocolError):
            ClientConnection().request(method, target, headers, body)


def exchange(response: bytes, method: bytes = b"GET", pieces: int = 1, eof: bool = False) -> tuple[ClientConnection,
                                                                                                  list]:
    u = ClientConnection()
    u.request(method, b"/", [(b"host", b"a")])
    step = max(1, len(response) // pieces)
    events = []
    for i in range(0, len(response), step):
        u.receive_data(response[i:i + step])
        events += [e for e in drain(u) if e is not NEED_DATA]
    if eof:
        u.receive_data(b"")
        events += [e for e in drain(u) if e is not NEED_DATA]
    return u, events


def body_of(events: list) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Data))


def test_upstream_responses():
    u, evs = exchange(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", pieces=7)
    assert isinstance(evs[0], Response) and evs[0].status_code == 200 and evs[0].reason == b"OK"
    assert body_of(evs) == b"abc" and evs[-1] is END and u.reused_ok
    u.start_next_cycle()
    u.request(b"GET", b"/2", [])
    u.receive_data(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert drain(u)[:2][1] is END and u.reused_ok
    u, evs = exchange(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n", pieces=5)
    assert body_of(evs) == b"abc" and evs[-1] is END and u.reused_ok
    # until close: complete at EOF, never reused
    u, evs = exchange(b"HTTP/1.1 200 OK\r\n\r\nall of it", eof=True)
    assert body_of(evs) == b"all of it" and evs[-2] is END and evs[-1] is CLOSED and not u.reused_ok
    # HEAD: the declared length has no body behind it
    u, evs = exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", method=b"HEAD")
    assert isinstance(evs[0], Response) and evs[1] is END and not u.reused_ok
    # not reusable: close, HTTP/1.0, bytes after the response
    for raw in (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na",
                b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na"):
        u, evs = exchange(raw)
        assert body_of(evs) == b"a" and evs[-1] is END and not u.reused_ok
    u = ClientConnection()
    u.request(b"GET", b"/", [])
    u.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\n")
    evs = []
    with pytest.raises(ProtocolError):
        while True:
            evs.append(u.next_event())
    assert evs[-1] is END and not u.reused_ok


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    b"HTTP/1.1 20 OK\r\n\r\n",
    b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"NOT HTTP AT ALL\r\n\r\n",
])
def test_malformed_upstream_responses(raw):
    u = ClientConnection()
    u.request(b"GET", b"/", [])
    u.receive_data(raw)
    with pytest.raises(ProtocolError):
        drain(u)
    assert not u.reused_ok


def test_truncated_and_missing_upstream_responses():
    u, _ = exchange(b"", eof=False)
    u.receive_data(b"")
    assert u.next_event() is CLOSED  # closed without answering (a stale pooled connection)
    u = ClientConnection()
    u.request(b"GET", b"/", [])
    u.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert isinstance(u.next_event(), Response) and u.next_event().data == b"abc"
    u.receive_data(b"")
    with pytest.raises(ProtocolError):
        u.next_event()
    u = ClientConnection(max_head_bytes=2048)
    u.request(b"GET", b"/", [])
    with pytest.raises(ProtocolError):
        for _ in range(100):
            u.receive_data(b"HTTP/1.1 200 OK\r\nX: " if _ == 0 else b"v" * 100)
            drain(u)


# --------------------------------------------------------------------------- properties

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!#$%&'*+^`|~",
                min_size=1, max_size=12).map(str.encode)
value = st.binary(max_size=30).map(
    lambda b: bytes(c for c in b if c in range(0x21, 0x7f) or c >= 0x80 or c in (0x20, 0x09)).strip(b" \t"))
path = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/-._~%?=&", max_size=30).map(lambda s: ("/" + s).encode())
header_lists = st.lists(st.tuples(token, value), max_size=8).map(
    lambda hs: [(k, v) for k, v in hs if k.lower() not in (b"content-length", b"transfer-encoding", b"connection",
                                                           b"upgrade", b"expect")])


@st.composite
def requests(draw):
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"]))
    target = b"http://h.example" + draw(path)
    headers = draw(header_lists)
    body = draw(st.binary(max_size=300)) if method in (b"POST", b"PUT", b"PATCH") else b""
    chunked = bool(body) and draw(st.booleans())
    wire = b"%b %b HTTP/1.1\r\n" % (method, target) + b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    if chunked:
        cuts = sorted(draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=4)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True) if body[a:b]]
        wire += b"transfer-encoding: chunked\r\n\r\n" + b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces)
        wire += b"0\r\n\r\n"
    else:
        wire += b"content-length: %d\r\n\r\n" % len(body) + body
    return method, target, headers, body, wire


@given(st.lists(requests(), min_size=1, max_size=4), st.data())
@settings(max_examples=300)
def test_pipelined_requests_survive_any_split(reqs, data):
    stream = b"".join(r[4] for r in reqs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    c = ServerConnection()
    got = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        if a == b:
            continue  # (an empty read means the peer closed)
        c.receive_data(stream[a:b])
        while True:
            ev = c.next_event()
            if ev is NEED_DATA:
                break
            assert ev is not CLOSED
            if isinstance(ev, Request):
                got.append([ev, b""])
            elif isinstance(ev, Data):
                got[-1][1] += ev.data
            elif ev is END:
                c.full_response(200, [], b"")
                c.start_next_cycle()
    assert len(got) == len(reqs)
    for (ev, body), (method, target, headers, want_body, _) in zip(got, reqs, strict=True):
        assert (ev.method, ev.target, body) == (method, target, want_body)
        assert ev.headers[:len(headers)] == headers


def h11_reading(data: bytes):
    """h11's reading of one request (head, body), or None when it refuses or needs more."""
    c = h11.Connection(h11.SERVER)
    c.receive_data(data)
    head, body = None, b""
    try:
        while True:
            ev = c.next_event()
            if isinstance(ev, h11.Request):
                head = ev
            elif isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                return head, body
            else:
                return None
    except h11.RemoteProtocolError:
        return None


def http1_reading(data: bytes):
    c = ServerConnection()
    c.receive_data(data)
    head, body = None, b""
    try:
        while True:
            ev = c.next_event()
            if isinstance(ev, Request):
                head = ev
            elif isinstance(ev, Data):
                body += ev.data
            elif ev is END:
                return head, body
            else:
                return None
    except ProtocolError:
        return None


@given(requests(), st.data())
@settings(max_examples=400)
def test_mutated_requests_never_crash_and_agree_with_h11(req, data):
    raw = bytearray(req[4])
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        i = data.draw(st.integers(0, len(raw) - 1))
        special = st.sampled_from(b"\r\n :\x00\t,;0123456789-+abcdefxzHTP/")
        if op == "flip":
            raw[i] = data.draw(st.one_of(special, st.integers(0, 255)))
        elif op == "insert":
            raw.insert(i, data.draw(st.one_of(special, st.integers(0, 255))))
        elif len(raw) > 1:
            del raw[i]
    mine = http1_reading(bytes(raw))  # never raises anything but ProtocolError (caught inside)
    theirs = h11_reading(bytes(raw))
    if mine is not None and theirs is not None:
        # where both parsers accept the same bytes they must agree on what the message is
        head, body = mine
        assert (head.method, head.target, body) == (theirs[0].method, theirs[0].target, theirs[1])
        assert [(k.lower(), v) for k, v in head.headers] == list(theirs[0].headers)


@given(st.binary(max_size=400))
@settings(max_examples=300)
def test_random_bytes_only_raise_protocol_errors(raw):
    for cls in (ServerConnection, ClientConnection):
        c = cls()
        if cls is ClientConnection:
            c.request(b"GET", b"/", [])
        c.receive_data(raw)
        c.receive_data(b"")
        try:
            for _ in range(1000):
                if c.next_event() in (NEED_DATA, CLOSED):
                    break
        except ProtocolError:
            pass


@given(st.integers(200, 599), header_lists, st.binary(max_size=300), st.booleans(), st.data())
@settings(max_examples=300)
def test_responses_read_back_the_same_by_h11(status, headers, body, with_length, data):
    c = server_for(b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n")
    if status in (204, 304):
        body = b""
    hs = [*headers, (b"content-length", b"%d" % len(body))] if with_length else headers
    out = c.response(status, hs)
    if body:
        cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=4)))
        for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True):
            out += c.data(body[a:b])
    out += c.end()
    got_status, got_headers, got_body = parse_with_h11(out)
    assert (got_status, got_body) == (status, body)
    assert [(k.lower(), v) for k, v in headers] == [(k, v) for k, v in got_headers
                                                     if k not in (b"content-length", b"transfer-encoding")]


@given(st.lists(st.tuples(st.one_of(token, st.binary(max_size=8)),
                          st.one_of(value, st.binary(max_size=20), st.sampled_from(
                              [b"v\r\nInjected: 1", b"v\nX: y", b"v\rX: y", b"a\x00", b"\r\n\r\nGET / HTTP/1.1"]))),
                max_size=6))
@settings(max_examples=400)
def test_written_headers_cannot_add_lines(headers):
    """Whatever names and values are asked for, the head either is refused or reads back as exactly
    those fields: no value can smuggle a line (or a second message) of its own."""
    try:
        out = ClientConnection().request(b"GET", b"/", headers)
    except LocalProtocolError:
        return
    c = ServerConnection()
    c.receive_data(out.replace(b"GET / ", b"GET http://a/ ", 1))
    req = c.next_event()
    assert isinstance(req, Request) and c.next_event() is END and c.next_event() is NEED_DATA
    assert [(k, v.strip(b" \t")) for k, v in headers] == req.headers


# --------------------------------------------------------------------------- through a running proxy


def test_pipelined_requests_through_the_proxy(harness):
    up = harness.upstream()
    p = harness.proxy()
    req = f"GET http://127.0.0.1:{up.port}/a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    post = (f"POST http://127.0.0.1:{up.port}/b HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: text/plain\r\n"
            f"transfer-encoding: chunked\r\n\r\n4\r\nping\r\n0\r\n\r\n").encode()
    out = raw_request(p.port, req + post + req)
    assert out.count(b"HTTP/1.1 200 ") == 3
    assert [s.target for s in up.requests] == ["/a", "/b", "/a"] and up.requests[1].body == b"ping"


def test_head_http10_and_chunked_upstream_through_the_proxy(harness):
    async def chunks(seen):
        async def gen():
            yield b"one "
            yield b"two"
        return 200, [("content-type", "application/octet-stream")], gen()

    up = harness.upstream({"/chunked": chunks, "/text": route(200, "text/plain", "plain text body")})
    p = harness.proxy()
    head = raw_request(p.port, f"HEAD http://127.0.0.1:{up.port}/text HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n") and b"plain text body" not in head
    old = raw_request(p.port, f"GET http://127.0.0.1:{up.port}/chunked HTTP/1.0\r\nHost: a\r\n\r\n".encode())
    assert b"transfer-encoding" not in old.lower() and old.endswith(b"\r\n\r\none two")
    new = raw_request(p.port, f"GET http://127.0.0.1:{up.port}/chunked HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    assert b"transfer-encoding: chunked" in new.lower() and new.endswith(b"\r\n0\r\n\r\n")


def test_expect_100_continue_through_the_proxy(harness):
    up = harness.upstream()
    p = harness.proxy()
    with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s:
        s.sendall(f"POST http://127.0.0.1:{up.port}/e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                  f"Expect: 100-continue\r\n\r\n".encode())
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
    assert up.requests[-1].body == b"hello"


@given(st.binary(min_size=1, max_size=200))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_garbage_after_a_good_request_closes_cleanly(harness, junk):
    up = harness.upstream()
    p = harness.proxy()
    req = f"GET http://127.0.0.1:{up.port}/a HTTP/1.1\r\nHost: a\r\n\r\n".encode()
    out = raw_request(p.port, req + junk)
    assert out.startswith(b"HTTP/1.1 200")
    rest = out.split(b"hello from upstream", 1)[1]
    assert rest == b"" or rest.startswith(b"HTTP/1.1 ")
    harness.close()


def test_module_has_no_io():
    from pathlib import Path

    text = Path(http1.__file__).read_text(encoding="utf-8")
    assert "import asyncio" not in text and "import socket" not in text
