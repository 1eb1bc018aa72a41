"""The default score's terms checked on the calibration set: a constant, quantised or non-finite
term is found degenerate, weighs 0 and is left out of the score; a healthy calibration scores as
before; files written before the check load with every term healthy."""

import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import combined

from tfanomaly.errors import InputError
from tfanomaly.models.calibration import Calibration
from tfanomaly.models.noise_score import NoiseAwareScore
from tfanomaly.models.score_fit import robust_log_scale
from tfanomaly.models.term_health import (
    COLLAPSED_SPREAD,
    NOISE_MODEL_TERMS,
    TermHealth,
    check_term,
    check_terms,
    leave_out_noise_terms,
    noise_model_finding,
    tail_weights,
)

from .test_noise_score import four_term_calibration, shape_calibration

N = 2000


def continuous(seed=0, n=N):
    """A healthy term: log-normal values, as a chi^2 summary or a distance spreads."""
    return np.exp(np.random.default_rng(seed).normal(0.0, 0.5, n))


def three_valued(n=N, seed=1):
    """97% of the cutouts on three values (8-bit, zero-clipped residuals), the rest spread."""
    rng = np.random.default_rng(seed)
    values = rng.choice(np.float32([0.25, 0.5, 1.5]), n).astype(np.float64)
    spread = rng.random(n) < 0.03
    values[spread] = np.exp(rng.normal(0.0, 1.0, spread.sum()))
    return values


def test_a_continuous_term_is_healthy():
    health = check_term(continuous())
    assert health.healthy and health.reason == "" and health.count == N
    # Neighbours closer than the tie resolution (7.6e-6 in log) count as one value: a few.
    assert health.distinct_values > 0.98 * N and health.tied_fraction < 0.03
    assert health.log_spread == pytest.approx(0.5, rel=0.1)
    # float32 values of the same continuous term: still distinct at the tie resolution.
    assert check_term(continuous().astype(np.float32)).healthy
    # A small calibration set is not taken for quantised by its few values.
    assert check_term(continuous(n=20)).healthy


def test_a_constant_term_is_degenerate():
    health = check_term(np.full(N, 3.25, np.float32))
    assert (health.verdict, health.reason) == ("degenerate", "constant")
    assert health.distinct_values == 1
    assert health.message("linear") == (
        "term 'linear' left out of the default score: every calibration cutout gives the same value"
    )
    # Constant up to float32 rounding (another batch shape, another CPU): the same.
    drift = 3.25 * (1 + np.random.default_rng(2).normal(0, 1e-6, N))
    assert check_term(drift).reason == "constant"
    # Collapsed but not tied: the relative spread far under COLLAPSED_SPREAD.
    collapsed = 3.25 * (1 + np.random.default_rng(3).normal(0, 0.5 * COLLAPSED_SPREAD, N))
    health = check_term(collapsed)
    assert health.reason == "constant" and "hardly vary" in health.detail
    assert check_term(np.full(10, 2.0)).reason == "constant"  # however few cutouts


def test_a_three_valued_term_is_degenerate_with_the_message():
    health = check_term(three_valued())
    assert (health.verdict, health.reason) == ("degenerate", "quantised")
    assert health.levels == 3 and health.levels_share == pytest.approx(0.97, abs=0.01)
    assert health.tied_fraction > 0.95
    assert health.message("linear") == (
        "term 'linear' left out of the default score: 97% of calibration cutouts share 3 values "
        "(quantised images?)"
    )


def test_a_term_that_is_often_not_finite_is_degenerate():
    values = continuous()
    values[:300] = np.nan
    values[300:400] = 0.0  # no log either
    health = check_term(values)
    assert health.reason == "non_finite" and health.non_finite_fraction == pytest.approx(0.2)
    assert health.detail.startswith("20% of calibration cutouts give NaN, inf or a value <= 0")
    values = continuous()
    values[:50] = np.inf  # a few: healthy, and the robust z is fitted on the finite ones
    assert check_term(values).healthy
    assert robust_log_scale(values) == robust_log_scale(values[50:])
    assert check_term(np.full(5, np.nan)).reason == "non_finite"


def test_the_plane_path_is_checked_too():
    health = check_terms(
        {"feature": continuous(), "linear": continuous(4)},
        {"feature": continuous(5), "linear": three_valued()},
    )
    assert health["feature"].healthy
    assert health["linear"].reason == "quantised"
    assert health["linear"].detail.endswith("(quantised images?) on the plane path")


def with_health(c: Calibration, **reasons) -> Calibration:
    """``c`` with the terms ``reasons`` names degenerate (term=reason) and the others healthy."""
    c.health = {
        term: TermHealth("degenerate", reasons[term], f"{term} is {reasons[term]}")
        if term in reasons
        else TermHealth()
        for term in c.terms
    }
    return c


def inputs(seed=9):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (6, 16, 16, 3)).astype("f4")
    recon = np.clip(images + 0.05, 0, 1).astype("f4")
    features = np.random.default_rng(10).normal(size=(6, 12)).astype("f4")
    return images, recon, features, images


@pytest.mark.parametrize("combine", ["mean", "max", "softmax"])
def test_a_degenerate_term_weighs_0_and_is_left_out_of_the_score(combine):
    c = with_health(four_term_calibration(combine), linear="quantised", residual="constant")
    nominal = np.array([1.0, 0.5, 1.0, 1.5, 1.5]) / 5.5
    np.testing.assert_allclose(c.nominal_weights, nominal, rtol=1e-6)
    expected_weights = np.array([0.0, 0.5, 0.0, 1.5, 1.5]) / 3.5
    np.testing.assert_allclose(c.weights, expected_weights, rtol=1e-6)
    assert c.kept_terms == ("feature", "extended", "morphology")
    assert list(c.degenerate_terms()) == ["residual", "linear"]
    scorer = NoiseAwareScore(c)
    out = {k: v.numpy() for k, v in scorer(*inputs()).items()}
    terms = np.stack([out[f"{t}_score"] for t in c.terms], axis=1)
    z = (np.log(terms) - c.standard.centres) / c.standard.scales
    kept = z[:, [1, 3, 4]]
    # The max of the kept terms; the mean and softmax weigh the left-out ones 0.
    expected = kept.max(axis=1) if combine == "max" else combined(z, expected_weights, combine)
    np.testing.assert_allclose(out["score"], expected, rtol=1e-4, atol=1e-4)
    # A NaN in a left-out term does not reach the score (it is not weighed by 0, but dropped).
    nan = [tf.constant(t) for t in terms.T]
    nan[2] = tf.fill([6], np.nan)
    assert np.isfinite(scorer.combine(nan).numpy()).all()
    drift = 1e-4 / c.standard.scales.astype("f8")
    assert c.score_drift(1e-4) == pytest.approx(
        drift[[1, 3, 4]].max() if combine != "mean" else np.sum(expected_weights * drift), rel=1e-5
    )
    assert c.weights_record() == {
        "term_weights": dict(zip(c.terms, expected_weights.astype("f4").tolist(), strict=True)),
        "degenerate_terms": {"residual": "residual is constant", "linear": "linear is quantised"},
    }


def test_a_healthy_calibration_scores_bit_for_bit_as_without_the_check():
    before = four_term_calibration()
    after = with_health(four_term_calibration())
    np.testing.assert_array_equal(after.weights, before.weights)
    assert after.weights.dtype == np.float32
    old = {k: v.numpy() for k, v in NoiseAwareScore(before)(*inputs()).items()}
    new = {k: v.numpy() for k, v in NoiseAwareScore(after)(*inputs()).items()}
    for key in old:
        np.testing.assert_array_equal(new[key], old[key], err_msg=key)


def test_every_term_degenerate_is_one_clear_error(tmp_path):
    c = with_health(
        four_term_calibration(), **dict.fromkeys(("residual", "feature", "linear"), "constant")
    )
    c.health["extended"] = check_term(three_valued())
    c.health["morphology"] = check_term(np.full(100, np.nan))
    with pytest.raises(InputError) as caught:
        c.weights  # noqa: B018
    message = str(caught.value)
    assert message.startswith("no term of the default score carries information")
    assert "'linear': linear is constant" in message
    assert "'extended': 97% of calibration cutouts share 3 values" in message
    assert "'morphology': no calibration cutout gives a finite positive value" in message
    # A file with every term degenerate is refused when it loads.
    with_health(four_term_calibration()).save(tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz") as data:
        files = {k: data[k] for k in data.files}
    record = json.loads(str(files["health"]))
    for term in record:
        record[term].update(verdict="degenerate", reason="constant", detail="constant")
    files["health"] = json.dumps(record)
    np.savez(tmp_path / "bad.npz", **files)
    with pytest.raises(InputError, match="bad.npz: no term of the default score"):
        Calibration.load(tmp_path / "bad.npz")
    # A healthy term of weight 0 does not score a weighted mean either.
    c = with_health(four_term_calibration(), residual="constant", linear="constant")
    c.settings = type(c.settings)(
        **{
            **c.settings.to_dict(),
            "term_weights": [("feature", 0), ("extended", 0), ("morphology", 0)],
        }
    )
    with pytest.raises(InputError, match="no term of the default score"):
        c.weights  # noqa: B018


def test_the_health_round_trips_and_older_files_load_with_every_term_healthy(tmp_path):
    c = with_health(four_term_calibration(), linear="quantised")
    c.save(tmp_path / "c.npz")
    back = Calibration.load(tmp_path / "c.npz")
    assert back.health == c.health
    np.testing.assert_array_equal(back.weights, c.weights)
    with np.load(tmp_path / "c.npz") as data:
        files = {k: data[k] for k in data.files}
    stored = json.loads(str(files["health"]))
    assert stored["linear"]["verdict"] == "degenerate" and stored["linear"]["weight"] == 0.0
    assert stored["feature"]["weight"] == pytest.approx(0.5 / 4.5)
    # Written before the check: no health record, every term healthy, the nominal weights.
    del files["health"]
    np.savez(tmp_path / "old.npz", **files)
    old = Calibration.load(tmp_path / "old.npz")
    assert old.health == {} and old.kept_terms == old.terms and not old.degenerate_terms()
    np.testing.assert_array_equal(old.weights, old.nominal_weights)
    # A record with fields this version does not know still loads.
    stored["linear"]["later_statistic"] = 1.0
    files["health"] = json.dumps(stored)
    np.savez(tmp_path / "later.npz", **files)
    assert Calibration.load(tmp_path / "later.npz").health["linear"].reason == "quantised"


def test_tail_weights_favour_the_term_whose_outliers_stand_out():
    rng = np.random.default_rng(7)
    core = rng.normal(0.0, 0.5, N)
    tailed = core.copy()
    tailed[:60] += rng.uniform(2.0, 4.0, 60)  # 3% of the cutouts far above the core
    weights = tail_weights(
        {"feature": np.exp(core), "extended": np.exp(tailed), "linear": three_valued()}
    )
    assert weights["linear"] == 0.0  # degenerate
    assert weights["extended"] > weights["feature"] > 0
    assert sum(weights.values()) == pytest.approx(1.0)
    # Log-normal: (Q99 - median) / IQR of the log is 2.326 / 1.349 for every spread.
    alone = tail_weights({"a": np.exp(core), "b": np.exp(3 * core)})
    assert alone["a"] == pytest.approx(0.5, abs=0.03)
    with pytest.raises(InputError, match="no term of a has an upper tail"):
        tail_weights({"a": np.full(N, 2.0)})
    with pytest.raises(ValueError, match="quantile"):
        tail_weights({"a": np.exp(core)}, quantile=0.3)


def test_inspect_shows_a_runs_term_weights_and_the_terms_left_out(tmp_path):
    from click.testing import CliRunner

    from tfanomaly.cli import main

    def inspect(*args):
        return CliRunner().invoke(main, ["inspect", str(tmp_path), *args])

    (tmp_path / "run.json").write_text('{"model": {"name": "tiny16"}, "gan": {}, "encoder": {}}')
    result = inspect()
    assert result.exit_code == 0, result.output
    assert f"calibration: none (run `tfanomaly calibrate {tmp_path}`)" in result.output
    c = four_term_calibration()
    c.health = check_terms({t: continuous(k) for k, t in enumerate(c.terms)})
    c.health["linear"] = check_term(three_valued())
    c.save(tmp_path / "calibration.npz")
    result = inspect()
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{tmp_path}: run of tiny16 (gan, encoder)"
    assert lines[2] == (
        "default score: mean of the terms' robust z, weights residual 0.222, feature 0.111, "
        "linear 0 (set 0.182), extended 0.333, morphology 0.333"
    )
    assert lines[3] == (
        "term 'linear' left out of the default score: 97% of calibration cutouts share 3 values "
        "(quantised images?)"
    )
    k, count = c.settings.morphology_neighbours, len(c.morphology.reference)
    units = c.settings.morphology_units
    assert lines[-1] == (
        f"morphology term: {k}-NN over {count} reference cutouts (shape parameters, {units} units)"
    )
    c.info.update(morphology_copies=3, morphology_trimmed=40)
    c.save(tmp_path / "calibration.npz")
    assert inspect().output.splitlines()[-1] == (
        f"morphology term: {k}-NN over {count} reference cutouts (shape parameters, {units} "
        "units); left out: "
        "40 as the calibration set's own anomalies, 3 as copies"
    )
    summary = json.loads(inspect("--json").output)["calibration"]
    assert summary["morphology"] == {
        "neighbours": k,
        "parameters": "shape",
        "units": units,
        "reference": count,
        "copies": 3,
        "trimmed": 40,
    }
    assert summary["term_weights"]["linear"] == 0.0
    assert summary["nominal_weights"]["linear"] == pytest.approx(1 / 5.5)
    assert summary["health"]["linear"]["reason"] == "quantised"
    # Calibrated before the check: every term weighs as set, and the summary says so.
    c.health = {}
    c.save(tmp_path / "calibration.npz")
    result = inspect()
    assert "weights residual 0.182, feature 0.0909, linear 0.182" in result.output
    assert "term health: not recorded" in result.output
    result = inspect("--verify")
    assert result.exit_code == 1 and "--gallery and --verify are for data sets" in result.output
    # The residual-shape term's reference set, as the morphology term's.
    shaped = shape_calibration()
    shaped.info.update(residual_shape_copies=2, residual_shape_trimmed=4)
    shaped.save(tmp_path / "calibration.npz")
    shape_k, shape_count = (
        shaped.settings.morphology_neighbours,
        len(shaped.residual_shape.reference),
    )
    assert inspect().output.splitlines()[-1] == (
        f"residual-shape term: {shape_k}-NN over {shape_count} reference cutouts (asinh units); "
        "left out: 4 as the calibration set's own anomalies, 2 as copies"
    )
    summary = json.loads(inspect("--json").output)["calibration"]
    assert summary["residual_shape"] == {
        "neighbours": 3,
        "reference": 40,
        "copies": 2,
        "trimmed": 4,
        "units": "asinh",
    }
    assert summary["morphology"] is None


def health_record(step=0.0, levels=None, normalised=None):
    """A manifest's data health record of one band, as ingest writes it."""
    band = {"step": step, "levels": levels, "at_minimum": 0.5, "zero": 0.5, "clipped": True}
    return {"bands": {"r": band}, "normalised": normalised}


def test_the_noise_model_finding_reads_the_data_health():
    """Images scaled one by one, or a band in 8-bit steps: the noise-model terms have no survey
    noise to compare with; a clipped background alone, 16-bit steps or no record: they have."""
    assert noise_model_finding(None) == noise_model_finding({}) == ""
    assert noise_model_finding(health_record()) == ""  # clipped only (real frames)
    assert noise_model_finding(health_record(step=1.5e-5, levels=65536)) == ""  # 16 bits
    eight = noise_model_finding(health_record(step=1 / 255, levels=256))
    assert eight == "band r quantised to 8 bits"
    both = noise_model_finding(
        health_record(step=1 / 255, levels=256, normalised={"by": "max", "value": 1.0})
    )
    assert both.startswith("every image is scaled to the same max") and "8 bits" in both


def test_noise_model_terms_are_left_out_with_the_finding_and_the_rest_keeps_its_weight():
    terms = ("feature", "linear", "extended", "morphology")
    health = check_terms({t: continuous(seed) for seed, t in enumerate(terms)})
    assert leave_out_noise_terms(health, terms, "") == []
    marked = leave_out_noise_terms(health, terms, "band r quantised to 8 bits")
    assert marked == [t for t in terms if t in NOISE_MODEL_TERMS] == ["linear", "extended"]
    for term in marked:
        assert health[term].reason == "noise_model" and not health[term].healthy
        assert "8 bits" in health[term].message(term) and health[term].count == N
    assert health["feature"].healthy and health["morphology"].healthy
    # A term already degenerate for its own values keeps that reason.
    health["linear"] = check_term(three_valued())
    health["extended"] = check_term(continuous(7))
    leave_out_noise_terms(health, terms, "band r quantised to 8 bits")
    assert health["linear"].reason == "quantised" and health["extended"].reason == "noise_model"
