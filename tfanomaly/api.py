"""The Python API of tfanomaly, for notebooks and scripts; every name here is also an attribute of
``tfanomaly`` itself.

Importing it costs nothing: each name is imported from its home module when first used, and
TensorFlow only with a name that needs it (training, scoring, export).

- The stages, as the command line runs them, each with its options: ``simulate_survey``
  (``SurveyConfig``), ``ingest`` (``IngestConfig``), ``train_gan`` (``GanTrainConfig``),
  ``train_encoder`` (``EncoderTrainConfig``), ``calibrate`` (``CalibrateConfig``, with its
  ``ScoreSettings``), ``score`` (``ScoreConfig``, with its ``InversionConfig`` and
  ``CatalogConfig``), ``merge_results``, ``evaluate`` (``EvaluateConfig``), ``train_cae``
  (``CaeTrainConfig``), ``embed`` (``EmbedConfig``), ``build_report`` (``ReportConfig``),
  ``export`` (``ExportConfig``), ``rerank`` (``RelevanceConfig``), ``beam_score``
  (``BeamScoreConfig``), ``run_demo`` (``DemoConfig``). Every stage takes its inputs, then its
  config (None: the defaults), then keyword-only ``progress`` and ``echo`` where it reports.
- A trained run as a scorer of NumPy arrays: ``load_run`` (a :class:`Run`).
- Readers that give astropy Tables: ``read_cutouts``, ``read_catalog``, ``read_results``, and
  ``read_cube`` for the image cubes and feature vectors of a results file.
- Labels and re-ranking: ``LabelStore``, ``read_labels``, ``export_labels``, ``import_labels``,
  ``LABELS``, ``Ranker``, and ``example_columns`` (example cutouts from a file, scored as a
  catalog was, for ``Ranker.from_results(examples=...)``).
- The score names (``SCORES``), the simulated kinds (``KIND_NAMES``), and the errors a user can
  cause (``TfanomalyError`` and its subclasses ``InputError``, ``ConfigError``, ``DatasetError``).

Examples:
    A small simulated survey, read back, and a few labels that re-rank it (no TensorFlow here):

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import tfanomaly
    >>> folder = Path(tempfile.mkdtemp())
    >>> summary = tfanomaly.simulate_survey(folder / "survey.h5",
    ...     tfanomaly.SurveyConfig(n_objects=8, size=32, seed=1), progress=False)
    >>> summary["n_objects"]
    8
    >>> images, table = tfanomaly.read_cutouts(folder / "survey.h5")
    >>> images.shape
    (8, 32, 32, 3)
    >>> table.colnames[:4]
    ['idx', 'object_id', 'ra', 'dec']
    >>> with tfanomaly.LabelStore(folder / "labels.sqlite") as store:
    ...     _ = store.set(table["object_id"][0], label="interesting", note="a bridge?")
    ...     _ = store.set(table["object_id"][1], label="artifact")
    >>> labels = tfanomaly.read_labels(folder / "labels.sqlite")
    >>> sorted(labels.values())
    ['artifact', 'interesting']
    >>> features = images.reshape(8, -1)[:, :16]
    >>> ranker = tfanomaly.Ranker(table["object_id"], np.linspace(3, -3, 8), features)
    >>> order = ranker.order(labels)
    >>> len(order), sorted(order[-2:].tolist())  # the labelled objects come last
    (8, [0, 1])
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfanomaly._lazy import lazy_exports
from tfanomaly.errors import ConfigError, InputError

# Names this module exports from their home modules (imported on first use).
_HOMES = {
    # stages
    "simulate_survey": "tfanomaly.pipelines.simulate",
    "ingest": "tfanomaly.pipelines.ingest",
    "train_gan": "tfanomaly.pipelines.train",
    "train_encoder": "tfanomaly.pipelines.train",
    "calibrate": "tfanomaly.pipelines.calibrate",
    "score": "tfanomaly.pipelines.score",
    "merge_results": "tfanomaly.results.catalog",
    "evaluate": "tfanomaly.pipelines.evaluate",
    "train_cae": "tfanomaly.pipelines.characterise",
    "embed": "tfanomaly.pipelines.characterise",
    "build_report": "tfanomaly.results.report",
    "export": "tfanomaly.pipelines.export",
    "rerank": "tfanomaly.pipelines.rerank",
    "beam_score": "tfanomaly.pipelines.beam_score",
    "run_demo": "tfanomaly.pipelines.demo",
    # their options
    "SurveyConfig": "tfanomaly.simulate.config",
    "SimulateConfig": "tfanomaly.pipelines.config",
    "IngestConfig": "tfanomaly.pipelines.config",
    "GanTrainConfig": "tfanomaly.pipelines.config",
    "EncoderTrainConfig": "tfanomaly.pipelines.config",
    "CalibrateConfig": "tfanomaly.pipelines.config",
    "ScoreSettings": "tfanomaly.models.score_config",
    "ScoreConfig": "tfanomaly.pipelines.config",
    "InversionConfig": "tfanomaly.models.score_config",
    "CatalogConfig": "tfanomaly.pipelines.config",
    "EvaluateConfig": "tfanomaly.pipelines.config",
    "CaeTrainConfig": "tfanomaly.pipelines.config",
    "EmbedConfig": "tfanomaly.pipelines.config",
    "ReportConfig": "tfanomaly.pipelines.config",
    "ExportConfig": "tfanomaly.pipelines.config",
    "RerankConfig": "tfanomaly.pipelines.config",
    "RelevanceConfig": "tfanomaly.models.relevance",
    "BeamScoreConfig": "tfanomaly.pipelines.beam_score",
    "DemoConfig": "tfanomaly.pipelines.config",
    # results, labels, ranking
    "read_cube": "tfanomaly.results.catalog",
    "ResultsView": "tfanomaly.results.browse",
    "LabelStore": "tfanomaly.results.labels",
    "export_labels": "tfanomaly.results.labels",
    "import_labels": "tfanomaly.results.labels",
    "read_labels": "tfanomaly.pipelines.rerank",
    "LABELS": "tfanomaly.models.relevance",
    "Ranker": "tfanomaly.pipelines.rerank",
    "example_columns": "tfanomaly.pipelines.rerank",
    # vocabulary and errors
    "SCORES": "tfanomaly.models.scores",
    "KIND_NAMES": "tfanomaly.simulate.config",
    "TfanomalyError": "tfanomaly.errors",
    "InputError": "tfanomaly.errors",
    "ConfigError": "tfanomaly.errors",
    "DatasetError": "tfanomaly.errors",
}
__all__ = [*_HOMES, "Run", "load_run", "read_cutouts", "read_catalog", "read_results"]
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
del lazy_exports

# The batch the arrays given to Run.score are cut into (memory, not results: scores of an image
# do not depend on its batch neighbours).
SCORE_BATCH = 256


def _table(columns: dict, meta: dict | None = None):
    from astropy.table import Table

    return Table(columns, meta=meta or {})


class Run:
    """A trained run folder, ready to score arrays of raw flux in this process with the same
    in-graph scorer ``tfanomaly export`` saves for TF Serving (see :func:`load_run`).

    Attributes:
        path: the run folder.
        record: its ``run.json`` (model, data set, stages trained).
        image_shape: (H, W, C) of the cutouts the run takes.
        bands: the band names of the data set it was trained on.
        inversion: the ``InversionConfig`` scores are computed with.
        statistics: the sigma reference (mean and std of each raw score) of the reference catalog.
    """

    def __init__(self, path, *, scores=None, steps: int | None = None):
        from tfanomaly.pipelines.export import build_scorer

        self.path = Path(path)
        if not self.path.is_dir():
            raise ConfigError(f"{self.path}: no such run folder")
        self._scorer, made = build_scorer(self.path, scores_dir=scores, steps=steps)
        self.record = made["run"]
        self.image_shape = tuple(made["shape"])
        self.bands = tuple((self.record.get("data") or {}).get("bands") or ())
        self.inversion = made["inversion"]
        self.statistics = made["stats"]
        self.statistics_path = made["stats_path"]

    def __repr__(self) -> str:
        height, width, bands = self.image_shape
        return (
            f"Run('{self.path}', {height}x{width} px, {bands} band(s), "
            f"{self.inversion.steps} inversion step(s))"
        )

    def _checked(self, array, what: str, dtype=np.float32) -> np.ndarray:
        """``array`` as a (N, H, W, C) batch of this run's cutouts, else an InputError."""
        height, width, bands = self.image_shape
        array = np.asarray(array)
        if array.dtype.kind not in "fiu":
            raise InputError(f"{what}: expected numbers, got dtype {array.dtype}")
        if array.ndim == 3 and array.shape == self.image_shape:
            raise InputError(
                f"{what}: one cutout of shape {array.shape}; send a batch "
                f"(N, {height}, {width}, {bands}), e.g. {what}[None]"
            )
        if array.ndim != 4:
            raise InputError(
                f"{what}: expected a 4-D array (N, {height}, {width}, {bands}), "
                f"got shape {array.shape}"
            )
        if array.shape[3] != bands:
            names = f" ({', '.join(self.bands)})" if self.bands else ""
            raise InputError(
                f"{what}: the run takes {bands} band(s){names}, the array has "
                f"{array.shape[3]} (shape {array.shape}, bands last)"
            )
        if array.shape[1:3] != (height, width):
            raise InputError(
                f"{what}: the run takes {height}x{width} cutouts, got "
                f"{array.shape[1]}x{array.shape[2]} (resize them as `ingest "
                "--size` does, or score the ingested data set)"
            )
        return np.ascontiguousarray(array, dtype=dtype)

    def score(
        self,
        images,
        object_ids=None,
        *,
        variance=None,
        mask=None,
        fast: bool = False,
        batch_size: int = SCORE_BATCH,
    ):
        """Score cutouts of raw flux, as the ``score`` stage scores a data set of them.

        Args:
            images: (N, H, W, C) raw flux, bands last, as the survey delivers it (not stretched;
                non-finite pixels count as 0, as ``ingest`` fills them by default).
            object_ids: optional (N,) ids, copied into the table's ``object_id`` column.
            variance, mask: the flux variance (float) and the survey's int32 mask bits, both
                (N, H, W, C), for a run calibrated with them: the residual terms then use them,
                as the ``score`` stage does for a data set with planes. Without them: the
                calibrated scatter (what a served model computes by default).
            fast: the encoder's latent alone, no inversion steps (the ``score_fast`` signature).
            batch_size: images per call of the graph (memory only; no effect on the scores).

        Returns:
            An astropy Table, one row per image in the order given: ``index`` (the image's
            position in ``images``), ``object_id`` (if given), the catalog's sigma columns
            (``score_normalized``: the default score, its terms, and the paper's
            ``discriminator_score_normalized``, ``generator_score_normalized``,
            ``combined_score_normalized``), then the raw scores under their results keys
            (``scores``, ``disc_scores``, ``gen_scores``, ``anomaly_scores``, ...). Sigma
            values are against the run's reference catalog (``statistics``).
        """
        from tfanomaly.models.scores import SCORES

        images = self._checked(images, "images")
        n = len(images)
        if object_ids is not None:
            object_ids = np.asarray(object_ids)
            if object_ids.shape != (n,) or object_ids.dtype.kind not in "iu":
                raise InputError(
                    f"object_ids: expected {n} integer ids, got shape "
                    f"{object_ids.shape} of {object_ids.dtype}"
                )
        arrays = [images]
        if (variance is None) != (mask is None):
            raise ConfigError("give both variance and mask planes, or neither")
        if variance is not None:
            if not self._scorer.planes:
                raise ConfigError(
                    f"{self.path} was calibrated without variance and mask planes: score the "
                    "flux alone (or calibrate again on a data set with planes)"
                )
            if fast:
                raise ConfigError("fast scoring takes the flux alone; drop variance and mask")
            arrays += [
                self._checked(variance, "variance"),
                self._checked(mask, "mask", dtype=np.int32),
            ]
            function = self._scorer.score_planes
        else:
            function = self._scorer.score_fast if fast else self._scorer.score
        from tfanomaly.serving.saved_model import call_in_batches

        out = call_in_batches(function, batch_size, *arrays) if n else {}
        columns = {"index": np.arange(n, dtype=np.int64)}
        if object_ids is not None:
            columns["object_id"] = object_ids.astype(np.uint64)
        for s in SCORES:
            columns[s.catalog] = out.get(f"{s.output}_sigma", np.zeros(0)).astype(np.float64)
        for s in SCORES:
            columns[s.results] = out.get(s.output, np.zeros(0, np.float32))
        meta = {
            "run": str(self.path),
            "inversion_steps": 0 if fast else self.inversion.steps,
            "statistics": str(self.statistics_path),
        }
        return _table(columns, meta)

    def reconstruct(self, images, *, batch_size: int = SCORE_BATCH) -> dict[str, np.ndarray]:
        """The stretched images, their reconstructions G(z), the residuals |stretched - G(z)|
        (all (N, H, W, C)) and the latents z (N, latent_dim) of cutouts of raw flux, after the
        run's inversion: the ``reals``, ``reconstructed`` and ``residuals`` that ``score
        --store-images`` stores."""
        images = self._checked(images, "images")
        from tfanomaly.serving.saved_model import call_in_batches

        return call_in_batches(self._scorer.reconstruct, batch_size, images)


def load_run(path, *, scores=None, steps: int | None = None) -> Run:
    """A trained run folder (``train gan`` and ``train encoder`` done, hence calibrated), loaded
    to score NumPy arrays of raw flux with :meth:`Run.score`.

    Args:
        path: the run folder.
        scores: the folder of a catalog scored with this run (``score``'s output; default
            ``path/scores``): its ``score_stats.json`` is the sigma reference and names the
            inversion settings, so that the scores mean what the catalog's mean.
        steps: inversion steps instead of the catalog's (0: the encoder's latent alone).

    Raises:
        ConfigError: not a run folder, a network or the calibration missing, no scored catalog.

    Examples:
        >>> run = tfanomaly.load_run("run", scores="scores")  # doctest: +SKIP
        >>> images, table = tfanomaly.read_cutouts("new_cutouts.h5")  # doctest: +SKIP
        >>> scored = run.score(images, table["object_id"])  # doctest: +SKIP
        >>> scored.sort("score_normalized", reverse=True)  # doctest: +SKIP
    """
    return Run(path, scores=scores, steps=steps)


def read_cutouts(path, start: int = 0, stop: int | None = None, *, bands=None):
    """Cutouts ``start`` to ``stop`` of a survey file, as ``ingest`` reads it: an HDF5 file in the
    paper's layout (what ``simulate_survey`` writes), a .npy/.npz file or a folder of FITS files.

    Returns:
        ``(images, table)``: the raw flux (n, H, W, C) float32, bands last, and an astropy Table
        with ``idx``, ``object_id``, ``ra``, ``dec`` and, for labelled (simulated) surveys,
        ``label`` and ``kind``; ``table.meta`` names the bands.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import tfanomaly
        >>> path = Path(tempfile.mkdtemp()) / "survey.h5"
        >>> _ = tfanomaly.simulate_survey(path, tfanomaly.SurveyConfig(n_objects=6, size=32),
        ...                               progress=False)
        >>> images, table = tfanomaly.read_cutouts(path, 2, 5)
        >>> images.shape, len(table), table.meta["bands"]
        ((3, 32, 32, 3), 3, ['g', 'r', 'i'])
        >>> table["idx"].tolist()
        [2, 3, 4]
    """
    from tfanomaly.data.readers import open_source

    source = open_source(path, bands=bands)
    stop = source.count if stop is None else stop
    if not 0 <= start <= stop <= source.count:
        raise InputError(f"{path}: rows {start}-{stop} are not within its {source.count} cutouts")
    batch = source.read(start, stop)
    columns = {"idx": batch.idxs, "object_id": batch.object_ids, "ra": batch.ra, "dec": batch.dec}
    if (batch.labels >= 0).any():
        columns["label"] = batch.labels
        if source.kind_names:
            names = list(source.kind_names)
            columns["kind"] = [names[k] if 0 <= k < len(names) else "" for k in batch.labels]
    meta = {"path": str(path), "bands": list(source.bands)}
    return np.asarray(batch.images, dtype=np.float32), _table(columns, meta)


def read_catalog(path):
    """A scored catalog as an astropy Table, with exact uint64 object ids: a ``catalog.fits``,
    ``.csv`` or ``.parquet`` file, or a ``score`` output folder (its catalog, whichever format).

    The rows are in the catalog's order: the default score's sigma (``score_normalized``) from
    the highest, or ``rerank_rank`` order where the catalog was re-ranked, and the columns those
    ``score``, ``embed`` and ``rerank`` wrote (idx, object_id, ra, dec, the sigma of every score,
    n_masked, label and kind for simulated surveys, umap_x/umap_y/cluster, rerank_score/_rank).

    Examples:
        >>> catalog = tfanomaly.read_catalog("scores")  # doctest: +SKIP
        >>> catalog[:10]["object_id", "score_normalized"]  # doctest: +SKIP
    """
    from tfanomaly.pipelines.rerank import read_catalog as read_catalog_file
    from tfanomaly.results.catalog import CATALOG_FORMATS

    path = Path(path)
    if path.is_dir():
        found = [path / f"catalog{suffix}" for suffix in CATALOG_FORMATS]
        found = [p for p in found if p.exists()]
        if not found:
            raise InputError(f"{path}: no catalog.fits, .csv or .parquet; run `tfanomaly score`")
        path = found[0]
    elif not path.exists():
        raise InputError(f"{path}: no such catalog")
    return read_catalog_file(path)


def read_results(path):
    """The per-object columns of a results file (``results.h5``, or the ``score`` folder that holds
    it) as an astropy Table, one row per object in the file's order (the data set's): idxs,
    object_ids, ra, dec, labels (and ``kind``, for simulated surveys), n_masked, and every raw
    score under its results key (``scores``, ``gen_scores``, ``disc_scores``,
    ``anomaly_scores``, ...) with its sigma value (``scores_sigma``, ...). ``table.meta`` holds
    the file's attributes (run, data set, inversion settings).

    The image cubes and feature vectors stay in the file: ``read_cube(path, "residuals", rows)``
    reads rows of them (row = this table's row).

    Examples:
        >>> results = tfanomaly.read_results("scores")  # doctest: +SKIP
        >>> top = np.argsort(-results["scores_sigma"])[:5]  # doctest: +SKIP
        >>> residuals = tfanomaly.read_cube("scores", "residuals", top)  # doctest: +SKIP
    """
    from tfanomaly.results.catalog import COLUMN_KEYS, SCORE_KEYS, json_attr
    from tfanomaly.results.catalog import read_results as read_results_file

    columns, attrs = read_results_file(path)
    n = len(columns["object_ids"])
    first = [*COLUMN_KEYS, *(k for key in SCORE_KEYS for k in (key, f"{key}_sigma"))]
    order = [k for k in first if k in columns]
    order += sorted(k for k in columns if k not in order and np.shape(columns[k]) == (n,))
    table = {key: columns[key] for key in order}
    kind_names = json_attr(attrs.get("kind_names"))
    if "labels" in columns and kind_names and (columns["labels"] >= 0).any():
        table["kind"] = [
            kind_names[k] if 0 <= k < len(kind_names) else "" for k in columns["labels"]
        ]
    meta = {
        key: value.decode() if isinstance(value, bytes) else value for key, value in attrs.items()
    }
    return _table(table, meta)
