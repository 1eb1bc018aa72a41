"""Does the re-ranking learn what the astronomer wants? Scripted users on scored, labelled sets.

Each round the user labels the top ``--batch`` not-yet-labelled objects of the current ranking
truthfully (the kind they want -> interesting, another anomaly kind -> artifact, normal ->
normal), ``--rounds`` rounds. Users: one who wants every anomaly, one per kind who wants that
kind, and a random labeller (interesting / artifact / normal at random; measured against every
anomaly). After each round: AUROC and AP over the objects not yet labelled, and "first 100": the
targets among the first 100 objects the user has seen (those labelled, then the ranking's next).

Methods: ``default`` (the anomaly score, labels ignored), ``relevance`` (the nearest-label vote,
``models.relevance``), ``logreg`` (the issue's baseline: balanced logistic regression, C=1, on the
standardised feature_axes and every *_sigma column, labelled objects only; the default order while
one class only), ``knn`` (label propagation: the prior plus the kNN vote of the labels over the
default space), ``learned`` (``models.preference``: the gated classifier, the new default).

  python studies/discovery_users.py [--sets demo,colour,frames|name=RESULTS,...] [--rounds 5]
      [--seeds 5]
About 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import common
import numpy as np

from tfanomaly.models.preference import PreferenceConfig
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


class Survey:
    def __init__(self, folder, config):
        columns, attrs = read_results(folder, with_vectors=True)
        self.object_ids = columns["object_ids"]
        self.ranker = Ranker.from_results(folder, preference=config)
        self.kinds = np.asarray(columns["labels"])
        self.kind_names = json.loads(attrs["kind_names"])
        self.anomaly = np.asarray(columns["scores_sigma"], np.float64)
        self.prior = anomaly_prior(self.anomaly)
        sigma = np.stack(
            [np.asarray(columns[k], np.float64) for k in sorted(columns) if k.endswith("_sigma")],
            axis=1,
        )
        self.space = space_vectors(lambda k: columns[k], DEFAULT_SPACE)
        raw = np.concatenate([columns["feature_axes"], sigma], axis=1)
        self.logreg_x = (raw - raw.mean(0)) / np.where(raw.std(0) > 0, raw.std(0), 1)
        self.rel_space = ranking_space(self.anomaly, self.space, RelevanceConfig(), prepared=True)
        unit = self.space
        self.knn_unit = unit


def method_scores(name, survey: Survey, rows, targets, config: PreferenceConfig):
    prior = survey.prior
    if len(rows) == 0 or name == "default":
        return prior
    if name == "relevance":
        cfg = RelevanceConfig()
        return prior + cfg.weight * relevance(survey.rel_space, rows, targets, cfg)
    if name == "logreg":
        if len(np.unique(targets)) < 2:
            return prior
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
        model.fit(survey.logreg_x[rows], targets > 0)
        return model.decision_function(survey.logreg_x)
    if name == "knn":
        x = survey.knn_unit
        d2 = ((x[:, None, :] - x[rows][None, :, :]) ** 2).sum(-1)
        k = min(5, len(rows))
        near = np.argpartition(d2, k - 1, axis=1)[:, :k]
        w = 1.0 / (np.take_along_axis(d2, near, 1) + 1e-3)
        vote = (w * targets[near]).sum(1) / w.sum(1)
        return prior + 3.0 * vote
    if name == "learned":  # the shipped Ranker
        ids = survey.object_ids[rows]
        labels = {
            int(i): ("interesting" if t > 0 else "normal")
            for i, t in zip(ids, targets, strict=True)
        }
        return survey.ranker.scores(labels)
    raise ValueError(name)


def simulate(survey: Survey, want, method, rounds, batch, config, rng=None):
    """One scripted user: ``want`` is the set of wanted kinds (None: a random labeller)."""
    n = len(survey.prior)
    target = np.isin(survey.kinds, list(want)) if want is not None else survey.kinds > 0
    labelled, targets, out = [], [], []
    score = method_scores(method, survey, np.array([], int), np.array([]), config)
    for _ in range(rounds):
        mask = np.ones(n, bool)
        mask[labelled] = False
        order = np.flatnonzero(mask)[np.argsort(-score[mask], kind="stable")]
        shown = order[:batch]
        for r in shown:
            if want is None:
                t = float(rng.choice([1.0, -1.0, -1.0]))
            else:
                t = 1.0 if survey.kinds[r] in want else -1.0
            labelled.append(int(r))
            targets.append(t)
        rows, tg = np.array(labelled), np.array(targets)
        t0 = time.perf_counter()
        score = method_scores(method, survey, rows, tg, config)
        seconds = time.perf_counter() - t0
        mask = np.ones(n, bool)
        mask[rows] = False
        order = np.flatnonzero(mask)[np.argsort(-score[mask], kind="stable")]
        seen = np.concatenate([rows, order[: max(0, 100 - len(rows))]])[:100]
        out.append(
            {
                "auroc": auroc(score[mask], target[mask]),
                "ap": ap(score[mask], target[mask]),
                "default_auroc": auroc(survey.prior[mask], target[mask]),
                "first100": int(target[seen].sum()),
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


METHODS = ("default", "relevance", "logreg", "knn", "learned")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sets",
        default=",".join(SETS),
        help="names of SETS, or name=RESULTS_FOLDER pairs (comma-separated)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=5, help="random labellers per set")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--config", default="{}", help="PreferenceConfig fields as JSON")
    parser.add_argument("--out", default=None, help="write every figure as JSON here")
    args = parser.parse_args(argv)
    config = PreferenceConfig(**json.loads(args.config))
    methods = args.methods.split(",")
    print(common.machine())
    print(f"config: {config}")
    record = {}
    worst = {m: {} for m in methods}
    for set_name in args.sets.split(","):
        set_name, _, folder = set_name.partition("=")
        survey = Survey(folder or SETS[set_name], config)
        n_anom = int((survey.kinds > 0).sum())
        print(
            f"\n=== {set_name}: {len(survey.kinds)} objects, {n_anom} anomalies, "
            f"kinds {survey.kind_names[1:]}"
        )
        default_p100 = {}
        for user, want in users(survey):
            target = np.isin(survey.kinds, list(want))
            default_p100[user] = int(target[np.argsort(-survey.prior, kind="stable")[:100]].sum())
        for user, want in users(survey):
            print(
                f"-- user wants {user} ({int(np.isin(survey.kinds, list(want)).sum())} "
                f"targets; default first 100: {default_p100[user]})"
            )
            print(
                f"{'method':10s} "
                + " ".join(f"{'r' + str(r + 1):>17s}" for r in range(args.rounds))
            )
            for method in methods:
                res = simulate(survey, want, method, args.rounds, args.batch, config)
                record[(set_name, user, method)] = res
                cells = " ".join(f"{x['auroc']:.3f}/{x['ap']:.2f}/{x['first100']:3d}" for x in res)
                print(f"{method:10s} {cells}")
                r3 = res[min(2, len(res) - 1)]
                worst[method].setdefault(set_name, []).append(
                    (r3["auroc"], r3["first100"] / max(default_p100[user], 1), user)
                )
        # random labellers: measured on every anomaly, against the default on the same objects
        for method in [m for m in methods if m != "default"]:
            diffs = []
            for seed in range(args.seeds):
                res = simulate(
                    survey,
                    None,
                    method,
                    args.rounds,
                    args.batch,
                    config,
                    np.random.default_rng(seed),
                )
                diffs.append([x["auroc"] - x["default_auroc"] for x in res])
            diffs = np.array(diffs)
            record[(set_name, "random", method)] = diffs.tolist()
            print(
                f"random labels, {method:9s}: AUROC - default per round, mean "
                + " ".join(f"{d:+.3f}" for d in diffs.mean(0))
                + f"; worst |diff| {np.abs(diffs).max():.3f}"
            )
    print("\n=== after round 3: worst AUROC over users / worst first-100 gain over the default")
    for method in methods:
        cells = []
        for set_name, items in worst[method].items():
            a = min(i[0] for i in items)
            g = min(i[1] for i in items)
            cells.append(f"{set_name}: {a:.3f} / {g:.1f}x")
        print(f"{method:10s} " + "; ".join(cells))
    if args.out:
        Path(args.out).write_text(json.dumps({"|".join(k): v for k, v in record.items()}))


if __name__ == "__main__":
    main()
