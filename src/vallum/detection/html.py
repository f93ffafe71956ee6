"""Hidden text in HTML: what a human sees, what only a machine reads, and injections in either.

Web pages aimed at AI agents hide instructions where a person will not see them: comments,
``display:none`` blocks, zero-size or off-screen text, white-on-white text, ``<template>`` /
``<noscript>`` content and long attribute values. `html_segments` splits a page into the visible
text and each hidden piece, labelled by how it is hidden; `html_to_text` gives the readable text
(what the egress fetch endpoint returns to an agent); `scan_html` runs the injection rules over
every piece and flags hidden text that gives orders to an AI reader.

Pure and bounded: the stdlib `html.parser` (tolerant of malformed markup), at most
`MAX_HTML_CHARS` of input, `MAX_DEPTH` open elements, `MAX_SEGMENTS` hidden pieces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import TYPE_CHECKING

from vallum.detection.model import Action, Finding
from vallum.detection.normalize import normalize_for_matching

if TYPE_CHECKING:
    from vallum.detection.pipeline import Inspector

__all__ = ["HIDDEN_LABELS", "addresses_ai", "html_segments", "html_to_text", "scan_html"]

#: input beyond this many characters is not parsed (the rest of the engine still sees the raw text)
MAX_HTML_CHARS = 2_000_000
#: open elements tracked; deeper nesting is treated as part of the deepest tracked element
MAX_DEPTH = 512
#: hidden segments reported per document
MAX_SEGMENTS = 2_000
#: characters kept per hidden segment
MAX_SEGMENT_CHARS = 100_000
#: an attribute value is reported when it is at least this long (short labels are ordinary)
MIN_ATTRIBUTE_CHARS = 40

HIDDEN_LABELS = (
    "hidden.comment",
    "hidden.display_none",
    "hidden.visibility_hidden",
    "hidden.zero_size",
    "hidden.offscreen",
    "hidden.same_colour",
    "hidden.aria_hidden",
    "hidden.noscript",
    "hidden.template",
    "hidden.attribute",
)

_VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "keygen",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
        "basefont",
        "frame",
    ]
)
_BLOCK = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "br",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "html",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
        "title",
        "option",
        "caption",
        "legend",
    ]
)
#: spaces inside <pre>/<textarea> are kept as this private-use character until the text is assembled
_PRE_SPACE = "\ue000"
_SIBLING_CLOSERS = frozenset({"li", "option", "tr", "td", "th", "dt", "dd"})
_DROPPED = frozenset({"script", "style", "head"})  # never readable text (head: except <title>)
_TEXT_ATTRS = frozenset({"alt", "title", "aria-label", "aria-description", "placeholder", "summary"})
_SR_ONLY_CLASSES = frozenset(
    {"sr-only", "visually-hidden", "visuallyhidden", "screen-reader-text", "screenreader-only", "a11y-hidden"}
)


# --------------------------------------------------------------------- colours and styles
_NAMED = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
    "silver": (192, 192, 192),
    "whitesmoke": (245, 245, 245),
    "snow": (255, 250, 250),
    "ivory": (255, 255, 240),
    "ghostwhite": (248, 248, 255),
    "floralwhite": (255, 250, 240),
    "navy": (0, 0, 128),
    "orange": (255, 165, 0),
    "purple": (128, 0, 128),
    "lightgray": (211, 211, 211),
    "lightgrey": (211, 211, 211),
    "darkgray": (169, 169, 169),
    "beige": (245, 245, 220),
}
_HEX = re.compile(r"#([0-9a-f]{3,8})\b")
_RGB = re.compile(r"rgba?\(\s*([\d.]+)%?\s*[, ]\s*([\d.]+)%?\s*[, ]\s*([\d.]+)%?\s*(?:[,/]\s*([\d.]+)(%?))?\s*\)")
_LENGTH = re.compile(r"^(-?[\d.]+)\s*(px|pt|em|rem|%|vw|vh|cm|mm|in|ex|ch)?$")
_WHITE = (255, 255, 255)


def _colour(value: str) -> tuple[int, int, int] | None:
    """An RGB triple for a CSS colour value, or None (unknown, or fully transparent → see caller)."""
    v = value.strip().lower()
    if v in _NAMED:
        return _NAMED[v]
    m = _HEX.search(v)
    if m:
        h = m.group(1)
        if len(h) in (3, 4):
            return (int(h[0] * 2, 16), int(h[1] * 2, 16), int(h[2] * 2, 16))
        if len(h) in (6, 8):
            return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
        return None
    m = _RGB.search(v)
    if m:
        try:
            parts = [min(255, int(float(m.group(i)))) for i in (1, 2, 3)]
        except ValueError:
            return None
        return (parts[0], parts[1], parts[2])
    return None


def _transparent(value: str) -> bool:
    v = value.strip().lower()
    if v == "transparent":
        return True
    m = _RGB.search(v)
    if m and m.group(4) is not None:
        try:
            alpha = float(m.group(4)) / (100 if m.group(5) else 1)
        except ValueError:
            return False
        return alpha <= 0.05
    m = _HEX.search(v)
    return bool(m and len(m.group(1)) in (4, 8) and m.group(1)[-1 if len(m.group(1)) == 4 else -2 :] in ("0", "00"))


def _same_colour(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) <= 24


def _length_px(value: str) -> float | None:
    """A CSS length as approximate pixels (em/rem = 16 px); None when not a plain length."""
    v = value.strip().lower().split()[0] if value.strip() else ""
    m = _LENGTH.match(v)
    if not m:
        return None
    try:
        n = float(m.group(1))
    except ValueError:
        return None
    unit = m.group(2) or "px"
    scale = {
        "px": 1.0,
        "pt": 1.33,
        "em": 16.0,
        "rem": 16.0,
        "ex": 8.0,
        "ch": 8.0,
        "cm": 37.8,
        "mm": 3.78,
        "in": 96.0,
        "%": 1.0,
        "vw": 10.0,
        "vh": 10.0,
    }[unit]
    return n * scale


def parse_style(style: str) -> dict[str, str]:
    """Inline CSS declarations as a dict (lower-case property → value without ``!important``)."""
    out: dict[str, str] = {}
    for decl in style.split(";")[:200]:
        if ":" not in decl:
            continue
        prop, _, value = decl.partition(":")
        prop = prop.strip().lower()
        value = value.replace("!important", "").strip().lower()
        if prop and value:
            out[prop] = value
    return out


def _style_hiding(style: dict[str, str], inherited_bg: tuple[int, int, int] | None) -> str | None:
    """The hidden label an inline style implies, or None when it leaves text visible."""
    if style.get("display", "").startswith("none"):
        return "hidden.display_none"
    if style.get("visibility", "") in ("hidden", "collapse"):
        return "hidden.visibility_hidden"
    fs = style.get("font-size")
    if fs is not None:
        px = _length_px(fs)
        if px is not None and px < 2:
            return "hidden.zero_size"
    op = style.get("opacity")
    if op is not None:
        try:
            o = float(op.rstrip("%")) / (100 if op.endswith("%") else 1)
            if o <= 0.05:
                return "hidden.zero_size"
        except ValueError:
            pass
    if "scale(0" in style.get("transform", "").replace(" ", ""):
        return "hidden.zero_size"
    w = _length_px(style.get("width", style.get("max-width", "x")))
    h = _length_px(style.get("height", style.get("max-height", "x")))
    clipped = style.get("overflow", "") in ("hidden", "clip") or "overflow-x" in style or "overflow-y" in style
    if (w is not None and w <= 1 and h is not None and h <= 1) or (
        clipped and ((w is not None and w <= 1) or (h is not None and h <= 1))
    ):
        return "hidden.zero_size"
    if style.get("position", "") in ("absolute", "fixed"):
        for side in ("left", "top", "right", "bottom"):
            px = _length_px(style.get(side, "x"))
            if px is not None and px <= -500:
                return "hidden.offscreen"
        clip = style.get("clip", "").replace(" ", "")
        if clip.startswith("rect(") and all(
            (_length_px(p) or 0) <= 1 for p in clip[5:].rstrip(")").replace(",", " ").split() if p != "auto"
        ):
            return "hidden.offscreen"
    ti = _length_px(style.get("text-indent", "x"))
    if ti is not None and ti <= -500:
        return "hidden.offscreen"
    for margin in ("margin-left", "margin-top"):
        px = _length_px(style.get(margin, "x"))
        if px is not None and px <= -2000:
            return "hidden.offscreen"
    cp = style.get("clip-path", "").replace(" ", "")
    if cp.startswith(("inset(50%", "inset(100%", "circle(0", "polygon(0000")):
        return "hidden.offscreen"
    colour = style.get("color")
    if colour is not None:
        if _transparent(colour):
            return "hidden.same_colour"
        fg = _colour(colour)
        bg_value = style.get("background-color") or style.get("background")
        bg = _colour(bg_value) if bg_value else inherited_bg
        if fg is not None and _same_colour(fg, bg if bg is not None else _WHITE):
            return "hidden.same_colour"
    return None


# --------------------------------------------------------------------- the parser
@dataclass(slots=True)
class _Frame:
    tag: str
    hidden: str | None = None  # label, set on the element that starts a hidden region
    bg: tuple[int, int, int] | None = None
    parts: list[str] = field(default_factory=list)  # text of a hidden region (on its root frame)
    pre: bool = False


class _SegmentParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[_Frame] = []
        self.visible: list[str] = []
        self.segments: list[tuple[str, str]] = []
        self.dropped = 0  # depth inside script/style/head
        self.overflow = 0  # start tags beyond MAX_DEPTH not pushed
        self.hidden_root: _Frame | None = None  # the outermost open hidden element

    # -- helpers
    def _hidden_root(self) -> _Frame | None:
        return self.hidden_root

    def _emit(self, label: str, text: str) -> None:
        text = " ".join(text.split())
        if text and len(self.segments) < MAX_SEGMENTS:
            self.segments.append((label, text[:MAX_SEGMENT_CHARS]))

    def _newline(self) -> None:
        if self._hidden_root() is None and not self.dropped:
            self.visible.append("\n")

    def _close_frame(self, fr: _Frame) -> None:
        if fr is self.hidden_root:
            self.hidden_root = None
        if fr.tag in _DROPPED:
            self.dropped = max(0, self.dropped - 1)
        if fr.hidden is not None:
            self._emit(fr.hidden, "".join(fr.parts))
        elif fr.tag in _BLOCK:
            self._newline()

    # -- HTMLParser callbacks
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        tag = tag.lower()
        a = {k.lower(): (v or "") for k, v in attrs[:100]}
        self._attribute_segments(tag, a)
        if tag in _VOID:
            if tag == "br" or tag == "hr":
                self._newline()
            return
        # implied end tags: a block closes an open <p>; a list item closes its open sibling
        if self.stack and (
            (self.stack[-1].tag == "p" and tag in _BLOCK) or (tag in _SIBLING_CLOSERS and self.stack[-1].tag == tag)
        ):
            self._close_frame(self.stack.pop())
        if len(self.stack) >= MAX_DEPTH:
            self.overflow += 1
            return
        parent_bg = self.stack[-1].bg if self.stack else None
        fr = _Frame(tag=tag, bg=parent_bg, pre=tag in ("pre", "textarea") or bool(self.stack and self.stack[-1].pre))
        style = parse_style(a["style"]) if "style" in a else {}
        bg_value = style.get("background-color") or style.get("background")
        if bg_value:
            fr.bg = _colour(bg_value) or fr.bg
        if self.hidden_root is None:
            fr.hidden = self._hiding(tag, a, style, parent_bg)
            if fr.hidden is not None:
                self.hidden_root = fr
        if tag in _DROPPED:
            self.dropped += 1
        elif tag in _BLOCK:
            self._newline()
        self.stack.append(fr)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        tag = tag.lower()
        a = {k.lower(): (v or "") for k, v in attrs[:100]}
        self._attribute_segments(tag, a)
        if tag in ("br", "hr", "p", "div"):
            self._newline()

    def handle_endtag(self, tag: str) -> None:
        tag = tag.lower()
        if tag in _VOID:
            if tag in ("br", "p"):
                self._newline()
            return
        for i in range(len(self.stack) - 1, max(-1, len(self.stack) - 64), -1):
            if self.stack[i].tag == tag:
                while len(self.stack) > i:
                    self._close_frame(self.stack.pop())
                return
        if self.overflow:
            self.overflow -= 1
        elif tag == "p":
            self._newline()

    def handle_data(self, data: str) -> None:
        if self.dropped and not (self.stack and self.stack[-1].tag == "title"):
            return
        root = self._hidden_root()
        if root is not None:
            if sum(map(len, root.parts)) < MAX_SEGMENT_CHARS:
                root.parts.append(data)
            return
        if self.stack and self.stack[-1].pre:
            self.visible.append(data.replace(" ", _PRE_SPACE).replace("\t", _PRE_SPACE * 4))
        else:
            self.visible.append(re.sub(r"\s+", " ", data))

    def handle_comment(self, data: str) -> None:
        body = data.strip()
        # conditional comments (<!--[if IE]>…<![endif]-->) hold markup for old browsers, not text
        if body.lower().startswith(("[if", "<![endif", "[endif")):
            return
        self._emit("hidden.comment", body)

    def unknown_decl(self, data: str) -> None:  # <![CDATA[…]]> and other odd declarations
        return

    # -- classification
    def _hiding(
        self, tag: str, a: dict[str, str], style: dict[str, str], parent_bg: tuple[int, int, int] | None
    ) -> str | None:
        if tag == "template":
            return "hidden.template"
        if tag == "noscript":
            return "hidden.noscript"
        if "hidden" in a and tag != "input":
            return "hidden.display_none"
        if a.get("aria-hidden", "").strip().lower() == "true":
            return "hidden.aria_hidden"
        if a.get("type", "").lower() == "hidden":
            return "hidden.display_none"
        label = _style_hiding(style, parent_bg) if style else None
        if label is None and "class" in a and _SR_ONLY_CLASSES.intersection(a["class"].lower().split()):
            label = "hidden.offscreen"
        return label

    def _attribute_segments(self, tag: str, a: dict[str, str]) -> None:
        values: list[str] = []
        for k, v in a.items():
            if k in _TEXT_ATTRS or k.startswith("data-"):
                values.append(v)
        if tag == "meta" and "content" in a:
            values.append(a["content"])
        if tag == "input" and a.get("type", "").lower() == "hidden" and "value" in a:
            values.append(a["value"])
        for v in values:
            v = v.strip()
            if len(v) >= MIN_ATTRIBUTE_CHARS or len(v.split()) >= 6:
                self._emit("hidden.attribute", v)

    def finish(self) -> None:
        self.close()
        while self.stack:
            self._close_frame(self.stack.pop())


def _defuse(html: str) -> tuple[str, str]:
    """Cut what html.parser would rescan over and over (quadratic time): an unterminated comment
    becomes the returned tail (browsers also treat it as a comment to the end of the document), and
    every ``<`` after the last ``>`` becomes text."""
    tail = ""
    last_close = html.rfind("-->")
    start = html.find("<!--", last_close + 3 if last_close >= 0 else 0)
    if start != -1:
        html, tail = html[:start], html[start + 4 :]
    gt = html.rfind(">")
    if html.find("<", gt + 1) != -1:
        html = html[: gt + 1] + html[gt + 1 :].replace("<", "&lt;")
    return html, tail


def _parse(html: str) -> _SegmentParser:
    p = _SegmentParser()
    html, comment_tail = _defuse(html[:MAX_HTML_CHARS])
    try:
        p.feed(html)
        p.finish()
        if comment_tail:
            p.handle_comment(comment_tail)
    except (AssertionError, ValueError, IndexError):
        # html.parser can raise on pathological declarations; keep what was parsed so far
        while p.stack:
            p._close_frame(p.stack.pop())
    return p


def _readable(parts: list[str]) -> str:
    lines = [" ".join(line.split()).replace(_PRE_SPACE, " ") for line in "".join(parts).split("\n")]
    out: list[str] = []
    blank = False
    for line in lines:
        if line:
            out.append(line)
            blank = False
        elif out and not blank:
            out.append("")
            blank = True
    return "\n".join(out).strip()


def html_segments(html: str) -> list[tuple[str, str]]:
    """The page's text as ``("visible", text)`` followed by each hidden piece as ``(label, text)``.

    Labels are those of `HIDDEN_LABELS`. Never raises on malformed markup; bounded by
    `MAX_HTML_CHARS`, `MAX_DEPTH` and `MAX_SEGMENTS`.
    """
    p = _parse(html)
    visible = _readable(p.visible)
    out: list[tuple[str, str]] = [("visible", visible)] if visible else []
    out.extend(p.segments)
    return out


def html_to_text(html: str) -> str:
    """Readable text of a page: what a person sees (scripts, styles, hidden elements and comments
    dropped; block elements become line breaks)."""
    return _readable(_parse(html).visible)


# --------------------------------------------------------------------- AI-addressed hidden text
_AI = (
    r"(?:ai|a\.i\.|llm|llms|large language models?|language models?|ai assistants?|ai agents?|ai models?"
    r"|assistants?|chatbots?|gpts?|chatgpt|claude|gemini|copilot|bard|bing|agents?|models?|bots?|crawlers?"
    r"|summari[sz]ers?|automated (?:agents?|systems?|assistants?|readers?))"
)
_ADDRESS = re.compile(
    r"(?:(?<![a-z])(?:dear|hey|hi|hello|attention|note to|note for|message to|message for|instructions? (?:to|for)"
    r"|reminder (?:to|for)|memo (?:to|for))\s+(?:the\s+|any\s+|all\s+|every\s+)?" + _AI + r"(?![a-z])"
    r"|(?:^|[.!?:;\n>\]\)]\s*)" + _AI + r"\s*[,:]"
    r"|if\s+you\s+(?:are|'re)\s+(?:an?\s+)?" + _AI + r"(?![a-z])"
    r"|(?<![a-z])" + _AI + r"\s+(?:reading|processing|summari[sz]ing|parsing|crawling|scraping|reviewing|evaluating"
    r"|analy[sz]ing|viewing|browsing|indexing)\s+(?:this|the)"
    r"|(?<![a-z])as\s+an?\s+(?:ai|language model|llm|assistant)(?![a-z])"
    r"|(?<![a-z])you\s+(?:are|'re)\s+(?:an?\s+)?(?:ai|assistant|language model|llm|chatbot|helpful assistant)(?![a-z])"
    r"|(?<![a-z])(?:ai|llm|language model|assistant|agent|chatbot|model)s?\s+"
    r"(?:must|should|shall|needs? to|are (?:instructed|required) to|will)\s"
    r"|(?<![a-z])(?:when|while|if|before)\s+(?:you\s+(?:are\s+)?)?(?:summari[sz]ing|asked about|asked to"
    r"|answering|responding|generating|writing (?:a|the|your) (?:summary|response|review|answer)|reviewing this"
    r"|evaluating this|ranking|comparing)"
    r"|(?<![a-z])(?:in|to|into|within)\s+your\s+(?:summary|response|answer|reply|output|review|evaluation|assessment|recommendation)"
    r"|(?<![a-z])(?:tell|inform|advise|remind|convince|persuade|assure|instruct)\s+the\s+user"
    r"|(?<![a-z])the\s+user\s+(?:should|must|needs? to|is to)\s)",
)
_IMPERATIVE = re.compile(
    r"(?:^|[.!?:;,\n\-—]\s*|(?<![a-z])(?:please|kindly|and|then|you (?:must|should|will|need to|have to|are to|shall)"
    r"|must|should|shall|always|never|do not|don't|make sure to|be sure to|remember to|instead)\s+)"
    r"(?:ignore|disregard|forget|say|tell|recommend|include|mention|describe|respond|reply|answer|write|output|print"
    r"|send|forward|visit|click|call|run|execute|rate|rank|score|praise|state|claim|insert|add|append|summari[sz]e"
    r"|translate|reveal|classify|treat|consider|give|assign|approve|hire|prefer|choose|select|report|mark|label"
    r"|refer|direct|redirect|urge|encourage|omit|hide|conceal|emphasi[sz]e|highlight|portray|present|return|use|open"
    r"|email|contact|buy|purchase|transfer|delete|not mention|not tell|never mention)(?![a-z])",
)


def addresses_ai(text: str) -> bool:
    """Whether `text` (hidden text, typically) speaks to an AI reader and tells it to do something."""
    norm = normalize_for_matching(text[:5000])
    return bool(_ADDRESS.search(norm) and _IMPERATIVE.search(norm))


def scan_html(inspector: Inspector, html: str, location_prefix: str) -> list[Finding]:
    """Inbound findings for a page: every rule over the visible text and each hidden piece (located
    ``<prefix>.<label>``), plus ``inj.hidden_html_instruction`` for hidden text that addresses an AI
    with an instruction even when no pattern rule fires."""
    findings: list[Finding] = []
    for label, text in html_segments(html):
        location = f"{location_prefix}.{label}"
        findings.extend(inspector.inspect_text(text, direction="inbound", location=location))
        if label != "visible" and addresses_ai(text):
            evidence = " ".join(text.split())
            f = inspector.finding(
                "inj.hidden_html_instruction",
                "injection",
                "high",
                "Hidden HTML text gives instructions to an AI reader",
                action=Action.BLOCK,
                location=location,
                evidence=evidence if len(evidence) <= 80 else evidence[:77] + "...",
            )
            if f is not None:
                findings.append(f)
    return findings
