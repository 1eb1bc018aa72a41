"""The one vocabulary of scores: the inverter outputs every score the table names, and the results
file, its sigma values and the catalog columns are all derived from the same table."""

import numpy as np

from tfanomaly.models.config import get_preset
from tfanomaly.models.critic import Critic
from tfanomaly.models.encoder import Encoder
from tfanomaly.models.generator import Generator
from tfanomaly.models.inverter import LatentInverter
from tfanomaly.models.scores import BY_OUTPUT, SCORES
from tfanomaly.results.catalog import CATALOG_COLUMNS, SCORE_KEYS, SCORE_OUTPUTS


def test_the_paper_keeps_its_names_and_each_name_is_used_once():
    by_results = {s.results: s for s in SCORES}
    assert by_results["anomaly_scores"].catalog == "combined_score_normalized"
    assert by_results["gen_scores"].catalog == "generator_score_normalized"
    assert by_results["disc_scores"].catalog == "discriminator_score_normalized"
    for field in ("output", "results", "catalog"):
        names = [getattr(s, field) for s in SCORES]
        assert len(set(names)) == len(names), field
    assert SCORE_KEYS == tuple(s.results for s in SCORES)
    assert SCORE_OUTPUTS == {s.output: s.results for s in SCORES}
    assert CATALOG_COLUMNS == {s.catalog: f"{s.results}_sigma" for s in SCORES}
    assert set(BY_OUTPUT) == set(SCORE_OUTPUTS)


def test_the_paper_scores_come_out_of_the_inverter_under_the_table_names():
    config = get_preset("tiny16")
    inverter = LatentInverter(Generator(config), Critic(config), Encoder(config))
    images = np.random.default_rng(0).random((2, 16, 16, 3)).astype("f4")
    out = inverter(images)
    # Without a calibration the default score and its terms are absent; the paper's are there.
    paper = {
        s.output for s in SCORES if s.results in ("anomaly_scores", "gen_scores", "disc_scores")
    }
    assert paper <= set(out) and all(out[name].shape == (2,) for name in paper)
    assert not ({s.output for s in SCORES} - paper) & set(out)
