"""HTTP messages as inspection inputs: the kinds ``http_request`` and ``http_response``.

Pure functions the egress proxy reuses on live traffic and `vallum scan` uses on saved messages:

- `decompress_body` undoes ``Content-Encoding`` (gzip, deflate as zlib or raw, br, chains such as
  ``gzip, br``) with a hard output limit.
- `request_findings` — outbound: URL policy, credentials in headers, and the body read by its
  content type (JSON string values with their paths, form fields, multipart parts, raw text).
- `response_findings` — inbound: injection in the body (HTML with its hidden text, JSON string
  values, text).

A body that cannot be read (over the limit once decompressed, an unknown or corrupt encoding,
binary, malformed multipart) yields a fail-closed ``http.body_not_inspectable`` block finding.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator, Mapping
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

import brotli

from vallum.detection.model import Action, Finding
from vallum.detection.pipeline import Inspector, ScanInputError, dedupe

#: default cap on a body once decompressed
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
#: most JSON string values / form fields / parts inspected one by one
MAX_FIELDS = 5000

Headers = Mapping[str, str] | list[tuple[str, str]]


class BodyNotInspectable(Exception):
    """The body cannot be inspected; the message says why."""


# --------------------------------------------------------------------- decompression
def decompress_body(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """`body` with its ``Content-Encoding`` undone, at most `limit` bytes.

    Encodings are applied in the listed order, so they are undone from the last to the first.
    Raises `BodyNotInspectable` for an unknown encoding, corrupt data, or output over `limit`.
    """
    if not content_encoding:
        if len(body) > limit:
            raise BodyNotInspectable(f"body of {len(body)} bytes exceeds the {limit}-byte limit")
        return body
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    data = body
    for coding in reversed(codings):
        if coding in ("identity", ""):
            continue
        if coding in ("gzip", "x-gzip"):
            data = _inflate(data, 16 + zlib.MAX_WBITS, limit, coding)
        elif coding == "deflate":
            try:
                data = _inflate(data, zlib.MAX_WBITS, limit, coding)
            except BodyNotInspectable as exc:
                if "exceeds" in str(exc):
                    raise
                data = _inflate(data, -zlib.MAX_WBITS, limit, coding)  # raw deflate, as some servers send
        elif coding == "br":
            data = _unbrotli(data, limit)
        else:
            raise BodyNotInspectable(f"unknown content encoding {coding!r}")
    if len(data) > limit:
        raise BodyNotInspectable(f"body of {len(data)} bytes exceeds the {limit}-byte limit")
    return data


def _inflate(data: bytes, wbits: int, limit: int, name: str) -> bytes:
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise BodyNotInspectable(f"corrupt {name} body ({exc})") from None
    if len(out) > limit or d.unconsumed_tail:
        raise BodyNotInspectable(f"{name} body exceeds the {limit}-byte limit once decompressed")
    if not d.eof:
        raise BodyNotInspectable(f"truncated {name} body")
    return out


def _unbrotli(data: bytes, limit: int) -> bytes:
    d = brotli.Decompressor()
    out = bytearray()
    try:
        # feed in slices so a bomb is stopped after at most one slice's expansion past the limit
        for i in range(0, max(len(data), 1), 4096):
            out += d.process(data[i:i + 4096])
            if len(out) > limit:
                raise BodyNotInspectable(f"br body exceeds the {limit}-byte limit once decompressed")
        finished = d.is_finished()
    except brotli.error as exc:
        raise BodyNotInspectable(f"corrupt br body ({exc})") from None
    if not finished:
        raise BodyNotInspectable("truncated br body")
    return bytes(out)


# --------------------------------------------------------------------- helpers
def _header_list(headers: Headers | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    out = []
    for k, v in items:
        if not isinstance(k, str) or not isinstance(v, str):
            raise ScanInputError("header names and values must be strings")
        out.append((k, v))
    return out


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _not_inspectable(inspector: Inspector, reason: str, location: str = "body") -> list[Finding]:
    f = inspector.finding("http.body_not_inspectable", "protocol", "high",
                          f"body not inspected: {reason}; blocked (fail closed)",
                          action=Action.BLOCK, location=location)
    return [f] if f is not None else []


def _body_text(body: bytes | str | None, content_encoding: str | None,
               max_body_bytes: int | None, content_type: str | None) -> str | bytes:
    """The body as text (or raw bytes for multipart), or raise BodyNotInspectable."""
    limit = max_body_bytes or DEFAULT_MAX_BODY_BYTES
    if body is None:
        return ""
    mime, params = _parse_content_type(content_type)
    if isinstance(body, str):
        encoded = content_encoding and content_encoding.strip().lower() not in ("identity", "")
        if not encoded and not mime.startswith("multipart/"):
            if len(body) > limit:
                raise BodyNotInspectable(f"body of {len(body)} characters exceeds the {limit}-character limit")
            return body
        try:
            # a compressed body carried in a JSON string is read as one character per byte
            body = body.encode("latin-1") if encoded else body.encode("utf-8")
        except UnicodeEncodeError:
            raise BodyNotInspectable("a compressed body given as text must hold only bytes 0-255") from None
    if not isinstance(body, bytes | bytearray):
        raise ScanInputError(f"body must be a string or bytes, not {type(body).__name__}")
    raw = decompress_body(bytes(body), content_encoding, limit)
    if mime.startswith("multipart/"):
        return raw
    charset = params.get("charset", "utf-8")
    try:
        text = raw.decode(charset)
    except (LookupError, UnicodeDecodeError):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BodyNotInspectable(f"body is not text in {charset!r} (binary or wrong charset)") from None
    if "\x00" in text:
        raise BodyNotInspectable("body is binary (holds NUL bytes)")
    return text


def _parse_content_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    if not content_type:
        return "", {}
    parts = content_type.split(";")
    params = {}
    for p in parts[1:]:
        if "=" in p:
            k, v = p.split("=", 1)
            params[k.strip().lower()] = v.strip().strip('"')
    return parts[0].strip().lower(), params


def json_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a JSON value with its path (``messages[0].content``); keys included
    as ``<path>.<key>#key`` when they are long enough to hold a secret."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        v, p = stack.pop()
        if isinstance(v, str):
            yield p, v
        elif isinstance(v, dict):
            items = list(v.items())
            for k, child in reversed(items):
                key = str(k)
                cp = f"{p}.{key}" if p else key
                if len(key) >= 16:
                    yield f"{cp}#key", key
                stack.append((child, cp))
        elif isinstance(v, list):
            for i in range(len(v) - 1, -1, -1):
                stack.append((v[i], f"{p}[{i}]"))


def _body_fields(text: str | bytes, mime: str, content_type: str | None) -> tuple[list[tuple[str, str]], str | None]:
    """(location, value) pairs of a body, and an error reason when it cannot be parsed."""
    if isinstance(text, bytes):  # multipart
        return _multipart_fields(text, content_type)
    if not text:
        return [], None
    if mime == "application/json" or mime.endswith("+json") or (not mime and text.lstrip()[:1] in "{["):
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            return [("body", text)], None  # not JSON after all: still scanned, as text
        fields = [(f"body.json.{p}" if p else "body.json", s) for p, s in json_strings(doc)]
        return fields[:MAX_FIELDS], None
    if mime == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
        except ValueError as exc:
            return [("body", text)], f"malformed form body ({exc})"
        fields = []
        for k, v in pairs:
            fields.append((f"body.form.{k}", v))
        return fields, None
    if mime == "application/x-ndjson" or mime == "application/jsonl":
        fields = []
        for n, line in enumerate(text.splitlines()):
            try:
                doc = json.loads(line)
            except ValueError:
                fields.append((f"body.line[{n}]", line))
                continue
            fields.extend((f"body.json[{n}].{p}" if p else f"body.json[{n}]", s) for p, s in json_strings(doc))
        return fields[:MAX_FIELDS], None
    return [("body", text)], None


def _multipart_fields(raw: bytes, content_type: str | None) -> tuple[list[tuple[str, str]], str | None]:
    _, params = _parse_content_type(content_type)
    if not params.get("boundary"):
        return [], "multipart body without a boundary"
    boundary = params["boundary"].encode("latin-1", "replace")
    if b"--" + boundary not in raw:
        return [], "multipart body does not contain its boundary"
    msg = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + (content_type or "").encode("latin-1", "replace") + b"\r\n\r\n" + raw
    )
    if not msg.is_multipart() or msg.defects:
        return [], "malformed multipart body"
    fields: list[tuple[str, str]] = []
    for n, part in enumerate(msg.iter_parts()):
        if part.defects:
            return [], "malformed multipart part"
        name = part.get_param("name", header="content-disposition") or f"part{n}"
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        charset = part.get_content_charset() or "utf-8"
        try:
            value = payload.decode(charset)
        except (LookupError, UnicodeDecodeError):
            if filename is not None and b"\x00" in payload:
                value = payload.decode("latin-1")  # a binary upload: look for printable secrets in it
            else:
                return [], f"multipart part {name!r} is not text in {charset!r}"
        loc = f"body.multipart.{name}"
        fields.append((loc, value.replace("\x00", " ")))
        if filename and len(filename) >= 16:
            fields.append((f"{loc}#filename", filename))
        if len(fields) >= MAX_FIELDS:
            break
    return fields, None


# --------------------------------------------------------------------- kinds
_SKIP_HEADERS = frozenset({
    "host", "content-length", "content-type", "content-encoding", "accept", "accept-encoding",
    "accept-language", "connection", "user-agent", "transfer-encoding", "date", "cache-control",
    "pragma", "origin", "referer", "te", "upgrade", "sec-fetch-mode", "sec-fetch-site", "sec-fetch-dest",
})


def request_findings(inspector: Inspector, method: str, url: str, headers: Headers | None,
                     body: bytes | str | None, *, content_type: str | None = None,
                     content_encoding: str | None = None, max_body_bytes: int | None = None) -> list[Finding]:
    """Findings for one outbound HTTP request: URL policy, headers, body (by content type)."""
    from vallum.detection.urlpolicy import check_url

    hdrs = _header_list(headers)
    findings: list[Finding] = list(check_url(inspector, url, method))
    header_fields: list[tuple[str, str]] = []
    for k, v in hdrs:
        name = k.lower()
        if name in _SKIP_HEADERS and name not in ("referer", "origin"):
            continue
        value = v
        if name == "authorization" and " " in v.strip():
            value = v.strip().split(" ", 1)[1]  # the credential itself, after "Bearer"/"Basic"
            scheme = v.strip().split(" ", 1)[0].lower()
            if scheme == "basic":
                value = v.strip()  # the decoder reads the base64 user:password
        header_fields.append((f"headers.{name}", value))
    if header_fields:
        findings.extend(inspector.inspect_fields(header_fields, direction="outbound", join_label="headers.joined"))
        findings.extend(_named_findings(inspector, [(f"headers.{k.lower()}", k, v) for k, v in hdrs], findings))
        findings.extend(_auth_header_findings(inspector, header_fields, findings))
    ctype = content_type or _header(hdrs, "content-type")
    cenc = content_encoding if content_encoding is not None else _header(hdrs, "content-encoding")
    try:
        text = _body_text(body, cenc, max_body_bytes, ctype)
    except BodyNotInspectable as exc:
        return dedupe(findings + _not_inspectable(inspector, str(exc)))
    mime, _ = _parse_content_type(ctype)
    fields, error = _body_fields(text, mime, ctype)
    if error:
        findings.extend(_not_inspectable(inspector, error))
    if fields:
        findings.extend(inspector.inspect_fields(fields, direction="outbound", join_label="body.joined"))
        named = [(loc, loc.rsplit(".", 1)[-1], v) for loc, v in fields if not loc.endswith(("]", "#key"))]
        findings.extend(_named_findings(inspector, named, findings))
    return dedupe(findings)


_SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|auth|credential|signature|sig$|session|cookie", re.I)


def _named_findings(inspector: Inspector, fields: list[tuple[str, str, str]], already: list[Finding]
                    ) -> list[Finding]:
    """A value whose meaning is in its name: `"password": "Tr0ub4dor&3x"` or `DD-API-KEY: 3f2c…`
    says nothing by its value alone. Each secret-named (location, name, value) field that produced
    no credential yet is scanned once more as `name: value`, so the named-context rules see it."""
    flagged = {f.location for f in already if f.category in ("credential", "pii")}
    out: list[Finding] = []
    for loc, name, value in fields:
        if loc in flagged or not value or not _SECRET_NAME.search(name):
            continue
        for f in inspector.inspect_text(f"{name}: {value}", direction="outbound", location=loc):
            if f.category in ("credential", "pii"):
                out.append(f)
    return out


_AUTH_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key", "x-auth-token",
                           "x-access-token", "private-token", "x-goog-api-key", "cookie"})


def _auth_header_findings(inspector: Inspector, fields: list[tuple[str, str]], already: list[Finding]
                          ) -> list[Finding]:
    """A credential header whose value is no known format is still a credential leaving.

    Its value is unexplained — no pattern rule says what it is — so it is treated like unexplained
    high entropy in the mode table (INTERFACES §3): warn in balanced, **block in strict**, warn in
    audit, whatever the value's own entropy (the header names it a credential). A template
    placeholder (`${API_KEY}`, `xxxxxxxx`, `<token>`) is no credential: it stays a warning in every
    mode. `detection.rules."http.credential_header".action` overrides both.
    """
    from vallum.detection.urlpolicy import _PLACEHOLDER

    out = []
    for loc, value in fields:
        name = loc.split(".", 1)[1]
        if name not in _AUTH_HEADERS or name == "cookie" or len(value.strip()) < 8:
            continue
        if any(f.location == loc and f.category in ("credential", "pii") for f in already):
            continue  # a pattern rule explained it (an entropy warning alone does not)
        placeholder = bool(_PLACEHOLDER.match(value.strip()))
        f = inspector.finding("http.credential_header", "credential", "medium",
                              f"credential in the {name} header (no known format"
                              + (", a placeholder)" if placeholder else ")"), action=Action.WARN,
                              strict_action=None if placeholder else Action.BLOCK,
                              location=loc, evidence=_redact(value))
        if f is not None:
            out.append(f)
    return out


def _redact(value: str) -> str:
    from vallum.detection.model import redact

    return redact(value)


def response_findings(inspector: Inspector, url: str | None, status: int | None, headers: Headers | None,
                      body: bytes | str | None, *, content_type: str | None = None,
                      content_encoding: str | None = None, max_body_bytes: int | None = None) -> list[Finding]:
    """Findings for one inbound HTTP response: injection (and credentials) in its body."""
    hdrs = _header_list(headers)
    ctype = content_type or _header(hdrs, "content-type")
    cenc = content_encoding if content_encoding is not None else _header(hdrs, "content-encoding")
    mime, _ = _parse_content_type(ctype)
    try:
        text = _body_text(body, cenc, max_body_bytes, None if mime.startswith("multipart/") else ctype)
    except BodyNotInspectable as exc:
        return _not_inspectable(inspector, str(exc))
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not text:
        return []
    head = text.lstrip()[:512].lower()
    if mime in ("text/html", "application/xhtml+xml") or (not mime and head.startswith(("<!doctype html", "<html"))):
        from vallum.detection.html import scan_html

        return dedupe(scan_html(inspector, text, "body.html"))
    if mime == "application/json" or mime.endswith("+json") or (not mime and head[:1] in "{["):
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            return dedupe(inspector.inspect_text(text, direction="inbound", location="body"))
        findings: list[Finding] = []
        for p, s in list(json_strings(doc))[:MAX_FIELDS]:
            loc = f"body.json.{p}" if p else "body.json"
            findings.extend(inspector.inspect_text(s, direction="inbound", location=loc))
        return dedupe(findings)
    return dedupe(inspector.inspect_text(text, direction="inbound", location="body"))


def _content_dict(content: Any, kind: str, required: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(content, dict):
        raise ScanInputError(f"kind {kind} needs an object content, not {type(content).__name__}")
    for key in required:
        if key not in content:
            raise ScanInputError(f"kind {kind}: content needs {key!r}")
    allowed = {"method", "url", "headers", "body", "content_type", "content_encoding", "status"}
    unknown = set(content) - allowed
    if unknown:
        raise ScanInputError(f"kind {kind}: unknown key(s) {', '.join(sorted(unknown))}")
    headers = content.get("headers")
    if headers is not None and not isinstance(headers, dict | list):
        raise ScanInputError(f"kind {kind}: headers must be an object")
    if isinstance(headers, list) and not all(isinstance(h, list | tuple) and len(h) == 2 for h in headers):
        raise ScanInputError(f"kind {kind}: headers as a list must hold [name, value] pairs")
    if isinstance(headers, dict) and not all(isinstance(v, str) for v in headers.values()):
        raise ScanInputError(f"kind {kind}: header values must be strings")
    body = content.get("body")
    if body is not None and not isinstance(body, str):
        raise ScanInputError(f"kind {kind}: body must be a string")
    for key in ("url", "method", "content_type", "content_encoding"):
        if content.get(key) is not None and not isinstance(content[key], str):
            raise ScanInputError(f"kind {kind}: {key} must be a string")
    return content


def scan_http_request(inspector: Inspector, content: Any) -> list[Finding]:
    """Kind ``http_request``: ``{"method", "url", "headers": {…}, "body": "…", "content_type": "…"}``."""
    c = _content_dict(content, "http_request", ("url",))
    headers = c.get("headers") or {}
    if isinstance(headers, list):
        headers = [(str(k), str(v)) for k, v in headers]
    return request_findings(inspector, c.get("method") or "GET", c["url"], headers, c.get("body"),
                            content_type=c.get("content_type"), content_encoding=c.get("content_encoding"))


def scan_http_response(inspector: Inspector, content: Any) -> list[Finding]:
    """Kind ``http_response``: ``{"url", "status", "headers": {…}, "body": "…"}``."""
    c = _content_dict(content, "http_response", ())
    status = c.get("status")
    if status is not None and (not isinstance(status, int) or isinstance(status, bool)):
        raise ScanInputError("kind http_response: status must be an integer")
    headers = c.get("headers") or {}
    if isinstance(headers, list):
        headers = [(str(k), str(v)) for k, v in headers]
    return response_findings(inspector, c.get("url"), status, headers, c.get("body"),
                             content_type=c.get("content_type"), content_encoding=c.get("content_encoding"))
