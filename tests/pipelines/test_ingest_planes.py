"""Ingest with variance and mask planes, ``--size``, ``--mask-bits`` and ``--stretch auto``, end to
end: input files written as a survey ships them, through ``ingest``, read back by ``load_dataset``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner
from conftest import make_cutouts, write_h5

from tfanomaly.data.dataset import dataset_stretch, fill_masked, load_dataset
from tfanomaly.data.manifest import MANIFEST, DatasetInfo
from tfanomaly.data.stretch import LuptonStretch, auto_stretch, sky_sigma
from tfanomaly.errors import InputError
from tfanomaly.pipelines.config import IngestConfig
from tfanomaly.pipelines.ingest import ingest

BITS = {"BAD": 0, "SAT": 1, "INTRP": 2, "CR": 3, "EDGE": 4, "DETECTED": 5, "NO_DATA": 8}


def read_all(data_dir, **kwargs):
    """Every column of a data set, sorted by idx."""
    columns = {}
    for batch in load_dataset(data_dir, batch_size=3, **kwargs):
        for key, value in batch.items():
            columns.setdefault(key, []).append(value.numpy())
    columns = {k: np.concatenate(v) for k, v in columns.items()}
    order = np.argsort(columns["idx"])
    return {k: v[order] for k, v in columns.items()}


def hsc_folder(folder, images, variances, masks, ids=None, bits=BITS):
    """Per-band HSC cutout-service files: PRIMARY, IMAGE, MASK (with MP_* cards), VARIANCE."""
    folder.mkdir()
    ids = ids if ids is not None else [1000 + k for k in range(len(images))]
    for k, object_id in enumerate(ids):
        for b, band in enumerate("gri"):
            mask_header = fits.Header()
            for name, bit in bits.items():
                mask_header[f"HIERARCH MP_{name}" if len(name) > 5 else f"MP_{name}"] = bit
            fits.HDUList(
                [
                    fits.PrimaryHDU(),
                    fits.ImageHDU(images[k, ..., b], name="IMAGE"),
                    fits.ImageHDU(masks[k, ..., b], header=mask_header, name="MASK"),
                    fits.ImageHDU(variances[k, ..., b], name="VARIANCE"),
                ]
            ).writeto(folder / f"{object_id}_{band}.fits")
    return folder


@pytest.fixture
def hsc(tmp_path):
    images = make_cutouts(5, size=16)
    variances = np.full(images.shape, 0.0025, np.float32) + 0.001 * np.abs(images)
    masks = np.zeros(images.shape, np.int32)
    masks[0, 7:9, 7:9, :] = (1 << 1) | (1 << 2)  # a saturated, interpolated core: SAT | INTRP
    masks[1, 3, 10, 2] = 1 << 3  # a cosmic ray in i
    masks[2, 2:5, 2:5, :] = 1 << 5  # DETECTED: not masked by default
    return hsc_folder(tmp_path / "hsc", images, variances, masks), images, variances, masks


def test_hsc_fits_folder_planes_end_to_end(hsc, tmp_path):
    folder, images, variances, masks = hsc
    manifest = ingest(folder, tmp_path / "ds", IngestConfig(shard_size=2), progress=False)
    mask_record = manifest["planes"]["mask"]
    assert manifest["features"][-2:] == ["variance", "mask"]
    assert mask_record["bits"] == {**BITS, "TFA_INVALID": 31}
    assert mask_record["masked"] == ["BAD", "SAT", "INTRP", "CR", "EDGE", "NO_DATA", "TFA_INVALID"]
    assert mask_record["masked_pixels"] == 4 * 3 + 1
    assert manifest["planes"]["variance"]["nonpositive_pixels"] == 0
    # The default stretch is fitted to the sky noise, with the masked pixels left out.
    stretch = manifest["stretch"]
    stored = read_all(tmp_path / "ds", stretch=None)
    assert stretch["mode"] == "auto" and stretch["sample_cutouts"] == len(images)
    expected = auto_stretch(sky_sigma(stored["image"], stored["mask"])).stretch
    assert stretch["stretch"] == pytest.approx(expected, rel=1e-9)
    assert stretch["stretch"] != pytest.approx(auto_stretch(sky_sigma(stored["image"])).stretch)
    info = DatasetInfo.from_folder(tmp_path / "ds")
    assert info.planes == ("variance", "mask") and info.stretch == LuptonStretch.from_config(
        stretch
    )
    paper = ingest(folder, tmp_path / "paper", IngestConfig(stretch="paper"), progress=False)
    assert paper["stretch"] == {"mode": "paper", "Q": 15.0, "stretch": 0.5, "minimum": 0.0}

    raw = read_all(tmp_path / "ds", stretch=None)
    expected_mask = (masks & 0b11111 & ~(1 << 5)) != 0
    np.testing.assert_array_equal(raw["mask"], expected_mask)
    assert raw["mask"].dtype == bool and raw["variance"].dtype == np.float32
    np.testing.assert_array_equal(raw["variance"], np.where(expected_mask, 0, variances))
    # Unmasked pixels keep their flux; masked ones get the mean of their unmasked neighbours.
    np.testing.assert_array_equal(raw["image"][~expected_mask], images[~expected_mask])
    filled = fill_masked(images, expected_mask).numpy()
    np.testing.assert_allclose(raw["image"], filled, rtol=1e-6)
    window, kept = images[0, 5:10, 5:10, 0], ~expected_mask[0, 5:10, 5:10, 0]
    assert raw["image"][0, 7, 7, 0] == pytest.approx(window[kept].mean(), rel=1e-5)
    unfilled = read_all(tmp_path / "ds", stretch=None, fill=False)
    np.testing.assert_array_equal(unfilled["image"], images)

    # Stretched: the variance goes through the stretch, mask and variance follow the channel
    # order of the stretched image (red to blue).
    stretched = read_all(tmp_path / "ds")
    np.testing.assert_array_equal(stretched["mask"], expected_mask[..., ::-1])
    expected_var = info.stretch.variance(filled, np.where(expected_mask, 0, variances))
    np.testing.assert_allclose(stretched["variance"], expected_var.numpy(), rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(stretched["image"], info.stretch(filled).numpy(), atol=2e-6)


def test_mask_bits_option(hsc, tmp_path):
    folder, _, _, masks = hsc
    config = IngestConfig(mask_bits="sat,DETECTED")  # a tuple of names works too
    manifest = ingest(folder, tmp_path / "ds", config, progress=False)
    assert manifest["planes"]["mask"]["masked"] == ["SAT", "DETECTED", "TFA_INVALID"]
    got = read_all(tmp_path / "ds", stretch=None)
    np.testing.assert_array_equal(got["mask"], (masks & 0b100010) != 0)
    with pytest.raises(
        InputError,
        match=r"hsc: unknown mask bit\(s\) SATURATED; this input "
        r"defines BAD,SAT,INTRP,CR,EDGE,DETECTED,NO_DATA$",
    ):
        ingest(folder, tmp_path / "ds2", IngestConfig(mask_bits=("SATURATED",)), progress=False)


def test_cli_mask_bits_and_summary(hsc, tmp_path):
    from tfanomaly.cli import main

    folder = hsc[0]
    bad = CliRunner().invoke(
        main, ["ingest", str(folder), str(tmp_path / "x"), "--quiet", "--mask-bits", "SAT,NOPE"]
    )
    assert bad.exit_code == 1
    assert bad.output.strip().splitlines() == [
        f"error: {folder}: unknown mask bit(s) NOPE; this input defines "
        "BAD,SAT,INTRP,CR,EDGE,DETECTED,NO_DATA"
    ]
    good = CliRunner().invoke(
        main,
        [
            "ingest",
            str(folder),
            str(tmp_path / "y"),
            "--quiet",
            "--size",
            "12",
            "--resize",
            "area",
            "--stretch",
            "auto",
        ],
    )
    assert good.exit_code == 0, good.output
    assert "planes: variance, mask; masked BAD,SAT,INTRP,CR,EDGE,NO_DATA,TFA_INVALID" in good.output
    assert "stretch auto: Q 15" in good.output and "(12, 12, 3)" in good.output


def test_bad_planes_get_one_clear_line(tmp_path):
    images = make_cutouts(2, size=16)
    good_var = np.ones(images.shape, np.float32)
    good_mask = np.zeros(images.shape, np.int32)
    hsc_folder(tmp_path / "shape", images, good_var[:, :8], good_mask)
    with pytest.raises(
        InputError,
        match=r"1000_g.fits: object 1000: variance plane has shape "
        r"\(8, 16\), the image \(16, 16\)",
    ):
        ingest(tmp_path / "shape", tmp_path / "ds", progress=False)
    hsc_folder(tmp_path / "float", images, good_var, good_mask.astype(np.float32))
    with pytest.raises(InputError, match="1000_g.fits: object 1000: mask plane has dtype float32"):
        ingest(tmp_path / "float", tmp_path / "ds", progress=False)
    # Arrays: the same checks, naming the file and the arrays.
    path = write_h5(tmp_path / "a.h5", images)
    import h5py

    with h5py.File(path, "a") as f:
        f["variances"] = good_var[..., :2]
        f["masks"] = good_mask
    with pytest.raises(InputError, match=r"a.h5: 'variances' has shape \(2, 16, 16, 2\) but"):
        ingest(path, tmp_path / "ds", progress=False)
    # No mask planes at all: --mask-bits is refused.
    with pytest.raises(InputError, match="--mask-bits given but the input has no mask planes"):
        ingest(
            write_h5(tmp_path / "b.h5", images),
            tmp_path / "ds",
            IngestConfig(mask_bits=("SAT",)),
            progress=False,
        )


def test_nonpositive_variances_are_masked_and_counted(tmp_path):
    images = make_cutouts(3, size=16)
    variances = np.full(images.shape, 0.01, np.float32)
    variances[0, 4, 4, 0] = 0.0
    variances[1, 5, 6, :] = -1.0
    variances[2, 0, 0, 1] = np.nan
    images[2, 9, 9, 2] = np.inf
    np.savez(tmp_path / "v.npz", images=images, variances=variances)  # variance, no mask
    manifest = ingest(tmp_path / "v.npz", tmp_path / "ds", progress=False)
    assert manifest["planes"]["variance"]["nonpositive_pixels"] == 5
    assert manifest["planes"]["mask"]["masked"] == ["TFA_INVALID"]  # a mask plane to carry them
    assert manifest["planes"]["mask"]["masked_pixels"] == 6
    assert manifest["ingest"]["nan"]["pixels_filled"] == 1
    got = read_all(tmp_path / "ds", stretch=None)
    bad = np.zeros(images.shape, bool)
    bad[0, 4, 4, 0] = bad[2, 0, 0, 1] = bad[2, 9, 9, 2] = True
    bad[1, 5, 6, :] = True
    np.testing.assert_array_equal(got["mask"], bad)
    assert (got["variance"][bad] == 0).all() and np.isfinite(got["image"]).all()
    # --nan drop leaves the cutout with the inf pixel out, planes and all.
    dropped = ingest(
        tmp_path / "v.npz", tmp_path / "drop", IngestConfig(nan_policy="drop"), progress=False
    )
    assert dropped["count"] == 2 and dropped["planes"]["variance"]["nonpositive_pixels"] == 5
    kept = read_all(tmp_path / "drop", stretch=None)
    np.testing.assert_array_equal(kept["mask"], bad[:2])
    np.testing.assert_array_equal(kept["variance"][~bad[:2]], variances[:2][~bad[:2]])


def test_size_crop_and_area(hsc, tmp_path):
    folder, images, variances, masks = hsc
    crop = ingest(folder, tmp_path / "crop", IngestConfig(size=10), progress=False)
    assert crop["shape"] == [10, 10, 3]
    assert crop["resize"] == {"size": 10, "method": "crop", "input_shape": [16, 16, 3]}
    got = read_all(tmp_path / "crop", stretch=None, fill=False)
    np.testing.assert_array_equal(got["image"], images[:, 3:13, 3:13])
    np.testing.assert_array_equal(
        got["variance"][~got["mask"]], variances[:, 3:13, 3:13][~got["mask"]]
    )
    area = ingest(folder, tmp_path / "area", IngestConfig(size=8, resize="area"), progress=False)
    assert area["shape"] == [8, 8, 3] and area["resize"]["method"] == "area"
    got = read_all(tmp_path / "area", stretch=None, fill=False)
    blocks = images.astype(np.float64).reshape(5, 8, 2, 8, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(got["image"], blocks, rtol=1e-6, atol=1e-8)
    block_var = variances.reshape(5, 8, 2, 8, 2, 3).sum(axis=(2, 4)) / 16
    np.testing.assert_allclose(got["variance"][~got["mask"]], block_var[~got["mask"]], rtol=1e-6)
    np.testing.assert_array_equal(got["mask"][0, 3:5, 3:5], True)  # the core's 2x2 block ORed
    assert got["mask"][0].sum() == 2 * 2 * 3  # rows and columns 7, 8 fall in blocks 3 and 4
    plain = ingest(
        write_h5(tmp_path / "p.h5", images), tmp_path / "p", IngestConfig(size=12), progress=False
    )
    assert plain["shape"] == [12, 12, 3] and plain["planes"] == {}
    assert set(read_all(tmp_path / "p")) == {"image", "object_id", "idx", "ra", "dec", "label"}


@pytest.mark.parametrize("scale", [0.01, 100.0])
def test_auto_stretch_does_not_depend_on_the_flux_unit(tmp_path, scale):
    rng = np.random.default_rng(3)
    images = make_cutouts(12, size=32) + rng.normal(0, 0.05, (12, 32, 32, 3)).astype(np.float32)
    variances = np.full(images.shape, 0.005, np.float32)
    np.savez(tmp_path / "unit.npz", images=images, variances=variances)
    np.savez(
        tmp_path / "scaled.npz",
        images=(images * np.float32(scale)).astype(np.float32),
        variances=(variances * np.float32(scale**2)).astype(np.float32),
    )
    config = IngestConfig(stretch="auto")
    unit = ingest(tmp_path / "unit.npz", tmp_path / "unit", config, progress=False)
    scaled = ingest(tmp_path / "scaled.npz", tmp_path / "scaled", config, progress=False)
    assert unit["stretch"]["mode"] == "auto" and unit["stretch"]["sample_cutouts"] == 12
    assert scaled["stretch"]["stretch"] == pytest.approx(unit["stretch"]["stretch"] * scale, 1e-6)
    for band, sigma in unit["stretch"]["sky_sigma"].items():
        assert scaled["stretch"]["sky_sigma"][band] == pytest.approx(sigma * scale, rel=1e-6)
    a, b = read_all(tmp_path / "unit"), read_all(tmp_path / "scaled")
    np.testing.assert_allclose(b["image"], a["image"], rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(b["variance"], a["variance"], rtol=1e-4, atol=1e-10)
    assert dataset_stretch(tmp_path / "scaled") == LuptonStretch.from_config(scaled["stretch"])
    # The exported model's graph stretches raw flux as the run's data set was stretched.
    from tfanomaly.pipelines.run import run_stretch

    assert run_stretch({"data": {"path": str(tmp_path / "scaled")}}) == dataset_stretch(
        tmp_path / "scaled"
    )
    assert run_stretch({"data": {"path": str(tmp_path / "gone")}}) == LuptonStretch()
    # The paper's fixed stretch does depend on it: that is what auto is for.
    paper = ingest(
        tmp_path / "scaled.npz", tmp_path / "paper", IngestConfig(stretch="paper"), progress=False
    )
    assert paper["stretch"]["mode"] == "paper"
    assert np.abs(read_all(tmp_path / "paper")["image"] - a["image"]).max() > 0.1


def test_data_sets_from_before_the_stretch_record_read_with_the_paper_stretch(tmp_path):
    ingest(write_h5(tmp_path / "s.h5", make_cutouts(4)), tmp_path / "ds", progress=False)
    path = tmp_path / "ds" / MANIFEST
    manifest = json.loads(path.read_text())
    for key in ("stretch", "planes", "resize"):
        del manifest[key]
    path.write_text(json.dumps(manifest))
    assert dataset_stretch(tmp_path / "ds") == LuptonStretch()
    got = read_all(tmp_path / "ds")
    assert set(got) == {"image", "object_id", "idx", "ra", "dec", "label"}


def test_simulated_survey_with_planes_ingests_with_them(tmp_path):
    from tfanomaly.pipelines.simulate import simulate_survey
    from tfanomaly.simulate.config import KIND_NAMES, SurveyConfig

    config = SurveyConfig(
        n_objects=9,
        size=16,
        anomaly_fraction=1.0,
        seed=2,
        planes=True,
        kinds=("diffraction_spikes", "cosmic_rays", "bad_column"),
    )
    simulate_survey(tmp_path / "s.h5", config, progress=False)
    manifest = ingest(tmp_path / "s.h5", tmp_path / "ds", progress=False)
    assert manifest["planes"]["mask"]["bits"]["SAT"] == 1 and manifest["planes"]["mask"]["masked"]
    got = read_all(tmp_path / "ds", stretch=None)
    for kind in ("diffraction_spikes", "cosmic_rays", "bad_column"):
        assert got["mask"][got["label"] == KIND_NAMES.index(kind)].any(), kind
    assert (got["variance"][~got["mask"]] > 0).all()


def test_stretch_batch_turns_a_raw_batch_into_the_stretched_one(hsc, tmp_path):
    from tfanomaly.data.dataset import stretch_batch

    ingest(hsc[0], tmp_path / "ds", progress=False)
    raw = next(iter(load_dataset(tmp_path / "ds", batch_size=5, stretch=None)))
    stretched = next(iter(load_dataset(tmp_path / "ds", batch_size=5)))
    converted = stretch_batch(raw, dataset_stretch(tmp_path / "ds"))
    for key in ("image", "variance", "mask"):
        np.testing.assert_allclose(
            converted[key].numpy(), stretched[key].numpy(), rtol=1e-5, atol=2e-6, err_msg=key
        )


def test_auto_stretch_falls_back_to_the_paper_stretch_when_there_is_no_noise(tmp_path):
    from tfanomaly.cli import main

    images = np.zeros((6, 16, 16, 3), np.float32)
    images[:, 6:10, 6:10] = 2.0  # noise-free squares on an empty sky
    np.save(tmp_path / "flat.npy", images)
    result = CliRunner().invoke(
        main, ["ingest", str(tmp_path / "flat.npy"), str(tmp_path / "ds"), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "measured no sky noise in any band of the first 6 cutouts" in result.output
    assert "flat.npy" in result.output and "the paper's stretch is used" in result.output
    record = json.loads((tmp_path / "ds" / MANIFEST).read_text())["stretch"]
    assert record["mode"] == "paper" and record["stretch"] == 0.5
    assert dataset_stretch(tmp_path / "ds") == LuptonStretch()
    shown = CliRunner().invoke(main, ["inspect", str(tmp_path / "ds")])
    assert (
        shown.exit_code == 0
        and "stretch paper: Lupton Q 15, stretch 0.5 (--stretch auto" in shown.output
    )
