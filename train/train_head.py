"""Train the semantic injection head and write src/vallum/detection/data/semantic_head.json.

    python train/build_corpus.py && python train/train_head.py [--layers N]

Embeds every text with vallum's own embedder, exactly as at run time (the encoder cut after
`--layers` layers, int8 MatMuls, overlapping token windows, mean pooling), appends the windows'
hashed word-piece features, and trains an L2-regularised, class-balanced logistic regression on
the windows with numpy (fixed seed; each text weighs 1 however many windows it has). A text's
score is its highest window score, as at run time. The corpus is split
by group (one template, one source file, one language never lands on two sides) into train (60 %),
validation (20 %) and test (20 %):

- the regularisation strength is chosen and the thresholds are calibrated on the validation
  split only (warn: 99th, block: 99.8th percentile of the benign texts' scores);
- the test split and bastioncorpus (an external set, never trained on, never used to choose
  anything) are only reported.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from vallum.detection.semantic import Embedder, lexical_features, model_files  # noqa: E402

SEED = 20261122
OUT = ROOT / "src" / "vallum" / "detection" / "data" / "semantic_head.json"
#: windows per text used for training (the first ones); scoring uses up to MAX_WINDOWS
TRAIN_WINDOWS = 8
L2_GRID = (1e-2, 3e-2, 1e-1, 3e-1, 1.0)
#: hashed word-piece (pair) features beside the embedding (0: embedding only)
LEXICAL_BUCKETS = 2048


def load(name: str) -> list[dict]:
    return [json.loads(ln) for ln in (HERE / ".cache" / name).read_text("utf-8").split("\n") if ln.strip()]


def split(rows: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """(train, validation, test) by group; the test groups are the same as bench_semantic.py's."""
    groups = sorted({r["group"] for r in rows})
    random.Random(SEED).shuffle(groups)
    fifth = len(groups) // 5
    test, val = set(groups[:fifth]), set(groups[fifth : 2 * fifth])
    return ([r for r in rows if r["group"] not in test | val], [r for r in rows if r["group"] in val],
            [r for r in rows if r["group"] in test])


def embed_windows(emb: Embedder, texts: list[str], tag: str) -> list[np.ndarray]:
    """Per text, the embeddings of its first TRAIN_WINDOWS windows (cached on disk per embedder setting)."""
    cache_path = HERE / ".cache" / f"windows-{tag}.npz"
    cache: dict[str, np.ndarray] = dict(np.load(cache_path)) if cache_path.exists() else {}
    keys = [hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest() for t in texts]
    todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in cache}.items())
    pending: list[tuple[str, int, list[int]]] = []
    for k, t in todo:
        for j, w in enumerate(emb.windows(emb.token_ids(t))[:TRAIN_WINDOWS]):
            pending.append((k, j, w))
    pending.sort(key=lambda p: len(p[2]))  # similar lengths per batch: little padding
    parts: dict[str, dict[int, np.ndarray]] = {}
    started = time.monotonic()
    for i in range(0, len(pending), 64):
        batch = pending[i : i + 64]
        vecs = emb.embed_windows([w for _, _, w in batch])
        for (k, j, _), v in zip(batch, vecs, strict=True):
            parts.setdefault(k, {})[j] = v
        if i % 6400 == 0 and i:
            print(f"embedded {i}/{len(pending)} windows ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    for k, d in parts.items():
        cache[k] = np.stack([d[j] for j in sorted(d)]).astype(np.float32)
    if todo:
        np.savez(cache_path, **cache)
    return [cache[k] for k in keys]


def with_lexical(emb: Embedder, texts: list[str], vecs: list[np.ndarray], buckets: int) -> list[np.ndarray]:
    """Each text's window embeddings with the windows' lexical features appended (the run-time features)."""
    if not buckets:
        return vecs
    out = []
    for t, v in zip(texts, vecs, strict=True):
        windows = emb.windows(emb.token_ids(t))[:TRAIN_WINDOWS]
        out.append(np.concatenate([v, lexical_features(windows, buckets)], axis=1))
    return out


def stack(vecs: list[np.ndarray], labels: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window matrix, window labels and weights (each text weighs 1 in total)."""
    x = np.concatenate(vecs).astype(np.float32)
    y = np.concatenate([np.full(len(v), lab) for v, lab in zip(vecs, labels, strict=True)])
    w = np.concatenate([np.full(len(v), 1.0 / len(v)) for v in vecs])
    return x, y, w


def train_logreg(x: np.ndarray, y: np.ndarray, weight: np.ndarray, l2: float, epochs: int = 1000,
                 lr: float = 0.5) -> tuple[np.ndarray, float]:
    """Full-batch gradient descent on standardised features; returns weights for raw features."""
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-3  # 1e-3: hashed buckets that are almost never set
    z = ((x - mu) / sd).astype(np.float32)
    pos = (weight * y).sum() / weight.sum()
    sw = weight * np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos))
    sw = (sw / sw.mean()).astype(np.float32)
    yf = y.astype(np.float32)
    w = np.random.default_rng(SEED).normal(0, 0.01, x.shape[1]).astype(np.float32)
    b = 0.0
    for _ in range(epochs):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        g = sw * (p - yf)
        w -= lr * (z.T @ g / len(y) + l2 * w)
        b -= lr * float(g.mean())
    w64 = w.astype(np.float64)
    return w64 / sd, float(b - (mu / sd) @ w64)


def text_scores(vecs: list[np.ndarray], w: np.ndarray, b: float) -> np.ndarray:
    """The run-time score: the highest window probability of each text."""
    return np.array([float((1 / (1 + np.exp(-(v.astype(np.float64) @ w + b)))).max()) for v in vecs])


def metrics(p: np.ndarray, y: np.ndarray, thr: float) -> dict:
    pred = p >= thr
    return {"recall": round(float(pred[y == 1].mean()), 4), "fpr": round(float(pred[y == 0].mean()), 4),
            "n_pos": int((y == 1).sum()), "n_neg": int((y == 0).sum())}


def auc(p: np.ndarray, y: np.ndarray) -> float:
    ranks = np.argsort(np.argsort(p)) + 1
    npos, nneg = int((y == 1).sum()), int((y == 0).sum())
    return round(float((ranks[y == 1].sum() - npos * (npos + 1) / 2) / (npos * nneg)), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=1, help="encoder layers kept (1-6)")
    ap.add_argument("--window", type=int, default=64, help="tokens per window, with [CLS] and [SEP]")
    ap.add_argument("--stride", type=int, default=56, help="tokens between window starts")
    ap.add_argument("--float", dest="int8", action="store_false", help="float MatMuls instead of int8")
    ap.add_argument("--lexical", type=int, default=LEXICAL_BUCKETS, help="hashed lexical buckets (0: none)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    rows, ext = load("corpus.jsonl"), load("external_eval.jsonl")
    train, val, test = split(rows)
    emb = Embedder(*model_files(), layers=args.layers, window_tokens=args.window, window_stride=args.stride,
                   int8=args.int8)
    tag = f"L{args.layers}-W{args.window}-S{args.stride}-even" + ("-int8" if args.int8 else "")
    vtr, vva, vte, vex = (with_lexical(emb, [r["text"] for r in part],
                                       embed_windows(emb, [r["text"] for r in part], tag), args.lexical)
                          for part in (train, val, test, ext))
    ytr, yva, yte, yex = (np.array([r["label"] for r in part]) for part in (train, val, test, ext))
    x, y, weight = stack(vtr, list(ytr))

    # regularisation: the value with the best validation recall at the warn threshold
    best = None
    for l2 in L2_GRID:
        w, b = train_logreg(x, y, weight, l2)
        pva = text_scores(vva, w, b)
        warn = float(np.quantile(pva[yva == 0], 0.99))
        recall = metrics(pva, yva, warn)["recall"]
        print(f"l2={l2:g}: validation recall {recall} at 1 % false positives, AUC {auc(pva, yva)}", file=sys.stderr)
        if best is None or recall > best[0]:
            best = (recall, l2, w, b, pva, warn)
    assert best is not None
    _, l2, w, b, pva, warn = best
    block = float(max(np.quantile(pva[yva == 0], 0.998), warn))
    pte, pex = text_scores(vte, w, b), text_scores(vex, w, b)
    report = {
        "embedder": tag, "lexical_buckets": args.lexical, "l2": l2,
        "split": {"train": len(train), "validation": len(val), "test": len(test)},
        "validation_warn": metrics(pva, yva, warn),
        "heldout_warn": metrics(pte, yte, warn), "heldout_block": metrics(pte, yte, block),
        "heldout_auc": auc(pte, yte),
        "external_bastion_warn": metrics(pex, yex, warn), "external_bastion_block": metrics(pex, yex, block),
        "external_bastion_auc": auc(pex, yex),
        "thresholds": {"warn": round(warn, 4), "block": round(block, 4)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "version": "2",
        "model": f"all-MiniLM-L6-v2-onnx-int8, first {args.layers} layers + hashed word pieces, logistic head",
        "embedder": {"layers": args.layers, "window_tokens": args.window, "window_stride": args.stride,
                     "int8_matmul": args.int8},
        "weights": [round(float(v), 6) for v in w[:384]], "bias": round(float(b), 6),
        **({"lexical_weights": [round(float(v), 5) for v in w[384:]]} if args.lexical else {}),
        "thresholds": report["thresholds"], "metrics": report, "seed": SEED,
    }) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
