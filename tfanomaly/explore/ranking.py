"""The explorer's ranking: the ``pipelines.rerank.Ranker`` of a results file in the feature space
the session asks for, or the nearest one the file has.
"""

from __future__ import annotations

import numpy as np

from tfanomaly.errors import InputError
from tfanomaly.pipelines.config import ExploreConfig
from tfanomaly.results.browse import ResultsView
from tfanomaly.results.spaces import available_spaces, check_space, space_vectors


def build_ranker(view: ResultsView, features: str = ExploreConfig.features, examples=None):
    """The ``pipelines.rerank.Ranker`` of a results file and a description of its feature space:
    the space ``features`` (``results.spaces``; else the first other space the file has), else
    PCA features of the residual images (the paper's files carry no vectors). ``examples``: the
    columns of example cutouts from a file (``pipelines.rerank.example_columns``), rows after the
    file's whose ids are the ranker's ``example_ids`` (a space of vectors is needed)."""
    from tfanomaly.models.preference import PreferenceConfig
    from tfanomaly.pipelines.rerank import Ranker, features_from_cubes, with_examples

    if not view.unique_ids:
        raise InputError("object ids are not unique in this file: re-ranking needs unique ids")
    have = available_spaces(view.vector_keys)
    space = features if features in have else next(iter(have), None)
    columns = {"object_ids": view.object_ids, **view.sigma}
    if space is not None:  # each block read from the file once
        columns.update({key: view.vectors(key) for key in check_space(space)})
    example_ids: list[int] = []
    if examples:
        if space is None:
            raise InputError("example cutouts need a results file with feature vectors")
        columns, example_ids = with_examples(columns, examples)
    terms = {
        key: np.nan_to_num(columns[key], nan=0.0, posinf=0.0, neginf=0.0) for key in view.sigma
    }
    anomaly = terms[view.sort_key]
    if space is not None:
        vectors = space_vectors(lambda key: columns[key], space)
        blocks = [(key, columns[key].shape[1]) for key in check_space(space)]
        ranker = Ranker(
            columns["object_ids"],
            anomaly,
            vectors,
            prepared=True,
            terms=terms,
            blocks=blocks,
            preference=PreferenceConfig(),
        )
        ranker.example_ids = example_ids
        return ranker, space
    if view.has_images:
        vectors = features_from_cubes(view.file, cube="residuals")
        return Ranker(view.object_ids, anomaly, vectors, terms=terms), "PCA of residuals"
    raise InputError(
        "no feature vectors and no image cubes in this file: re-ranking and "
        "'more like this' need one of them"
    )
