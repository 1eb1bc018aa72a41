"""Discovery with a person in the loop: how many interesting objects a scripted astronomer sees
when the ranking learns from her labels (``tfanomaly.pipelines.rerank``), against the unsupervised
ranking, Astronomaly's NeighbourScore as published, and a labels-only kNN.

Simulate a survey, ingest, train cpu32 and its encoder (which calibrates), score (encoder only, the
defaults, with the image cubes); rerunning with the same --out reuses every finished stage. Then
scripted users label rounds of 10 objects from the top of the current queue: user A finds the
astrophysical kinds interesting (merger, tidal feature, star-forming clump, lensed arc) and the
instrumental ones artifacts; user B (a survey-quality user) finds the artifacts interesting.
Reported per round: interesting objects among the first 100 and the first 1% shown, counting from
the start of the session (the objects seen so far, then the top of the current queue). Also the
time of one re-rank at 10^4 and 10^5 objects.

Single sessions are small-number counts, so the main methods are also run on --replicates random
subsets of the survey (mean and standard error).

Usage (the defaults were tuned on survey seed 500; the figures are from the fresh seed 600):
  python studies/discovery.py --out studies/out/discovery600 --survey-seed 600
About 10-15 minutes on 2 cores when the run does not exist yet, then ~8 minutes for the sessions.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import common
import numpy as np

from tfanomaly.data.manifest import MANIFEST
from tfanomaly.models.relevance import (
    ARTIFACT,
    INTERESTING,
    NORMAL,
    RelevanceConfig,
    label_targets,
    relevance_scores,
)
from tfanomaly.pipelines.config import (
    EncoderTrainConfig,
    GanTrainConfig,
    IngestConfig,
    ScoreConfig,
)
from tfanomaly.pipelines.rerank import Ranker, features_from_cubes
from tfanomaly.results.catalog import read_results
from tfanomaly.simulate.config import ANOMALY_KINDS, SurveyConfig

ASTRO_KINDS = ("merger", "tidal_feature", "star_forming_clump", "lensed_arc")
ARTIFACT_KINDS = ("satellite_trail", "diffraction_spikes", "cosmic_rays", "bad_column")
# What each scripted user calls each kind: A, an astronomer after galaxies; B, a survey-quality
# user after the artifacts.
USERS = {
    "A": {**dict.fromkeys(ASTRO_KINDS, INTERESTING), **dict.fromkeys(ARTIFACT_KINDS, ARTIFACT)},
    "B": {**dict.fromkeys(ARTIFACT_KINDS, INTERESTING), **dict.fromkeys(ASTRO_KINDS, NORMAL)},
}
REPORT_ROUNDS = (0, 1, 2, 5, 10, 20)
ROUNDS = max(REPORT_ROUNDS)
BATCH = 10


def prepare(out: Path, args) -> Path:
    """The scored results folder of the survey (every stage reused when it exists)."""
    from tfanomaly.pipelines.ingest import ingest
    from tfanomaly.pipelines.score import score
    from tfanomaly.pipelines.simulate import simulate_survey
    from tfanomaly.pipelines.train import train_encoder, train_gan

    out.mkdir(parents=True, exist_ok=True)
    survey, data, run, results = out / "survey.h5", out / "tfrecords", out / "run", out / "scores"
    timings = {}
    started = time.perf_counter()
    if not survey.exists():
        config = SurveyConfig(
            n_objects=args.n_objects,
            size=32,
            seed=args.survey_seed,
            anomaly_fraction=args.anomaly_fraction,
        )
        simulate_survey(survey, config, workers=0, progress=False)
    if not (data / MANIFEST).exists():
        ingest(survey, data, IngestConfig(shard_size=1024), progress=False)
    timings["simulate + ingest"] = time.perf_counter() - started
    if not (run / "generator.keras").exists():
        started = time.perf_counter()
        config = GanTrainConfig(
            preset="cpu32", steps=args.gan_steps, seed=args.train_seed, checkpoint_every=500
        )
        train_gan(data, run, config, progress=False, echo=common.quiet)
        timings["train gan"] = time.perf_counter() - started
    if not (run / "calibration.npz").exists():
        started = time.perf_counter()
        config = EncoderTrainConfig(
            steps=args.encoder_steps, checkpoint_every=300, seed=args.train_seed
        )
        train_encoder(run, config, data_dir=data, progress=False, echo=common.quiet)
        timings["train encoder + calibrate"] = time.perf_counter() - started
    if not (results / "results.h5").exists():
        started = time.perf_counter()
        config = ScoreConfig(batch_size=256, store_images=True)
        score(run, data, results, config, progress=False, echo=common.quiet)
        timings["score"] = time.perf_counter() - started
    for stage, seconds in timings.items():
        print(f"{stage}: {seconds:,.0f} s")
    return results


def user_labels(kinds: np.ndarray, user: str) -> np.ndarray:
    """The label the user gives each object (by its simulated kind)."""
    names = USERS[user]
    return np.array([names.get(kind, NORMAL) for kind in kinds], dtype=object)


def astronomaly_neighbour_score(anomaly, features, rows, targets, seed=0):
    """Astronomaly's NeighbourScore as published (astronomaly/anomaly_detection/
    human_loop_learning.py, Lochner & Bassett 2021): the anomaly score rescaled to 0-5, a random
    forest (100 trees) regressing the user scores (interesting 5, anything else 0) over the
    features, and final = anomaly * tanh(exp(d / mean d * alpha) - 1 + arctanh(f_u)) with
    f_u = 0.1 + 0.85 * user / 5, d the distance to the nearest labelled object, alpha 1."""
    from scipy.spatial import cKDTree
    from sklearn.ensemble import RandomForestRegressor

    score = 5.0 * (anomaly - anomaly.min()) / (anomaly.max() - anomaly.min())
    if len(rows) == 0:
        return score
    user = np.where(targets > 0, 5.0, 0.0)
    forest = RandomForestRegressor(n_estimators=100, random_state=seed, n_jobs=1)
    forest.fit(features[rows], user)
    predicted = forest.predict(features)
    distance = cKDTree(features[rows]).query(features)[0]
    f_u = 0.1 + 0.85 * predicted / 5.0
    penalty = np.exp(distance / distance.mean())
    return score * np.tanh(penalty - 1.0 + np.arctanh(f_u))


def labels_only_knn(anomaly, features, rows, targets, k=5):
    """A kNN classifier of the labels alone: P(interesting) among the k nearest labelled
    objects (distance-weighted), ties broken by the distance to the nearest interesting label
    (nearer first). Cold start: the anomaly order (it has nothing else)."""
    if len(rows) == 0:
        return anomaly
    from sklearn.neighbors import NearestNeighbors

    unit = (features - features.mean(0)) / (features.std(0) + 1e-12)
    k = min(k, len(rows))
    distance, near = NearestNeighbors(n_neighbors=k).fit(unit[rows]).kneighbors(unit)
    weights = 1.0 / (distance + 1e-9)
    p = (weights * (targets[near] > 0)).sum(1) / weights.sum(1)
    positive = rows[targets > 0]
    if len(positive):
        nearest = NearestNeighbors(n_neighbors=1).fit(unit[positive]).kneighbors(unit)[0][:, 0]
    else:
        nearest = -distance[:, 0]  # no interesting label: explore away from the labelled ones
    tiebreak = 1.0 - nearest / (nearest.max() + 1e-12)  # in (0, 1], nearer = higher
    return p * 10.0 + tiebreak


def rerank_method(config: RelevanceConfig | None = None):
    def method(anomaly, features, rows, targets):
        return relevance_scores(anomaly, features, rows, targets, config)

    return method


def session(method, anomaly, features, truth, rounds=ROUNDS, batch=BATCH):
    """A scripted user labelling ``batch`` objects per round from the top of the current queue.
    Returns, per round, the sequence of rows shown (those seen so far, then the queue)."""
    targets_all = label_targets(list(truth))
    seen: list[int] = []
    shown = {}
    for r in range(rounds + 1):
        rows = np.array(seen, dtype=np.int64)
        score = np.array(method(anomaly, features, rows, targets_all[rows]), dtype=np.float64)
        score[rows] = -np.inf
        queue = np.argsort(-score, kind="stable")[: len(score) - len(rows)]
        shown[r] = np.concatenate([rows, queue])
        seen.extend(int(i) for i in queue[:batch])
    return shown


def discoveries(shown: dict, interesting: np.ndarray, first: tuple[int, ...]) -> dict:
    """{round: [interesting among the first n shown for n in first]}."""
    return {r: [int(interesting[seq[:n]].sum()) for n in first] for r, seq in shown.items()}


def feature_spaces(results: Path, columns: dict) -> dict[str, np.ndarray]:
    spaces = {key: columns[key] for key in ("feature_axes", "latents") if key in columns}
    spaces["residual pixels (features_from_cubes)"] = features_from_cubes(results / "results.h5")
    return spaces


def timing_rows(dim: int, labels: int = 200, seed: int = 0) -> list[str]:
    """Seconds per re-rank (Ranker.order: relevance, combination, sort) and per similarity query
    at 10^4 and 10^5 objects, synthetic features of the feature space's dimension."""
    rng = np.random.default_rng(seed)
    lines = []
    for n in (10_000, 100_000):
        features = rng.normal(size=(n, dim)).astype(np.float32)
        ids = np.arange(n, dtype=np.uint64) + np.uint64(2**60)
        started = time.perf_counter()
        ranker = Ranker(ids, rng.normal(size=n), features)
        build = time.perf_counter() - started
        chosen = rng.choice(n, labels, replace=False)
        labels_by_id = {
            int(ids[i]): (INTERESTING if j % 3 == 0 else ARTIFACT) for j, i in enumerate(chosen)
        }
        times = []
        for _ in range(5):
            started = time.perf_counter()
            ranker.order(labels_by_id)
            times.append(time.perf_counter() - started)
        started = time.perf_counter()
        for i in chosen[:20]:
            ranker.similar(int(ids[i]))
        similar = (time.perf_counter() - started) / 20
        lines.append(
            f"  N = {n:>7,}, D = {dim}, {labels} labels: re-rank {np.median(times):.3f} s "
            f"(min {min(times):.3f}), similar() {similar * 1e3:.1f} ms, Ranker built "
            f"in {build:.2f} s"
        )
    return lines


def replicated_table(methods, spaces, anomaly, truth, first, args) -> None:
    """One session is a small-number count (a few objects decide it): the main methods again on
    random subsets of the survey (``--replicates`` of ``--subset`` of the objects), mean and
    standard error over the subsets."""
    rng = np.random.default_rng(args.survey_seed)
    n = len(anomaly)
    subsets = [
        np.sort(rng.choice(n, int(args.subset * n), replace=False)) for _ in range(args.replicates)
    ]
    rounds = [r for r in REPORT_ROUNDS if r <= 10]
    k100 = first[0]
    print(
        f"\nthe same on {args.replicates} random subsets of {args.subset:.0%} of the survey "
        f"(interesting in the first {k100} shown, mean ± standard error):"
    )
    print("| method | " + " | ".join(f"round {r}" for r in rounds) + " |")
    print("|---|" + "---|" * len(rounds))
    for name, (method, space) in methods.items():
        if "latents" in name or "residual" in name or "without" in name:
            continue
        counts = []
        for rows in subsets:
            shown = session(method, anomaly[rows], spaces[space][rows], truth[rows], rounds=10)
            interesting = truth[rows] == INTERESTING
            counts.append([int(interesting[shown[r][:k100]].sum()) for r in rounds])
        counts = np.array(counts, dtype=np.float64)
        se = counts.std(0, ddof=1) / np.sqrt(len(counts))
        cells = " | ".join(f"{m:.1f} ± {e:.1f}" for m, e in zip(counts.mean(0), se, strict=True))
        print(f"| {name} | {cells} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--survey-seed", type=int, default=600)
    parser.add_argument("--train-seed", type=int, default=1)
    parser.add_argument("--n-objects", type=int, default=6000)
    parser.add_argument("--anomaly-fraction", type=float, default=0.04)
    parser.add_argument("--gan-steps", type=int, default=1200)
    parser.add_argument("--encoder-steps", type=int, default=600)
    parser.add_argument("--replicates", type=int, default=8)
    parser.add_argument("--subset", type=float, default=0.7)
    parser.add_argument("--prepare-only", action="store_true")
    args = parser.parse_args()
    print(common.machine())
    results = prepare(Path(args.out), args)
    if args.prepare_only:
        return
    columns, attrs = read_results(results, with_vectors=True)
    kind_names = json.loads(attrs["kind_names"])
    kinds = np.array([kind_names[k] for k in columns["labels"]])
    anomaly = columns["scores_sigma"]
    n = len(anomaly)
    first = (100, max(1, n // 100))
    spaces = feature_spaces(results, columns)
    print(
        f"survey: {n} 32-px cutouts, seed {args.survey_seed}, "
        + ", ".join(f"{(kinds == k).sum()} {k}" for k in ANOMALY_KINDS)
        + f"; cpu32 {args.gan_steps} GAN steps, encoder {args.encoder_steps}, default score"
    )
    for user in USERS:
        truth = user_labels(kinds, user)
        interesting = truth == INTERESTING
        wanted = ", ".join(k for k, v in USERS[user].items() if v == INTERESTING)
        print(
            f"\nuser {user}: interesting = {wanted} ({interesting.sum()} objects); rounds of "
            f"{BATCH} labels"
        )
        methods = {"unsupervised (default score)": (lambda a, f, r, t: a, "feature_axes")}
        for space in spaces:
            methods[f"rerank (default), {space}"] = (rerank_method(), space)
        methods["rerank without the anomaly coordinate, feature_axes"] = (
            rerank_method(RelevanceConfig(anomaly_coordinate=0.0)),
            "feature_axes",
        )
        for space in ("feature_axes", "latents"):
            methods[f"Astronomaly NeighbourScore, {space}"] = (astronomaly_neighbour_score, space)
            methods[f"labels-only kNN, {space}"] = (labels_only_knn, space)
        header = " | ".join(f"round {r}" for r in REPORT_ROUNDS)
        print(f"| method (interesting in first {first[0]} / first 1% = {first[1]}) | {header} |")
        print("|---|" + "---|" * len(REPORT_ROUNDS))
        for name, (method, space) in methods.items():
            shown = session(method, anomaly, spaces[space], truth)
            found = discoveries(shown, interesting, first)
            cells = " | ".join(f"{found[r][0]} / {found[r][1]}" for r in REPORT_ROUNDS)
            print(f"| {name} | {cells} |", flush=True)
        replicated_table(methods, spaces, anomaly, truth, first, args)
    print("\ntime per re-rank (Ranker.order) with synthetic features:")
    for line in timing_rows(spaces["feature_axes"].shape[1]):
        print(line)


if __name__ == "__main__":
    main()
