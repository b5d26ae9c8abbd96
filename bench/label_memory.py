"""Peak memory of the label step at two corpus sizes: it must not grow with the corpus.

    python bench/label_memory.py [--sizes 20000,200000] [--model all-MiniLM-L6-v2]

For each size, writes that many distinct short texts (seeded word sequences from the BBC corpus's
vocabulary) to a ``.txt`` file in a temporary project, runs ``python -m distill prepare`` there, then
``python -m distill label`` in a fresh process and reads that process's peak resident memory from
the kernel (``wait4``'s ``ru_maxrss``). A small model is the teacher so 200k texts fit this box.
Prints the peaks and the ratio of the largest to the smallest; target: at most 1.2.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from distill.readers import bbc_dir
from distill.services.dvc_experiments import provenance

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.2


def short_texts(count: int, seed: int) -> list[str]:
    """``count`` distinct texts of 6-14 words drawn from the BBC articles' vocabulary."""
    words = sorted({w for path in Path(bbc_dir()).rglob("*.txt")
                    for w in re.findall(r"[A-Za-z]{3,}", path.read_text(encoding="latin-1"))})
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < count:
        out.add(" ".join(rng.choices(words, k=rng.randint(6, 14))).capitalize() + ".")
    return sorted(out)


def params_for(root: Path, texts_file: Path, model: str) -> dict:
    return {
        "paths": {name: str(root / name) for name in ("prepared", "mined", "eval_cache", "student", "metrics",
                                                       "reports", "plots")}
        | {"teacher_cache": str(root / "teacher"), "lock": str(root / ".lock")},
        "teacher": {"model": model, "max_seq_length": 32, "shard_size": 1024},
        "corpus": {"sources": [{"type": "file", "path": str(texts_file)}], "max_texts": None, "queries": [],
                   "min_chars": 10, "heldout_fraction": 0.01},
        "eval": {"sets": [{"name": "fidelity", "type": "fidelity", "max_texts": 100},
                          {"name": "clusters", "type": "clustering"}]},
    }


def run_step(step: str, params_file: Path) -> tuple[float, float]:
    """Run one step in a fresh process; its (peak RSS in MiB, seconds)."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "distill", step, "--params", str(params_file)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{step} failed:\n{stderr[-3000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20000,200000")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    args = parser.parse_args()
    command = "python bench/label_memory.py" + "".join(
        f" --{k} {v}" for k, v in vars(args).items() if v != parser.get_default(k))
    started = provenance(command, ROOT)
    peaks = {}
    for size in map(int, args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"label-memory-{size}-") as tmp:
            root = Path(tmp)
            texts_file = root / "texts.txt"
            texts_file.write_text("\n".join(short_texts(size, seed=size)) + "\n", encoding="utf-8")
            params_file = root / "params.yaml"
            params_file.write_text(yaml.safe_dump(params_for(root, texts_file, args.model)))
            run_step("prepare", params_file)
            peak, seconds = run_step("label", params_file)
            peaks[size] = peak
            print(f"{size:>8} texts: label peak RSS {peak:8.1f} MiB, {seconds:6.1f} s ({size / seconds:7.1f} texts/s)",
                  flush=True)
    smallest, largest = min(peaks), max(peaks)
    ratio = peaks[largest] / peaks[smallest]
    verdict = "OK" if ratio <= TARGET_RATIO else "MISSED"
    print(f"\n{started}\nSUMMARY label memory: peak at {largest} texts = {ratio:.2f}x the peak at {smallest} "
          f"(<= {TARGET_RATIO}x) {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
