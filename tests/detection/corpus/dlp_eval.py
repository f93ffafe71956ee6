"""Scores a DLP evaluation set through the public surface (`vallum.scan`) and prints per-family
recall / false positives.   python tests/detection/corpus/dlp_eval.py FILE.jsonl [--misses]"""

from __future__ import annotations

import collections
import json
import sys

import vallum

DLP_CATEGORIES = {"credential", "pii"}


def evaluate(path: str) -> tuple[dict, list[dict]]:
    stats: dict = collections.defaultdict(lambda: [0, 0])
    wrong = []
    with open(path) as fh:
        lines = fh.read().splitlines()
    for line in lines:
        row = json.loads(line)
        v = vallum.scan(row["content"], kind=row["kind"])
        blocked = v.action.value == "block"
        dlp = [f for f in v.findings if f.category in DLP_CATEGORIES]
        if row["expect"] == "block":
            key = ("pos", row["family"])
            ok = blocked and bool(dlp)
        else:
            key = ("neg", "all")
            ok = not blocked
        stats[key][0] += ok
        stats[key][1] += 1
        stats[("variant", row["variant"])][0] += ok
        stats[("variant", row["variant"])][1] += 1
        if not ok:
            wrong.append({**row, "findings": [(f.rule, f.location, f.evidence) for f in v.findings]})
    return stats, wrong


if __name__ == "__main__":
    stats, wrong = evaluate(sys.argv[1])
    for k in sorted(stats):
        ok, n = stats[k]
        print(f"{k[0]:8} {k[1]:22} {ok:4}/{n:<4} {100 * ok / n:5.1f}%")
    tp = sum(v[0] for k, v in stats.items() if k[0] == "pos")
    npos = sum(v[1] for k, v in stats.items() if k[0] == "pos")
    print(f"recall {tp}/{npos}  false positives {stats[('neg', 'all')][1] - stats[('neg', 'all')][0]}/{stats[('neg', 'all')][1]}")
    if "--misses" in sys.argv:
        for w in wrong:
            c = w["content"] if isinstance(w["content"], str) else json.dumps(w["content"])
            print(w["expect"], w["type"], w["variant"], w["kind"], c[:160].replace("\n", "⏎"), w["findings"][:3])
