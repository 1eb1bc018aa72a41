"""Re-ranking time of the learned ranking (``pipelines.rerank.Ranker``, ``method="learned"``) on
synthetic arrays: 10^6 objects, a 30-dimensional space, 9 score terms, 30 and 50 labels (both
classes, the cross-validated gate), 10 labels with one interesting (the gate shut, the lift) and
3 examples, the next ten to label chosen by each query strategy (``models.query``). Target: under
2 s per re-rank.

  python benchmarks/bench_rerank_learned.py [--n 1000000]
"""

from __future__ import annotations

import argparse
import subprocess
import time

import numpy as np

from tfanomaly.models.query import QUERIES
from tfanomaly.pipelines.rerank import Ranker


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in lscpu.splitlines()
            if line.startswith("Model name")
        ),
        "?",
    )
    rng = np.random.default_rng(0)
    n = args.n
    ids = np.arange(n, dtype=np.uint64)
    anomaly = rng.normal(size=n)
    features = rng.normal(size=(n, 30)).astype(np.float32)
    terms = {f"t{k}_scores_sigma": rng.normal(size=n) for k in range(9)}
    labelled = {count: rng.choice(n, count, replace=False) for count in (30, 50)}
    for rows in labelled.values():
        features[rows[::3], 0] += 3  # the interesting ones separate: the gate opens
    started = time.perf_counter()
    ranker = Ranker(ids, anomaly, features, prepared=True, terms=terms)
    print(f"machine: {model}; {n} objects; ranker built in {time.perf_counter() - started:.2f} s")
    for count, rows in labelled.items():
        labels = {int(r): ("interesting" if k % 3 == 0 else "normal") for k, r in enumerate(rows)}
        ranker.scores(labels)
        for query in QUERIES:
            started = time.perf_counter()
            ranker.order(labels, query=query, batch=10)
            print(
                f"{count} labels, query {query}: order in {time.perf_counter() - started:.2f} s "
                f"(gate {ranker.fitted.gate:.2f})"
            )
    # One interesting label among ten: the gate shut, the classifier's best matches lifted.
    few = {int(r): ("interesting" if k == 0 else "normal") for k, r in enumerate(rows[:10])}
    started = time.perf_counter()
    ranker.order(few, query="diverse", batch=10)
    print(
        f"10 labels, 1 interesting: order in {time.perf_counter() - started:.2f} s "
        f"(gate {ranker.fitted.gate:.2f}, the lift)"
    )
    started = time.perf_counter()
    ranker.order({}, like=[1, 2, 3])
    print(f"3 examples: order in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
