"""Does the re-ranking learn what the astronomer wants? Scripted users on scored, labelled sets.

Each round the user labels the ``--batch`` not-yet-labelled objects that a query strategy
(``models.query``: ``top`` of the current ranking, ``uncertain``, ``diverse``, ``mixed``) shows,
truthfully (the kind they want -> interesting, another anomaly kind -> artifact, normal ->
normal), ``--rounds`` rounds. Users: one who wants every anomaly, one per kind who wants that
kind, and a random labeller (interesting / artifact / normal at random; measured against every
anomaly). Starts: ``top`` (from the default order) and ``like`` (from ``--examples`` example ids
of the wanted kind, as ``rerank --like``; every method takes them as interesting labels). After
each round: AUROC and AP over the objects not yet labelled (nor given as examples), "first 100":
the targets among the first 100 objects the user has seen (those labelled, then the ranking's
next; examples not counted), and the logistic regression's AUROC on the same labels.

Methods: ``default`` (the anomaly score, labels ignored), ``relevance`` (the nearest-label vote,
``models.relevance``), ``logreg`` (balanced logistic regression, C=1, on the standardised
feature_axes and every *_sigma column, labelled objects only; the default order while one class
only), ``knn[:k=5+weight=3]`` (label propagation: the prior plus the kNN vote of the labels over
the default space), ``learned[:KNOB=V+...]`` (``models.preference``, the shipped ranker, with
PreferenceConfig knobs overridden; ``axes=1``: the standardised feature_axes added to its design).
A query strategy may take ``:pool=P`` (the objects ``uncertain``/``diverse`` draw from: P objects,
0 every object, under 1 that fraction; default ``models.query.POOL``) and ``+grow=G`` (the pool
times G per batch labelled; 1 with a pool given), e.g. ``diverse:pool=200+grow=1``, the fixed
pool of earlier versions. The summary ranks strategy x method by
the worst set's worst user after round 3, then the mean; ``--merge`` prints it (and
``--markdown``, the docs' table) from the ``--out`` files of per-set runs. ``--ceiling`` prints,
per set and user, how far any ranker in the learned ranking's space can go: a logistic regression
on its design fitted with every object's label (5-fold cross-validated AUROC), beside the learned
ranking's AUROC after three rounds from ``--merge``'s runs.
``--design`` rebuilds the learned ranking's design another way, for comparison: ``clipped`` (every
column standardised and clipped, as before the score columns' asinh) or ``asinh`` (every column,
the feature space's too, through ``asinh_columns``); ``shipped`` is the package's.

  python studies/discovery_users.py --sets name=RESULTS[,...] [--rounds 3] [--seeds 5]
      [--queries top,uncertain,diverse,mixed] [--starts top,like] [--out FILE]
  python studies/discovery_users.py --merge A.json,B.json [--markdown mixed:learned]
  python studies/discovery_users.py --sets name=RESULTS[,...] --ceiling [--merge A.json,...]
About 10 minutes per set of 3,000-4,000 objects on 2 cores (all methods, queries and starts).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import common
import numpy as np

from tfanomaly.models.preference import PreferenceConfig, asinh_columns, standardised_columns
from tfanomaly.models.query import POOL, QUERIES, query_batch
from tfanomaly.models.relevance import RelevanceConfig, anomaly_prior, ranking_space, relevance
from tfanomaly.pipelines.rerank import Ranker
from tfanomaly.results.catalog import read_results
from tfanomaly.results.spaces import DEFAULT_SPACE, space_vectors

# name=RESULTS folders scored with this version (the vectors of the default space); the demo's,
# and quality.py's fresh real sets (scored again after an upgrade with `tfanomaly score`).
SETS = {
    "demo": common.ROOT / "demo_run" / "scores",
    "colour": common.QUALITY / "real_colour_fresh" / "scores",
    "frames": common.QUALITY / "real_frames_fresh" / "scores",
}
ARTIFACT_KINDS = {"satellite_trail", "diffraction_spikes", "cosmic_rays", "bad_column"}


def auroc(score, target) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(target, score)) if 0 < target.sum() < len(target) else float("nan")


def ap(score, target) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(target, score)) if target.sum() else float("nan")


DESIGNS = ("shipped", "clipped", "asinh")


def design_matrix(ranker: Ranker, sigma: np.ndarray, design: str) -> np.ndarray:
    """The learned ranking's design of ``ranker`` (its feature space, the ``sigma`` columns in
    the order ``Ranker.from_results`` reads them, the prior) built as ``design`` (DESIGNS)."""
    if design == "shipped":
        return ranker._design
    scores = np.concatenate([sigma, ranker._prior[:, None]], axis=1)
    if design == "clipped":
        return standardised_columns(np.concatenate([ranker._unit, scores], axis=1))
    if design == "asinh":
        return np.concatenate([asinh_columns(ranker._unit), asinh_columns(scores)], axis=1)
    raise ValueError(f"design {design!r}, not one of {DESIGNS}")


class Survey:
    def __init__(self, folder, config, design: str = "shipped"):
        columns, attrs = read_results(folder, with_vectors=True)
        self.object_ids = columns["object_ids"]
        self.ranker = Ranker.from_results(folder, preference=config)
        self.folder, self.config = folder, config
        self._axes_ranker = None
        self.kinds = np.asarray(columns["labels"])
        self.kind_names = json.loads(attrs["kind_names"])
        self.anomaly = np.asarray(columns["scores_sigma"], np.float64)
        self.prior = anomaly_prior(self.anomaly)
        sigma = np.stack(
            [np.asarray(columns[k], np.float64) for k in sorted(columns) if k.endswith("_sigma")],
            axis=1,
        )
        self.ranker._design = design_matrix(self.ranker, sigma, design)
        self.space = space_vectors(lambda k: columns[k], DEFAULT_SPACE)
        raw = np.concatenate([columns["feature_axes"], sigma], axis=1)
        self.logreg_x = (raw - raw.mean(0)) / np.where(raw.std(0) > 0, raw.std(0), 1)
        self.rel_space = ranking_space(self.anomaly, self.space, RelevanceConfig(), prepared=True)
        unit = self.space
        self.knn_unit = unit
        self.feature_axes = np.asarray(columns["feature_axes"], np.float64)

    def axes_ranker(self) -> Ranker:
        """The shipped ranker with the feature_axes columns added to the learned ranking's
        design (beside the space, the sigma columns and the prior)."""
        if self._axes_ranker is None:
            extra = standardised_columns(self.feature_axes)
            ranker = Ranker.from_results(self.folder, preference=self.config)
            ranker._design = np.concatenate([ranker._design, extra], axis=1)
            self._axes_ranker = ranker
        return self._axes_ranker


def method_scores(name, survey: Survey, rows, targets, config: PreferenceConfig, like=()):
    """(score, boundary): the ranking of method ``name`` under these labels and, for the
    ``uncertain`` query, ``rows -> signed distance to its decision boundary`` (None: none)."""
    prior = survey.prior
    method, _, knobs = name.partition(":")
    if method == "learned":  # the shipped Ranker; learned:c=0.1+weight=2 overrides its knobs
        opts = {k: float(v) for k, v in (kv.split("=") for kv in knobs.split("+") if kv)}
        # axes=1: the feature_axes columns added to the design
        ranker = survey.axes_ranker() if opts.pop("axes", 0) else survey.ranker
        ranker.preference = dataclasses.replace(config, **opts)
        ids = survey.object_ids[rows]
        labels = {
            int(i): ("interesting" if t > 0 else "normal")
            for i, t in zip(ids, targets, strict=True)
        }
        score = ranker.scores(labels, like=[int(i) for i in survey.object_ids[list(like)]])
        fitted = ranker.fitted
        if fitted is None:
            return score, None
        return score, lambda r: ranker._design[r] @ fitted.coef + fitted.intercept
    if len(like):  # the other methods take the examples as interesting labels
        rows = np.concatenate([np.asarray(like, dtype=np.int64), np.asarray(rows, dtype=np.int64)])
        targets = np.concatenate([np.ones(len(like)), np.asarray(targets, dtype=np.float64)])
    if len(rows) == 0 or method == "default":
        return prior, None
    if method == "relevance":
        cfg = RelevanceConfig()
        return prior + cfg.weight * relevance(survey.rel_space, rows, targets, cfg), None
    if method == "logreg":
        if len(np.unique(targets)) < 2:
            return prior, None
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
        model.fit(survey.logreg_x[rows], targets > 0)
        score = model.decision_function(survey.logreg_x)
        return score, lambda r: score[r]
    if method == "knn":  # knn or knn:k=5+weight=3: the prior plus the labels' kNN vote
        opts = {k: float(v) for k, v in (kv.split("=") for kv in knobs.split("+") if kv)}
        x = survey.knn_unit
        d2 = ((x[:, None, :] - x[rows][None, :, :]) ** 2).sum(-1)
        k = min(int(opts.get("k", 5)), len(rows))
        near = np.argpartition(d2, k - 1, axis=1)[:, :k]
        w = 1.0 / (np.take_along_axis(d2, near, 1) + 1e-3)
        vote = (w * targets[near]).sum(1) / w.sum(1)
        return prior + opts.get("weight", 3.0) * vote, lambda r: vote[r]
    raise ValueError(name)


def next_rows(query, score, boundary, labelled, survey, batch):
    """``query[:pool=P+grow=G]``: the strategy, its pool P objects (0: every object; under 1:
    that fraction of them) growing G times per batch labelled; without knobs, the shipped
    ``models.query`` defaults; with a pool and no growth, a fixed pool."""
    name, _, knobs = query.partition(":")
    opts = {k: float(v) for k, v in (kv.split("=") for kv in knobs.split("+") if kv)}
    extra = {}
    if opts:
        n = len(score)
        pool = opts.get("pool", POOL)
        pool = n if pool == 0 else (int(round(pool * n)) if pool < 1 else int(pool))
        extra = {"pool": pool, "growth": opts.get("grow", 1.0)}
    return query_batch(
        name, score, labelled, survey.ranker._unit, batch, boundary=boundary, **extra
    )


def simulate(survey: Survey, want, method, rounds, batch, config, rng=None, query="top", like=()):
    """One scripted user: ``want`` is the set of wanted kinds (None: a random labeller); each
    round they label the ``batch`` objects the ``query`` strategy shows; ``like``: rows of
    examples of the wanted kind given before the first round (a cold start)."""
    n = len(survey.prior)
    target = np.isin(survey.kinds, list(want)) if want is not None else survey.kinds > 0
    like = [int(r) for r in like]
    labelled, targets, out = [], [], []
    score, boundary = method_scores(method, survey, np.array([], int), np.array([]), config, like)
    for _ in range(rounds):
        mask = np.ones(n, bool)
        mask[labelled + like] = False
        shown = next_rows(query, score, boundary, ~mask, survey, batch)
        for r in shown:
            if want is None:
                t = float(rng.choice([1.0, -1.0, -1.0]))
            else:
                t = 1.0 if survey.kinds[r] in want else -1.0
            labelled.append(int(r))
            targets.append(t)
        rows, tg = np.array(labelled), np.array(targets)
        t0 = time.perf_counter()
        score, boundary = method_scores(method, survey, rows, tg, config, like)
        seconds = time.perf_counter() - t0
        mask = np.ones(n, bool)
        mask[labelled + like] = False
        order = np.flatnonzero(mask)[np.argsort(-score[mask], kind="stable")]
        # seen: the labels given (not the examples, which the user brought), then the ranking's
        seen = np.concatenate([rows, order[: max(0, 100 - len(rows))]])[:100]
        base, _ = method_scores("logreg", survey, rows, tg, config, like)
        out.append(
            {
                "auroc": auroc(score[mask], target[mask]),
                "ap": ap(score[mask], target[mask]),
                "default_auroc": auroc(survey.prior[mask], target[mask]),
                "logreg_auroc": auroc(base[mask], target[mask]),
                "first100": int(target[seen].sum()),
                "interesting": int((tg > 0).sum()),
                "seconds": seconds,
            }
        )
    return out


def users(survey: Survey):
    names = survey.kind_names
    yield "all", set(range(1, len(names)))
    for k in range(1, len(names)):
        if (survey.kinds == k).any():
            yield names[k], {k}


METHODS = (
    "default",
    "logreg",
    "knn",
    "learned",
    "learned:c=0.1",
    "learned:gate_z=2",
    "learned:gate_z=2+c=0.1",
)


def examples_of(survey: Survey, want, n, seed):
    """``n`` rows of the wanted kinds at random: the examples a cold-start user brings."""
    rows = np.flatnonzero(np.isin(survey.kinds, list(want)))
    n = min(n, len(rows) // 2)
    return np.sort(np.random.default_rng(seed).choice(rows, n, replace=False)) if n else rows[:0]


def summary(record: dict, r3: int) -> None:
    """Per start, query and method: per set the worst AUROC over users after round ``r3 + 1``,
    the worst first-100 gain over the default order (the default method's own first 100 from
    the top; 1 where both found none), the worst AUROC minus the logistic regression's on the same labels; then the worst
    set's AUROC, the mean over users and sets, and the random labellers' worst |AUROC - default|.
    Sorted by the worst set, then the mean."""
    print(
        f"\n=== after round {r3 + 1}, per set: worst AUROC over users / worst first-100 gain "
        "over the default / worst AUROC minus the logistic regression's; then the worst set's "
        "AUROC, the mean, and the random labellers' worst |AUROC - default|"
    )
    randoms: dict = {}
    for key, diffs in record.items():
        if key[1] == "random":
            randoms.setdefault(key[2:], []).append(float(np.abs(np.array(diffs)).max()))
    starts = sorted({k[1] for k in record if k[1] != "random"}, key=["top", "like"].index)
    for start in starts:
        print(f"-- start {start}")
        table: dict = {}
        for key, res in record.items():
            set_name, s0, user, query, method = key if len(key) == 5 else (None,) * 5
            if s0 != start:
                continue
            x = res[r3]
            default = record.get((set_name, "top", user, "top", "default"))
            if default is None:  # a run without the top strategy: no gain to measure
                gain = np.nan
            else:
                # a kind absent from the default's first 100: any found is an unbounded gain
                base = default[r3]["first100"]
                gain = x["first100"] / base if base else (np.inf if x["first100"] else 1.0)
            table.setdefault((query, method), {}).setdefault(set_name, []).append(
                (x["auroc"], gain, x["auroc"] - x["logreg_auroc"])
            )
        rows = []
        for (query, method), by_set in table.items():
            cells, floor, means = [], 1.0, []
            for set_name, items in by_set.items():
                finite = [i for i in items if np.isfinite(i[0])]
                means += [i[0] for i in finite]
                a = min(i[0] for i in finite)
                g = min((i[1] for i in items if not np.isnan(i[1])), default=np.nan)
                d = min((i[2] for i in finite if np.isfinite(i[2])), default=np.nan)
                floor = min(floor, a)
                cells.append(f"{set_name}: {a:.3f} / {g:.1f}x / {d:+.3f}")
            rnd = max(randoms.get((query, method), [0.0]))
            line = (
                f"{query:9s} {method:16s} "
                + "; ".join(cells)
                + f" | worst {floor:.3f} | mean {np.mean(means):.3f} | random {rnd:.3f}"
            )
            rows.append(((floor, float(np.mean(means))), line))
        for _, line in sorted(rows, key=lambda r: (-r[0][0], -r[0][1])):
            print(line)


def markdown(record: dict, r3: int, query: str, method: str) -> None:
    """The docs' table: per set, start and user, after round ``r3 + 1``, ``method`` with the
    ``query`` strategy (AUROC / first 100), the same with ``top``, the default order's and the
    logistic regression's on the same labels."""
    print(
        f"\n| family | start | user wants | {method}, {query} | {method}, top | default "
        f"| logistic regression |\n|---|---|---|---|---|---|---|"
    )
    for key, res in record.items():
        if len(key) != 5 or key[3] != query or key[4] != method:
            continue
        set_name, start, user, _, _ = key
        x = res[r3]
        top = record.get((set_name, start, user, "top", method), [None] * (r3 + 1))[r3]
        base = record.get((set_name, start, user, "top", "default"), [None] * (r3 + 1))[r3]
        cells = [
            f"{x['auroc']:.3f} / {x['first100']}",
            "" if top is None else f"{top['auroc']:.3f} / {top['first100']}",
            "" if base is None else f"{base['auroc']:.3f} / {base['first100']}",
            f"{x['logreg_auroc']:.3f}",
        ]
        print(f"| {set_name} | {start} | {user} | " + " | ".join(cells) + " |")


def ceilings(survey: Survey, folds: int = 5) -> dict[str, tuple[float, int]]:
    """User -> (the cross-validated AUROC of a logistic regression (balanced classes, the learned
    ranking's C) on the learned ranking's own design (space, sigma columns, prior) fitted with
    every object's label: the most any ranker of that space can reach, whatever the labels; the
    user's number of targets)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    design = survey.ranker._design
    out = {}
    for user, want in users(survey):
        target = np.isin(survey.kinds, list(want))
        if target.sum() < folds:
            continue
        model = LogisticRegression(C=survey.config.c, class_weight="balanced", max_iter=5000)
        split = StratifiedKFold(folds, shuffle=True, random_state=0)
        held = cross_val_predict(model, design, target, cv=split, method="decision_function")
        out[user] = (auroc(held, target), int(target.sum()))
    return out


def ceiling_table(
    sets: list[tuple[str, str]], config, record: dict, r3: int, design: str = "shipped"
) -> None:
    """The docs' table of :func:`ceilings`, with the learned ranking's AUROC after round ``r3 + 1``
    (``diverse`` query) from the top and from examples where ``record`` has them."""
    print(
        "\n| family | user wants | targets | ceiling (every label) | learned, from the top "
        "| learned, from 5 examples | default order |\n|---|---|---|---|---|---|---|"
    )
    for set_name, folder in sets:
        survey = Survey(folder, config, design)
        for user, (value, n) in ceilings(survey).items():
            cells = []
            for start, method in (("top", "learned"), ("like", "learned"), ("top", "default")):
                res = record.get((set_name, start, user, "diverse", method))
                cells.append("" if res is None else f"{res[r3]['auroc']:.3f}")
            print(f"| {set_name} | {user} | {n} | {value:.3f} | " + " | ".join(cells) + " |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sets",
        default=",".join(SETS),
        help="names of SETS, or name=RESULTS_FOLDER pairs (comma-separated)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=5, help="random labellers per set")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="rankers: default, relevance, logreg, knn[:k=K+weight=W], learned[:KNOB=V+...] "
        "(PreferenceConfig knobs)",
    )
    parser.add_argument(
        "--queries",
        default=",".join(QUERIES),
        help="query strategies, each with an optional :pool=P (objects; 0: all; under 1: a "
        "fraction) and +grow=G (the pool times G per batch labelled)",
    )
    parser.add_argument(
        "--starts",
        default="top,like",
        help="top: from the default order; like: from --examples examples of the wanted kind",
    )
    parser.add_argument("--examples", type=int, default=5)
    parser.add_argument("--config", default="{}", help="PreferenceConfig fields as JSON")
    parser.add_argument(
        "--design",
        default="shipped",
        choices=DESIGNS,
        help="the learned ranking's design: the package's, or as it was built before (clipped) or "
        "every column through asinh",
    )
    parser.add_argument("--out", default=None, help="write every figure as JSON here")
    parser.add_argument(
        "--markdown",
        default=None,
        metavar="QUERY:METHOD",
        help="with --merge, also print the docs' table of this strategy and ranker",
    )
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="print each user's ceiling in the learned ranking's space (beside --merge's runs)",
    )
    parser.add_argument(
        "--merge",
        default=None,
        help="print the summary of earlier --out files (comma-separated) instead of running",
    )
    args = parser.parse_args(argv)
    record = {}
    for path in args.merge.split(",") if args.merge else []:
        record.update(
            {tuple(k.split("|")): v for k, v in json.loads(Path(path).read_text()).items()}
        )
    if args.ceiling:
        print(common.machine())
        sets = [s.partition("=")[::2] for s in args.sets.split(",")]
        sets = [(name, folder or SETS[name]) for name, folder in sets]
        config = PreferenceConfig(**json.loads(args.config))
        ceiling_table(sets, config, record, min(2, args.rounds - 1), args.design)
        return
    if args.merge:
        summary(record, min(2, args.rounds - 1))
        if args.markdown:
            query, _, method = args.markdown.partition(":")
            markdown(record, min(2, args.rounds - 1), query, method)
        return
    config = PreferenceConfig(**json.loads(args.config))
    methods, queries = args.methods.split(","), args.queries.split(",")
    starts = args.starts.split(",")
    r3 = min(2, args.rounds - 1)
    print(common.machine())
    print(f"config: {config}")
    record = {}
    for set_name in args.sets.split(","):
        set_name, _, folder = set_name.partition("=")
        survey = Survey(folder or SETS[set_name], config, args.design)
        n_anom = int((survey.kinds > 0).sum())
        print(
            f"\n=== {set_name}: {len(survey.kinds)} objects, {n_anom} anomalies, "
            f"kinds {survey.kind_names[1:]}"
        )
        default_p100 = {}
        for user, want in users(survey):
            target = np.isin(survey.kinds, list(want))
            default_p100[user] = int(target[np.argsort(-survey.prior, kind="stable")[:100]].sum())
        for start in starts:
            for u, (user, want) in enumerate(users(survey)):
                like = examples_of(survey, want, args.examples, u) if start == "like" else []
                print(
                    f"-- start {start}, user wants {user} "
                    f"({int(np.isin(survey.kinds, list(want)).sum())} targets; default first 100: "
                    f"{default_p100[user]}). Cells: AUROC/AP/first 100 per round | "
                    f"logistic regression's AUROC on the same labels, round {r3 + 1}"
                )
                for query in queries:
                    for method in methods:
                        res = simulate(
                            survey,
                            want,
                            method,
                            args.rounds,
                            args.batch,
                            config,
                            query=query,
                            like=like,
                        )
                        record[(set_name, start, user, query, method)] = res
                        cells = " ".join(
                            f"{x['auroc']:.3f}/{x['ap']:.2f}/{x['first100']:3d}" for x in res
                        )
                        print(f"{query:9s} {method:16s} {cells} | {res[r3]['logreg_auroc']:.3f}")
        # random labellers: measured on every anomaly, against the default on the same objects
        for query in queries:
            for method in [m for m in methods if m != "default"]:
                diffs = []
                for seed in range(args.seeds):
                    rng = np.random.default_rng(seed)
                    res = simulate(
                        survey, None, method, args.rounds, args.batch, config, rng, query=query
                    )
                    diffs.append([x["auroc"] - x["default_auroc"] for x in res])
                diffs = np.array(diffs)
                record[(set_name, "random", query, method)] = diffs.tolist()
                print(
                    f"random labels, {query:9s} {method:16s}: AUROC - default per round, mean "
                    + " ".join(f"{d:+.3f}" for d in diffs.mean(0))
                    + f"; worst |diff| {np.abs(diffs).max():.3f}"
                )
    if args.out:
        Path(args.out).write_text(json.dumps({"|".join(k): v for k, v in record.items()}))
    summary(record, r3)


if __name__ == "__main__":
    main()
