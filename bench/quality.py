"""Quality benchmark: the benchmark config end to end (prepare → label → train → export → evaluate).

    python bench/quality.py [--set key=value ...] [--steps evaluate]

Reads params.yaml + params/benchmark.yaml (STS-B and the two BEIR sets in ../shared/data; the corpus
is decontaminated against them and STS-B dev), and prints teacher / undistilled / distilled on STS-B
test and both retrieval sets (trec_eval nDCG@10), retained %, like-for-like speed (median and range
of alternating repeats, measured in this run), the paired bootstrap interval of distilled minus
undistilled, and a one-line summary against the targets, as a Markdown block for bench/RESULTS.md
headed by the git commit, date, machine and command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from distill.config.loader import load_params
from distill.config.schema import export_role
from distill.evaluation.gate import interval_text
from distill.evaluation.report import truncated_dims
from distill.pipeline import run_step
from distill.services.dvc_experiments import provenance
from distill.services.lock import pipeline_lock

ROOT = Path(__file__).resolve().parents[1]
ROLES = {"teacher": "teacher", "baseline": "undistilled", "student": "distilled"}
TARGETS = {"sts_retained": 99.0, "ndcg_retained": 98.0, "speedup": 6.0}  # issue #7's targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", default="prepare,label,train,export,evaluate",
                        help="comma-separated steps to run; e.g. 'evaluate' re-scores the saved student")
    args = parser.parse_args()
    os.chdir(ROOT)  # params paths (outputs, ../shared/data) are relative to the project root
    command = "python bench/quality.py" + "".join(f" --{k} {v}" for k, v in
                                                   (("steps", args.steps),) if v != parser.get_default("steps"))
    command += "".join(f" --set {s}" for s in args.set)
    started = provenance(command, ROOT)  # the code that runs is the code at the start, whatever is committed later
    params = load_params([ROOT / "params.yaml", ROOT / "params/benchmark.yaml"], args.set)
    timings = {}
    with pipeline_lock(params.paths.lock):  # held across all steps: no other run slips in between
        for step in args.steps.split(","):
            start = time.perf_counter()
            run_step(step, params)
            timings[step] = time.perf_counter() - start
    m = json.loads((Path(params.paths.metrics) / "eval.json").read_text())

    lines = ["model        STS-B test  msmarco  dbpedia  mean nDCG  R@100 ms  R@100 db  MRR@10 ms  MRR@10 db  "
             "texts/s (min-max)      speed-up"]
    summary = {}
    for role, label in ROLES.items():
        sts, ms, db = (m[f"{role}/{k}"] for k in ("stsb_test/spearman", "msmarco/ndcg@10", "dbpedia/ndcg@10"))
        speed = m[f"{role}/texts_per_s"] / m["teacher/texts_per_s"]
        summary[role] = {"sts": sts, "ndcg": (ms + db) / 2, "speedup": speed}
        lines.append(
            f"{label:<12} {sts:>10.2f} {ms:>8.2f} {db:>8.2f} {(ms + db) / 2:>10.2f} "
            f"{m[f'{role}/msmarco/recall@100']:>9.2f} {m[f'{role}/dbpedia/recall@100']:>9.2f} "
            f"{m[f'{role}/msmarco/mrr@10']:>10.2f} {m[f'{role}/dbpedia/mrr@10']:>10.2f}  "
            f"{m[f'{role}/texts_per_s']:>7.1f} ({m[f'{role}/texts_per_s_min']:.1f}-{m[f'{role}/texts_per_s_max']:.1f})"
            f"  {speed:>7.2f}x")
    teacher, student, baseline = summary["teacher"], summary["student"], summary["baseline"]
    for role in ("baseline", "student"):
        s = summary[role]
        lines.append(f"{ROLES[role]:<12} retained: STS-B {100 * s['sts'] / teacher['sts']:.2f}%, "
                     f"mean nDCG@10 {100 * s['ndcg'] / teacher['ndcg']:.2f}%")
    lines.append(
        f"distilled - undistilled, {params.registry.primary_metric} over STS-B test + MS MARCO + DBpedia "
        f"(paired bootstrap, {params.registry.bootstrap_resamples} resamples): {interval_text(m, 'student/vs_baseline')}")
    lines.append("per set: " + "; ".join(
        f"{name} {interval_text(m, f'student/vs_baseline/{name}')}" for name in ("stsb_test", "msmarco", "dbpedia")
        if f"student/vs_baseline/{name}/low" in m))
    for name in ("msmarco", "dbpedia"):
        if f"asymmetric/{name}/ndcg@10" in m:
            lines.append(f"asymmetric (distilled queries x teacher documents) {name}: nDCG@10 "
                         f"{m[f'asymmetric/{name}/ndcg@10']:.2f} = {m[f'asymmetric/retained_pct/{name}']:.2f}% of teacher, "
                         f"query-side speed-up {student['speedup']:.2f}x")
    for dim in truncated_dims(m):
        lines.append(f"distilled truncated to {dim} dims: mean score "
                     f"{m[f'student_dim{dim}/mean_score']:.2f} (full: {m['student/mean_score']:.2f})")
    for fmt in params.export.formats:
        role = export_role(fmt)
        lines.append(f"export {fmt}: mean score {m[f'{role}/mean_score']:.2f}, vs fp32 distilled "
                     f"{interval_text(m, f'{role}/vs_student')}, {m[f'{role}/texts_per_s']:.1f} texts/s "
                     f"({m[f'{role}/texts_per_s'] / m['student/texts_per_s']:.2f}x the fp32 student, "
                     f"{m[f'{role}/speedup']:.1f}x the teacher), {m[f'{role}/size_mb']:.0f} MB")
    lines.append(f"corpus texts dropped by decontamination: {int(m['corpus/decontaminated_texts'])}")
    lines.append("step seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    sts_pct = 100 * student["sts"] / teacher["sts"]
    ndcg_pct = 100 * student["ndcg"] / teacher["ndcg"]
    checks = {
        f"STS-B {student['sts']:.2f} = {sts_pct:.1f}% of teacher (>= {TARGETS['sts_retained']}%)":
            sts_pct >= TARGETS["sts_retained"],
        f"STS-B above undistilled {baseline['sts']:.2f}": student["sts"] > baseline["sts"],
        f"mean nDCG@10 {student['ndcg']:.2f} = {ndcg_pct:.1f}% of teacher (>= {TARGETS['ndcg_retained']}%)":
            ndcg_pct >= TARGETS["ndcg_retained"],
        f"mean nDCG@10 not below undistilled {baseline['ndcg']:.2f}": student["ndcg"] >= baseline["ndcg"],
        f"speed-up {student['speedup']:.1f}x (>= {TARGETS['speedup']}x)": student["speedup"] >= TARGETS["speedup"],
        "distilled beats undistilled beyond noise (interval above 0)": m["student/vs_baseline/low"] > 0,
    }
    lines.append(f"SUMMARY quality: {sum(checks.values())}/{len(checks)} targets met; " + "; ".join(
        f"{text} {'OK' if ok else 'MISSED'}" for text, ok in checks.items()))
    print(f"\n{started}\n\n```\n" + "\n".join(lines) + "\n```")
    (ROOT / "bench/out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench/out/quality.json").write_text(json.dumps({"metrics": m, "timings": timings}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
