"""Does a change leave the default run's results as they were? (issue #22: "behaviour is unchanged")

    python bench/behaviour.py run LABEL [--checkout DIR]     # params.yaml's pipeline, prepare → evaluate
    python bench/behaviour.py compare LABEL_A LABEL_B        # their eval.json, key by key

``run`` runs every step of ``params.yaml`` up to evaluate (exports included) with the code of
``--checkout`` (a git worktree of another commit; default this one), its outputs under
``bench/out/behaviour/LABEL`` and the label cache shared, and records the commit it ran. ``compare``
prints every ``eval.json`` key whose value differs between two runs, except the throughput keys
(texts/s, speed-ups and their spread: wall-clock measurements, never equal twice), and exits 1 when
any other key differs. Training is seeded and runs on the CPU, so an unchanged pipeline gives
identical scores, intervals and fingerprints.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench/out/behaviour"
STEPS = ("prepare", "label", "train", "export", "evaluate")
OUTPUTS = ("prepared", "mined", "student", "exports", "metrics", "reports", "plots")
TIMING = re.compile(r"texts_per_s|speedup|/seconds$")


def run(label: str, checkout: Path) -> None:
    out = OUT / label
    overrides = [f"--set=paths.{name}={out / name}" for name in OUTPUTS]
    overrides += [f"--set=paths.teacher_cache={ROOT / 'data/teacher'}", f"--set=paths.eval_cache={ROOT / 'data/eval_cache'}",
                  f"--set=paths.lock={out / '.distill.lock'}"]  # its own lock: other work may hold the checkout's
    env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True,
                            check=True).stdout.strip()
    for step in STEPS:
        print(f"== {label}: {step} at {commit[:7]} ==", flush=True)
        subprocess.run([sys.executable, "-m", "distill", step, "--params", str(checkout / "params.yaml"), *overrides],
                       cwd=checkout, env=env, check=True)
    (out / "commit.txt").write_text(commit + "\n")


def compare(first: str, second: str) -> int:
    a, b = (json.loads((OUT / label / "metrics/eval.json").read_text()) for label in (first, second))
    commits = [(OUT / label / "commit.txt").read_text().strip()[:7] for label in (first, second)]
    differing = sorted(k for k in a.keys() | b.keys() if not TIMING.search(k) and a.get(k) != b.get(k))
    timing = sum(1 for k in a.keys() | b.keys() if TIMING.search(k))
    print(f"{first} ({commits[0]}) vs {second} ({commits[1]}): {len(a.keys() | b.keys())} keys, {timing} timing keys "
          f"skipped, {len(differing)} other keys differ")
    for key in differing:
        print(f"  {key}: {a.get(key)!r} -> {b.get(key)!r}")
    return 1 if differing else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run")
    run_parser.add_argument("label")
    run_parser.add_argument("--checkout", type=Path, default=ROOT)
    compare_parser = sub.add_parser("compare")
    compare_parser.add_argument("labels", nargs=2)
    args = parser.parse_args()
    if args.command == "run":
        run(args.label, args.checkout.resolve())
        return 0
    return compare(*args.labels)


if __name__ == "__main__":
    sys.exit(main())
