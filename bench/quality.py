"""Quality benchmark: the benchmark config end to end (prepare → label → train → evaluate).

    python bench/quality.py [--set key=value ...]

Reads params.yaml + params/benchmark.yaml (STS-B and the two BEIR sets in ../shared/data), prints
teacher / undistilled / distilled on STS-B test and both retrieval sets with retained % and speed-up,
and ends with a one-line summary against the targets. Teacher labels and evaluation embeddings are
cached, so a rerun pays only for what changed.
"""

from __future__ import annotations

import argparse
import os
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from distill.config import load_params  # noqa: E402
from distill.pipeline import run_step  # noqa: E402

ROLES = {"teacher": "teacher", "baseline": "undistilled", "student": "distilled"}
TARGETS = {"sts_retained": 99.0, "ndcg_retained": 97.0, "speedup": 6.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--steps", default="prepare,label,train,evaluate",
        help="comma-separated steps to run; e.g. 'evaluate' re-scores the saved student",
    )
    args = parser.parse_args()
    os.chdir(ROOT)  # params paths (outputs, ../shared/data) are relative to the project root
    params = load_params([ROOT / "params.yaml", ROOT / "params/benchmark.yaml"], args.set)
    timings = {}
    for step in args.steps.split(","):
        start = time.perf_counter()
        result = run_step(step, params)
        timings[step] = time.perf_counter() - start
    m: dict[str, float] = json.loads((Path(params.paths.metrics) / "eval.json").read_text())

    print(f"\n{'model':<12} {'STS-B test':>10} {'msmarco':>8} {'dbpedia':>8} {'mean nDCG':>9} "
          f"{'R@100 ms':>8} {'R@100 db':>8} {'texts/s':>8} {'speed-up':>8}")
    summary = {}
    for role, label in ROLES.items():
        sts = m[f"{role}/stsb_test/spearman"]
        ms, db = m[f"{role}/msmarco/ndcg@10"], m[f"{role}/dbpedia/ndcg@10"]
        speed = m[f"{role}/texts_per_s"] / m["teacher/texts_per_s"]
        summary[role] = {"sts": sts, "ndcg": (ms + db) / 2, "speedup": speed}
        print(f"{label:<12} {sts:>10.2f} {ms:>8.2f} {db:>8.2f} {(ms + db) / 2:>9.2f} "
              f"{m[f'{role}/msmarco/recall@100']:>8.2f} {m[f'{role}/dbpedia/recall@100']:>8.2f} "
              f"{m[f'{role}/texts_per_s']:>8.1f} {speed:>7.2f}x")
    teacher = summary["teacher"]
    for role in ("baseline", "student"):
        s = summary[role]
        print(f"{ROLES[role]:<12} retained: STS-B {100 * s['sts'] / teacher['sts']:.2f}%, "
              f"mean nDCG@10 {100 * s['ndcg'] / teacher['ndcg']:.2f}%")
    print("step seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    (ROOT / "bench/out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench/out/quality.json").write_text(json.dumps({"metrics": m, "timings": timings}, indent=2))

    student, baseline = summary["student"], summary["baseline"]
    sts_pct = 100 * student["sts"] / teacher["sts"]
    ndcg_pct = 100 * student["ndcg"] / teacher["ndcg"]
    checks = {
        f"STS-B {student['sts']:.2f} = {sts_pct:.1f}% of teacher (>= {TARGETS['sts_retained']}%)": sts_pct >= TARGETS["sts_retained"],
        f"STS-B above undistilled {baseline['sts']:.2f}": student["sts"] > baseline["sts"],
        f"mean nDCG@10 {student['ndcg']:.2f} = {ndcg_pct:.1f}% of teacher (>= {TARGETS['ndcg_retained']}%)": ndcg_pct >= TARGETS["ndcg_retained"],
        f"speed-up {student['speedup']:.1f}x (>= {TARGETS['speedup']}x)": student["speedup"] >= TARGETS["speedup"],
    }
    met = sum(checks.values())
    print(f"SUMMARY quality: {met}/{len(checks)} targets met; " + "; ".join(
        f"{text} {'OK' if ok else 'MISSED'}" for text, ok in checks.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
