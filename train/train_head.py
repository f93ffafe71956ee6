"""Train the semantic injection head and write src/vallum/detection/data/semantic_head.json.

    python train/build_corpus.py && python train/train_head.py

Embeds every text with vallum's own embedder (the exact run-time path, first 128-token window),
trains an L2-regularised, class-balanced logistic regression with numpy (fixed seed), splits by
group so that one template or one source file never lands on both sides, and prints metrics on
the held-out split and on bastioncorpus (an external set never trained on).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from vallum.detection.semantic import Embedder, model_files  # noqa: E402

SEED = 20261122
OUT = ROOT / "src" / "vallum" / "detection" / "data" / "semantic_head.json"


def load(name: str) -> list[dict]:
    return [json.loads(ln) for ln in (HERE / ".cache" / name).read_text("utf-8").split("\n") if ln.strip()]


def embed_all(emb: Embedder, texts: list[str]) -> np.ndarray:
    cache_path = HERE / ".cache" / "embeddings.npz"
    cache: dict[str, np.ndarray] = dict(np.load(cache_path)) if cache_path.exists() else {}
    out = np.zeros((len(texts), 384), dtype=np.float32)
    todo = []
    for i, t in enumerate(texts):
        k = hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest()
        if k in cache:
            out[i] = cache[k]
        else:
            todo.append((i, k))
    for n, (i, k) in enumerate(todo):
        v = emb.embed_text(texts[i], first_window_only=True)[0]
        out[i] = v
        cache[k] = v
        if n % 500 == 499:
            print(f"embedded {n + 1}/{len(todo)}", file=sys.stderr)
    np.savez(cache_path, **cache)
    return out


def train_logreg(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, epochs: int = 3000, lr: float = 0.5) -> tuple:
    rng = np.random.default_rng(SEED)
    w = rng.normal(0, 0.01, x.shape[1]).astype(np.float64)
    b = 0.0
    pos = y.mean()
    sw = np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos))  # class-balanced sample weights
    for _ in range(epochs):
        z = x @ w + b
        p = 1 / (1 + np.exp(-z))
        g = sw * (p - y)
        w -= lr * (x.T @ g / len(y) + l2 * w)
        b -= lr * g.mean()
    return w, b


def metrics(p: np.ndarray, y: np.ndarray, thr: float) -> dict:
    pred = p >= thr
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    return {"recall": round(tp / max(1, int((y == 1).sum())), 4),
            "fpr": round(fp / max(1, int((y == 0).sum())), 4),
            "n_pos": int((y == 1).sum()), "n_neg": int((y == 0).sum())}


def main() -> None:
    rows = load("corpus.jsonl")
    ext = load("external_eval.jsonl")
    groups = sorted({r["group"] for r in rows})
    random.Random(SEED).shuffle(groups)
    test_groups = set(groups[: len(groups) // 5])
    train = [r for r in rows if r["group"] not in test_groups]
    test = [r for r in rows if r["group"] in test_groups]
    emb = Embedder(*model_files())
    xtr = embed_all(emb, [r["text"] for r in train]).astype(np.float64)
    xte = embed_all(emb, [r["text"] for r in test]).astype(np.float64)
    xex = embed_all(emb, [r["text"] for r in ext]).astype(np.float64)
    ytr = np.array([r["label"] for r in train])
    yte = np.array([r["label"] for r in test])
    yex = np.array([r["label"] for r in ext])
    w, b = train_logreg(xtr, ytr)

    def prob(x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(x @ w + b)))

    pte, pex = prob(xte), prob(xex)
    # thresholds from the TRAINING benign scores only (conservative: the semantic layer adds to the
    # pattern layer's false positives): warn at the 99.5th, block at the 99.9th percentile
    ptr_neg = prob(xtr[ytr == 0])
    warn = float(np.quantile(ptr_neg, 0.995))
    block = float(max(np.quantile(ptr_neg, 0.999), warn))
    report = {
        "train": {"n": len(train)},
        "heldout_warn": metrics(pte, yte, warn), "heldout_block": metrics(pte, yte, block),
        "external_bastion_warn": metrics(pex, yex, warn), "external_bastion_block": metrics(pex, yex, block),
        "thresholds": {"warn": round(warn, 4), "block": round(block, 4)},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "version": "1", "model": "all-MiniLM-L6-v2-onnx-int8 + logistic head",
        "weights": [round(float(v), 6) for v in w], "bias": round(float(b), 6),
        "thresholds": report["thresholds"], "metrics": report, "seed": SEED,
    }) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
