"""The morphology term with a galaxy the survey holds more than once: copies (the same pixels,
flipped or turned by 90 degrees) have the same parameters up to float32 rounding, the fit keeps
one of each group, and the score leaves out every copy of the image, not only one."""

import numpy as np
import pytest

from tfanomaly.errors import ConfigError
from tfanomaly.models.calibration import KnnReference
from tfanomaly.models.morphology import constant_cutouts, morphology, term_columns
from tfanomaly.models.noise_score import COPY_DISTANCE, NoiseAwareScore
from tfanomaly.models.score_config import ScoreSettings
from tfanomaly.models.score_fit import first_copies, fit_morphology, knn_units, trimmed_rows

from .test_noise_score import four_term_calibration

SIZE, BANDS = 16, 3


def galaxies(n: int, seed: int = 0) -> np.ndarray:
    """(n, SIZE, SIZE, BANDS) noisy elliptical exponential discs of random size, shape, position
    angle, brightness and colour, a little off the centre."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2.0
    out = []
    for _ in range(n):
        angle, q, radius = rng.uniform(0, np.pi), rng.uniform(0.3, 1.0), rng.uniform(1.0, 3.0)
        dx, dy = x - rng.normal(0, 0.5), y - rng.normal(0, 0.5)
        u, v = dx * np.cos(angle) + dy * np.sin(angle), -dx * np.sin(angle) + dy * np.cos(angle)
        profile = rng.uniform(0.5, 5.0) * np.exp(-np.hypot(u, v / q) / radius)
        colours = rng.uniform(0.5, 1.5, BANDS)
        out.append(profile[..., None] * colours + rng.normal(0, 0.05, (SIZE, SIZE, BANDS)))
    return np.asarray(out, "f4")


def turned(images: np.ndarray) -> list[np.ndarray]:
    """The images flipped left-right, up-down and turned by 90, 180 and 270 degrees."""
    return [
        np.ascontiguousarray(t)
        for t in (
            images[:, :, ::-1],
            images[:, ::-1],
            np.rot90(images, 1, axes=(1, 2)),
            np.rot90(images, 2, axes=(1, 2)),
            np.rot90(images, 3, axes=(1, 2)),
        )
    ]


def scorer_for(
    features: np.ndarray, reference_size: int = 1000, k: int = 3, trim: float = 0.0
) -> tuple[NoiseAwareScore, int, int]:
    """The hand-made four-term scorer with the morphology numbers fitted on ``features`` (k
    neighbours; ``trim``: the reference's trim, by default every distinct cutout kept), the
    number of copies the fit left out and the number it trimmed."""
    c = four_term_calibration(size=SIZE, bands=BANDS)
    c.settings = ScoreSettings(
        **{
            **c.settings.to_dict(),
            "morphology_neighbours": k,
            "reference_size": reference_size,
            "reference_trim": trim,
        }
    )
    *numbers, copies, trimmed = fit_morphology(c.settings, features, np.random.default_rng(0))
    c.morphology = KnnReference(*numbers)
    return NoiseAwareScore(c), copies, trimmed


def test_flipped_and_turned_copies_have_the_same_parameters_up_to_rounding():
    images = galaxies(64)
    original = morphology(images).numpy()
    centre = np.median(original, axis=0)
    scale = 1.4826 * np.median(np.abs(original - centre), axis=0)
    for copy in turned(images):
        again = morphology(copy).numpy()
        np.testing.assert_allclose(again, original, rtol=2e-5, atol=2e-5)
        # In the standardised units of the term: far inside the copy distance.
        distance = np.linalg.norm((again - original) / scale, axis=1)
        assert distance.max() < COPY_DISTANCE / 10, distance.max()
    # Distinct galaxies are far outside it.
    standard = (original - centre) / scale
    gaps = np.linalg.norm(standard[:, None] - standard[None], axis=2) + np.eye(len(images)) * 1e9
    assert gaps.min() > 10 * COPY_DISTANCE


def test_first_copies_keeps_one_of_each_group():
    points = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 0.01], [5.0, 0.02], [0.0, 0.0], [9.0, 9.0]])
    assert first_copies(points).tolist() == [False, False, True, True, True, False]
    # A copy of a copy that is not itself near a kept point stays (chains do not spread).
    chain = np.array([[0.0], [0.02], [0.04]])
    assert first_copies(chain).tolist() == [False, True, False]


def test_duplicated_normals_give_the_term_of_the_set_without_them():
    """Every normal three times (itself and two turned copies) in the calibration set: the fit
    drops the copies, and a normal's term is what it is without them."""
    images = galaxies(120, seed=1)
    once = morphology(images).numpy()
    copies = [morphology(t).numpy() for t in turned(images)[:2]]
    thrice = np.concatenate([once, *copies])
    plain, dropped_none, _ = scorer_for(once)
    repeated, dropped, _ = scorer_for(thrice)
    assert (dropped_none, dropped) == (0, 2 * len(images))
    normals = images[:20]
    np.testing.assert_allclose(
        repeated.morphology_score(normals).numpy(),
        plain.morphology_score(normals).numpy(),
        rtol=1e-4,
        atol=1e-4,
    )
    # Without the fit's de-duplication (a reference with the copies, as a calibration made
    # before kept them), the image's own copies are still all left out at score time.
    with_copies = NoiseAwareScore(repeated_calibration(plain, thrice))
    no_copies = NoiseAwareScore(repeated_calibration(plain, np.concatenate([once, copies[0]])))
    got = with_copies.morphology_score(normals).numpy()
    # The nearest others: each galaxy is there three (resp. two) times, k = 3.
    assert np.all(got > 0)
    reference = plain.morphology_reference.numpy()
    standard = plain.morphology_features(normals).numpy()
    distances = np.linalg.norm(standard[:, None] - reference[None], axis=2)
    distances = np.sort(np.where(distances < COPY_DISTANCE, np.inf, distances), axis=1)
    np.testing.assert_allclose(got, distances[:, 0], rtol=1e-4, atol=1e-4)  # 3 copies of nearest
    np.testing.assert_allclose(
        no_copies.morphology_score(normals).numpy(),
        (2 * distances[:, 0] + distances[:, 1]) / 3,
        rtol=1e-4,
        atol=1e-4,
    )


def repeated_calibration(scorer: NoiseAwareScore, features: np.ndarray):
    """A calibration with ``scorer``'s centre and scale and every row of ``features`` in the
    reference (copies included)."""
    c = four_term_calibration(size=SIZE, bands=BANDS)
    c.settings = scorer.settings
    centre, scale = scorer.morphology_centre.numpy(), scorer.morphology_scale.numpy()
    features = features[:, term_columns(c.settings.morphology_parameters, features.shape[1])]
    reference = knn_units((features - centre) / scale, c.settings.morphology_units).astype("f4")
    c.morphology = KnnReference(centre, scale, reference)
    return c


def test_a_flipped_copy_of_a_reference_cutout_is_left_out_as_itself():
    images = galaxies(80, seed=2)
    scorer, *_ = scorer_for(morphology(images).numpy())
    members = images[:10]  # in the reference set (reference_size covers every cutout)
    expected = scorer.morphology_score(members).numpy()
    for copy in turned(members):
        np.testing.assert_allclose(
            scorer.morphology_score(copy).numpy(), expected, rtol=1e-4, atol=1e-4
        )


def test_a_constant_cutout_has_no_shape_and_the_distance_0():
    """Cutouts of one value in every pixel (0, a fill value) are constant; one pixel or one band
    apart from that they are not. The term gives a constant cutout 0: it is a copy of every other
    constant one, and would otherwise stand as far from the galaxies as its parameters' floor."""
    images = galaxies(60, seed=4)
    scorer, *_ = scorer_for(morphology(images).numpy())
    blanks = np.zeros((4, SIZE, SIZE, BANDS), "f4")
    blanks[1] = 7.5
    blanks[2, 3, 5, 1] = 1e-3  # one pixel of one band
    blanks[3, ..., 0] = 2.0  # one band brighter than the others
    assert constant_cutouts(blanks).numpy().tolist() == [True, True, False, False]
    assert not constant_cutouts(images).numpy().any()
    got = scorer.morphology_score(np.concatenate([blanks, images[:5]])).numpy()
    assert got[0] == got[1] == 0.0 and (got[2:] > 0).all()
    np.testing.assert_allclose(
        got[4:], scorer.morphology_score(images[:5]).numpy(), rtol=1e-6, atol=1e-6
    )


def test_a_calibration_set_of_one_distinct_cutout_is_refused_and_of_three_kept_once_each():
    features = morphology(galaxies(3, seed=3)).numpy()
    with pytest.raises(ConfigError, match=r"set has 1 \(and 3 copies;"):
        fit_morphology(
            ScoreSettings(), np.repeat(features[:1], 4, axis=0), np.random.default_rng(0)
        )
    # Fewer distinct cutouts than k + 1: all of them, once (calibrate then lowers k).
    *_, reference, copies, trimmed = fit_morphology(
        ScoreSettings(), np.concatenate([features] * 4), np.random.default_rng(0)
    )
    assert reference.shape[0] == 3 and copies == 9 and trimmed == 0


def test_the_reference_leaves_out_its_most_isolated_cutouts():
    """A tight cloud with a tenth of points far out, some of them a group of near-twins: the
    trim leaves out exactly the far ones (a group is isolated at k beyond its size), keeps the
    order and at least k + 1 rows, and leaves the set alone at 0."""
    rng = np.random.default_rng(5)
    cloud = rng.normal(0, 1, (270, 4))
    loners = rng.normal(0, 1, (20, 4)) + rng.choice([-12.0, 12.0], (20, 4))
    group = np.full((10, 4), 9.0) + rng.normal(0, 0.05, (10, 4))
    points = rng.permutation(np.concatenate([cloud, loners, group]))
    rows = trimmed_rows(points, k=12, fraction=0.1)
    kept = points[rows]
    assert len(kept) == 270 and np.all(np.abs(kept).max(axis=1) < 6)
    assert list(rows) == sorted(rows)
    # A group larger than k is its own neighbourhood: it stays where k is smaller than it.
    near_group = np.isclose(points[trimmed_rows(points, k=5, fraction=0.1)], 9.0, atol=0.5)
    assert near_group.all(1).any()
    assert list(trimmed_rows(points, k=12, fraction=0.0)) == list(range(len(points)))
    assert len(trimmed_rows(points[:10], k=12, fraction=0.5)) == 10
    assert len(trimmed_rows(points[:20], k=12, fraction=0.9)) == 13


def test_the_trimmed_reference_scores_a_group_of_similar_anomalies_as_outliers():
    """Anomalies of one kind in the calibration set (alike, off the galaxies in two parameters, 8
    with k = 10): in the untrimmed reference they are the neighbours of the anomalies scored
    later, which then look less odd; trimmed away, they leave those standing out."""
    columns = term_columns("shape", morphology(galaxies(1)).shape[1])
    galaxy_parameters = morphology(galaxies(400, seed=6)).numpy()
    centre, spread = np.median(galaxy_parameters, axis=0), galaxy_parameters.std(axis=0)
    rng = np.random.default_rng(7)

    def odd(n):  # one point 10 spreads off the galaxies, and a small scatter about it
        values = centre + rng.normal(0, 0.05, (n, len(centre))) * spread
        values[:, columns[:2]] += 10.0 * spread[columns[:2]]
        return values.astype("f4")

    calibration_set = np.concatenate([galaxy_parameters[:192], odd(8)])
    kept, _, none = scorer_for(calibration_set, k=10)
    trimmed, _, count = scorer_for(calibration_set, k=10, trim=0.1)
    assert (none, count) == (0, 20)
    fresh = {"odd": odd(20), "normal": galaxy_parameters[200:260]}
    blank = np.ones((1, SIZE, SIZE, BANDS), "f4")  # flux for the call, not a constant cutout
    blank[0, 0, 0, 0] = 2.0

    def separation(scorer):  # AUROC of the fresh anomalies against the fresh normals
        scores = {
            key: scorer.morphology_score(np.repeat(blank, len(values), 0), values).numpy()
            for key, values in fresh.items()
        }
        return (scores["odd"][:, None] > scores["normal"][None]).mean()

    got = separation(trimmed), separation(kept)
    assert got[0] > 0.95 and got[1] < 0.9, got  # (1.0, 0.8x)


def test_asinh_units_let_no_one_parameter_outweigh_a_shape_that_differs_in_several():
    """A neighbour's light moving one parameter 40 sigma off, against a shape 3 sigma off in
    eight: in the robust z the first is farther from the centre; in asinh units the second."""
    one, several = np.zeros(15), np.zeros(15)
    one[0], several[:8] = 40.0, 3.0
    clip = [np.linalg.norm(knn_units(z, "clip")) for z in (one, several)]
    asinh = [np.linalg.norm(knn_units(z, "asinh")) for z in (one, several)]
    assert clip[0] > clip[1] and asinh[0] < asinh[1], (clip, asinh)
    # Near the centre the two agree to first order; the clip at +-50 comes first.
    np.testing.assert_allclose(
        knn_units(np.array([1e-3, -1e-3]), "asinh"), [1e-3, -1e-3], rtol=1e-6
    )
    assert knn_units(np.array([1e6]), "asinh")[0] == pytest.approx(np.arcsinh(50.0))


def test_the_graph_reads_the_units_the_reference_was_fitted_in():
    images = galaxies(60, seed=3)
    parameters = morphology(images).numpy()
    for units in ("asinh", "clip"):
        c = four_term_calibration(size=SIZE, bands=BANDS)
        c.settings = ScoreSettings(**{**c.settings.to_dict(), "morphology_units": units})
        *numbers, _, _ = fit_morphology(c.settings, parameters, np.random.default_rng(0))
        c.morphology = KnnReference(*numbers)
        scorer = NoiseAwareScore(c)
        columns = term_columns(c.settings.morphology_parameters, parameters.shape[1])
        centre, scale = c.morphology.centre, c.morphology.scale
        expected = knn_units((parameters[:, columns] - centre) / scale, units)
        got = scorer.morphology_features(images, parameters).numpy()
        # float32 division and asinh: a few ulps of values up to asinh(50) ~ 4.6 (or 50)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        # The reference set is in the same units: no value beyond the clip's image.
        bound = np.arcsinh(50.0) if units == "asinh" else 50.0
        assert np.abs(c.morphology.reference).max() <= bound + 1e-5


def test_a_calibration_made_before_the_units_reads_the_robust_z_as_it_is():
    from tfanomaly.models.calibration import older_settings

    assert ScoreSettings().morphology_units == "asinh"
    assert older_settings({}).morphology_units == "clip"
    with pytest.raises(ConfigError, match="morphology units"):
        ScoreSettings(morphology_units="log").validate()
    # The residual-shape term's units came later: a calibration in asinh morphology units
    # made before them reads its descriptors' robust z as it is.
    assert ScoreSettings().residual_shape_units == "asinh"
    assert older_settings({"morphology_units": "asinh"}).residual_shape_units == "clip"
    with pytest.raises(ConfigError, match="residual-shape units"):
        ScoreSettings(residual_shape_units="log").validate()


def test_copies_are_judged_on_the_robust_z_where_the_distance_is_in_asinh_units():
    """Far out, asinh draws points together: a cutout 30 sigma off with a calibration cutout
    0.5 sigma beside it (a near twin, not a copy) is 0.017 from it in asinh units, within
    COPY_DISTANCE. The score judges copies on the robust z, as the fit does: the exact copy is
    left out, the near twin is the nearest neighbour."""
    images = galaxies(80, seed=4)
    scorer, *_ = scorer_for(morphology(images).numpy())
    assert scorer.settings.morphology_units == "asinh"
    c = repeated_calibration(scorer, morphology(images).numpy())
    far = images[:1]
    shift = np.zeros(c.morphology.centre.shape, "f4")
    shift[0] = 30.0
    c.morphology.centre = c.morphology.centre - shift * c.morphology.scale
    standard = NoiseAwareScore(c).morphology_standard(far).numpy()[0]
    rng = np.random.default_rng(0)
    rows = np.vstack([standard, standard + 0.5 * (shift > 0), rng.normal(size=(20, len(shift)))])
    c.morphology.reference = np.arcsinh(rows).astype("f4")
    points, reference = np.arcsinh(standard), np.arcsinh(rows.astype("f4").astype("f8"))
    distances = np.linalg.norm(reference - points, axis=1)
    assert distances[1] < COPY_DISTANCE < np.linalg.norm(rows[1] - standard)  # a twin in asinh
    expected = np.sort(distances[1:])[:3].mean()  # the copy (row 0) left out, the twin kept
    got = NoiseAwareScore(c).morphology_score(far).numpy()[0]
    # float32 parameters and asinh: ~1e-6 of distances of order 0.02-5
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-5)
    # Left out as a copy, the twin would leave the three rows ~4-5 away.
    assert np.sort(distances[2:])[:3].mean() - got > 1.0
