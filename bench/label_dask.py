"""The label step in one process vs on a Dask LocalCluster: the same cache, and how long each takes.

    python bench/label_dask.py [--texts 600] [--workers 2]

Prepares ``params.yaml``'s corpus capped at ``--texts`` passages into a temporary folder, then runs
the label step twice into two empty caches: in-process, and with ``cluster.n_workers`` workers of one
thread each. Prints both times, whether the two caches hold the same keys in every namespace, the
largest absolute difference between their embeddings, and whether the mined candidates are
byte-identical.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from distill.config.loader import load_params
from distill.pipeline import configure
from distill.services.dvc_experiments import provenance
from distill.steps import label, prepare

ROOT = Path(__file__).resolve().parents[1]


def cache_rows(root: Path) -> dict[str, dict[bytes, np.ndarray]]:
    out: dict[str, dict[bytes, np.ndarray]] = {}
    for namespace in sorted(p for p in root.iterdir() if p.is_dir()):
        rows = out.setdefault(namespace.name, {})
        for shard in namespace.glob("shard-*.npz"):
            with np.load(shard) as data:
                rows.update(zip(map(bytes, data["keys"]), data["embeddings"].astype(np.float32)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=600)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    command = "python bench/label_dask.py" + "".join(
        f" --{k} {v}" for k, v in vars(args).items() if v != parser.get_default(k))
    started = provenance(command, ROOT)
    with tempfile.TemporaryDirectory(prefix="label-dask-") as tmp:
        root = Path(tmp)
        runs = {"one process": [], f"dask, {args.workers} workers": [f"cluster.n_workers={args.workers}"]}
        seconds, folders = {}, {}
        for name, extra in runs.items():
            folder = root / name.replace(" ", "_").replace(",", "")
            overrides = [f"paths.prepared={root / 'prepared'}", f"paths.teacher_cache={folder / 'teacher'}",
                         f"paths.mined={folder / 'mined'}", f"paths.lock={root / '.lock'}",
                         f"corpus.max_texts={args.texts}", *extra]
            params = load_params(ROOT / "params.yaml", overrides)
            configure(params)
            if not (root / "prepared").exists():
                prepare.run(params)
            start = time.perf_counter()
            label.run(params)
            seconds[name], folders[name] = time.perf_counter() - start, folder
            print(f"{name:<20} label step {seconds[name]:7.1f} s", flush=True)
        one, many = (cache_rows(folders[n] / "teacher") for n in runs)
        same_keys = one.keys() == many.keys() and all(one[n].keys() == many[n].keys() for n in one)
        largest = max(float(np.abs(one[n][k] - many[n][k]).max()) for n in one for k in one[n]) if same_keys else float("nan")
        rows = sum(len(r) for r in one.values())
        identical = all((folders[n] / "mined/candidates.parquet").read_bytes()
                        == (folders[next(iter(runs))] / "mined/candidates.parquet").read_bytes() for n in runs)
    print(f"\n{started}\nSUMMARY label on dask: {rows} cached rows, same keys {same_keys}, largest |difference| "
          f"{largest:.2e}, mined candidates byte-identical {identical}; "
          + ", ".join(f"{n} {s:.1f} s" for n, s in seconds.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
