import json

import h5py
import numpy as np
import pytest
from astropy.io import fits
from conftest import BIG_ID, make_cutouts, write_h5

from tfanomaly.data import array_source as cutouts_module
from tfanomaly.data.dataset import PAPER_STRETCH, load_dataset
from tfanomaly.data.manifest import MANIFEST, STATE, read_manifest, verify
from tfanomaly.errors import ConfigError, DatasetError, InputError, UnreadableFileError
from tfanomaly.fileio import sha256_file
from tfanomaly.pipelines.config import IngestConfig
from tfanomaly.pipelines.ingest import ingest


def read_all(data_dir, stretch=None):
    """Every column of a data set, sorted by idx."""
    columns = {}
    for batch in load_dataset(data_dir, batch_size=7, stretch=stretch):
        for key, value in batch.items():
            columns.setdefault(key, []).append(value.numpy())
    columns = {k: np.concatenate(v) for k, v in columns.items()}
    order = np.argsort(columns["idx"])
    return {k: v[order] for k, v in columns.items()}


def test_hdf5_round_trip_is_exact(survey_h5, tmp_path):
    manifest = ingest(survey_h5, tmp_path / "ds", IngestConfig(shard_size=6), progress=False)
    assert manifest["count"] == 20 and manifest["shape"] == [16, 16, 3]
    assert manifest["bands"] == ["g", "r", "i"] and manifest["dtype"] == "float32"
    assert [s["count"] for s in manifest["shards"]] == [6, 6, 6, 2]
    assert manifest["label_counts"] == {"0": 7, "1": 7, "2": 6}
    got = read_all(tmp_path / "ds")
    with h5py.File(survey_h5) as f:
        np.testing.assert_array_equal(got["image"], f["images"][:])
        assert got["object_id"].dtype == np.uint64
        np.testing.assert_array_equal(got["object_id"], f["object_ids"][:])
        np.testing.assert_array_equal(got["idx"], f["idxs"][:])
        np.testing.assert_array_equal(got["ra"], f["ra"][:])
        np.testing.assert_array_equal(got["dec"], f["dec"][:])
        np.testing.assert_array_equal(got["label"], f["labels"][:])
    assert int(got["object_id"][0]) == BIG_ID  # above 2**53, unchanged
    for shard in manifest["shards"]:
        assert sha256_file(tmp_path / "ds" / shard["file"]) == shard["sha256"]
    assert verify(tmp_path / "ds") == []


def test_max_uint64_id_survives(tmp_path):
    ids = np.array([2**64 - 1, 2**53 + 1, 0], dtype=np.uint64)
    src = write_h5(tmp_path / "ids.h5", make_cutouts(3), object_ids=ids)
    ingest(src, tmp_path / "ds", progress=False)
    np.testing.assert_array_equal(np.sort(read_all(tmp_path / "ds")["object_id"]), np.sort(ids))


def test_hdf5_without_optional_columns(tmp_path):
    images = make_cutouts(5)
    with h5py.File(tmp_path / "bare.h5", "w") as f:
        f["images"] = images
    manifest = ingest(tmp_path / "bare.h5", tmp_path / "ds", progress=False)
    got = read_all(tmp_path / "ds")
    assert not manifest["has_labels"] and not manifest["has_sky_positions"]
    np.testing.assert_array_equal(got["object_id"], np.arange(5, dtype=np.uint64))
    assert np.isnan(got["ra"]).all() and (got["label"] == -1).all()
    np.testing.assert_array_equal(got["image"], images)


def test_numpy_inputs(tmp_path):
    images = make_cutouts(6, bands=1)
    np.save(tmp_path / "cutouts.npy", images)
    ids = np.arange(6, dtype=np.uint64) + np.uint64(BIG_ID)
    np.save(tmp_path / "ids.npy", ids)
    manifest = ingest(
        tmp_path / "cutouts.npy",
        tmp_path / "ds",
        object_ids_path=tmp_path / "ids.npy",
        bands=("i",),
        progress=False,
    )
    assert manifest["bands"] == ["i"] and manifest["shape"] == [16, 16, 1]
    got = read_all(tmp_path / "ds")
    np.testing.assert_array_equal(got["object_id"], ids)
    np.testing.assert_array_equal(got["image"], images)
    # A one-band survey goes through the stretch too: one channel in [0, 1].
    stretched = read_all(tmp_path / "ds", stretch=PAPER_STRETCH)
    assert stretched["image"].shape == (6, 16, 16, 1)
    assert 0 <= stretched["image"].min() and stretched["image"].max() <= 1

    np.savez(tmp_path / "paper.npz", images=make_cutouts(4), object_ids=ids[:4], idxs=np.arange(4))
    manifest = ingest(tmp_path / "paper.npz", tmp_path / "ds2", progress=False)
    assert manifest["count"] == 4


def write_fits_per_object(folder, images, ids, band_names=("g", "r", "i")):
    folder.mkdir()
    for image, object_id in zip(images, ids, strict=True):
        hdus = [fits.PrimaryHDU(header=fits.Header({"RA": 135.5, "DEC": 1.25}))]
        for k, band in enumerate(band_names):
            hdus.append(fits.ImageHDU(image[..., k], name=f"HSC-{band.upper()}"))
        fits.HDUList(hdus).writeto(folder / f"{object_id}.fits")


def write_fits_per_band(folder, images, ids, band_names=("g", "r", "i")):
    """The HSC cutout service's layout: PRIMARY, IMAGE, MASK, VARIANCE; a celestial WCS."""
    folder.mkdir()
    for image, object_id in zip(images, ids, strict=True):
        for k, band in enumerate(band_names):
            header = fits.Header()
            header.update(
                CTYPE1="RA---TAN",
                CTYPE2="DEC--TAN",
                CRVAL1=140.0,
                CRVAL2=-0.5,
                CRPIX1=(image.shape[1] + 1) / 2,
                CRPIX2=(image.shape[0] + 1) / 2,
                CDELT1=-0.168 / 3600,
                CDELT2=0.168 / 3600,
            )
            hdus = fits.HDUList(
                [
                    fits.PrimaryHDU(),
                    fits.ImageHDU(image[..., k], header=header, name="IMAGE"),
                    fits.ImageHDU(np.zeros(image.shape[:2], np.int32), name="MASK"),
                    fits.ImageHDU(np.ones(image.shape[:2], np.float32), name="VARIANCE"),
                ]
            )
            hdus.writeto(folder / f"{object_id}_{band}.fits")


@pytest.mark.parametrize("writer", [write_fits_per_object, write_fits_per_band])
def test_fits_folders(tmp_path, writer):
    images = make_cutouts(4)
    ids = [BIG_ID + 10, BIG_ID + 2, BIG_ID + 30, BIG_ID + 4]
    writer(tmp_path / "fits", images, ids)
    manifest = ingest(tmp_path / "fits", tmp_path / "ds", progress=False)
    assert manifest["count"] == 4 and manifest["shape"] == [16, 16, 3]
    got = read_all(tmp_path / "ds")
    order = np.argsort(np.array(ids, dtype=np.uint64))  # files are taken in id order
    np.testing.assert_array_equal(got["object_id"], np.array(ids, dtype=np.uint64)[order])
    np.testing.assert_array_equal(got["image"], images[order])
    expected_ra, expected_dec = (135.5, 1.25) if writer is write_fits_per_object else (140.0, -0.5)
    np.testing.assert_allclose(got["ra"], expected_ra, atol=1e-9)
    np.testing.assert_allclose(got["dec"], expected_dec, atol=1e-9)


def test_fits_missing_band_and_bad_name(tmp_path):
    write_fits_per_band(tmp_path / "fits", make_cutouts(2), [BIG_ID, BIG_ID + 1])
    (tmp_path / "fits" / f"{BIG_ID + 1}_r.fits").unlink()
    with pytest.raises(InputError, match=rf"object {BIG_ID + 1}: missing band\(s\) r"):
        ingest(tmp_path / "fits", tmp_path / "ds", progress=False)
    (tmp_path / "fits" / f"{BIG_ID + 1}_g.fits").rename(tmp_path / "fits" / "galaxy_g.fits")
    with pytest.raises(InputError, match="galaxy_g.fits: file name not understood"):
        ingest(tmp_path / "fits", tmp_path / "ds", progress=False)


def test_truncated_fits_names_file_and_object(tmp_path):
    write_fits_per_object(tmp_path / "fits", make_cutouts(3, size=64), [5, 6, 7])
    path = tmp_path / "fits" / "6.fits"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(UnreadableFileError, match=r"6\.fits: object 6"):
        ingest(tmp_path / "fits", tmp_path / "ds", progress=False)


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((4, 16, 16), np.float32), r"rank 3 .*expected \(N, H, W, C\)"),
        (np.zeros((4, 16, 16, 3, 2), np.float32), "rank 5"),
        (np.array([[[[b"a"]]]]), "non-numeric dtype"),
    ],
)
def test_bad_image_arrays(tmp_path, images, message):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["images"] = images
    with pytest.raises(InputError, match=f"bad.h5: .*{message}"):
        ingest(path, tmp_path / "ds", progress=False)


def test_band_count_mismatch(tmp_path, survey_h5):
    with pytest.raises(InputError, match="band count mismatch: the cutouts have 3 band"):
        ingest(survey_h5, tmp_path / "ds", bands=("g", "r"), progress=False)
    five = write_h5(tmp_path / "five.h5", make_cutouts(3, bands=5), bands="g,r,i")
    with pytest.raises(InputError, match="five.h5: band count mismatch"):
        ingest(five, tmp_path / "ds", progress=False)


def test_duplicate_ids_named(tmp_path):
    ids = np.array([BIG_ID, BIG_ID + 1, BIG_ID + 2, BIG_ID + 1], dtype=np.uint64)
    path = write_h5(tmp_path / "dup.h5", make_cutouts(4), object_ids=ids)
    with pytest.raises(
        InputError, match=rf"dup.h5: duplicate object id {BIG_ID + 1} at index 1 and 3"
    ):
        ingest(path, tmp_path / "ds", progress=False)


def test_length_mismatch(tmp_path):
    path = write_h5(tmp_path / "short.h5", make_cutouts(4), object_ids=np.arange(3))
    with pytest.raises(InputError, match="'object_ids' has 3 entries but 'images' has 4"):
        ingest(path, tmp_path / "ds", progress=False)


def test_unreadable_and_truncated_files(tmp_path, survey_h5):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"this is not HDF5" * 100)
    with pytest.raises(UnreadableFileError, match="garbage.h5: not a readable HDF5 file"):
        ingest(garbage, tmp_path / "ds", progress=False)
    big = write_h5(tmp_path / "big.h5", make_cutouts(200, size=32))
    data = big.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableFileError, match="truncated.h5"):
        ingest(truncated, tmp_path / "ds", progress=False)
    npy = tmp_path / "cut.npy"
    np.save(npy, make_cutouts(10))
    npy.write_bytes(npy.read_bytes()[:3000])
    with pytest.raises(UnreadableFileError, match="cut.npy: unreadable or truncated"):
        ingest(npy, tmp_path / "ds", progress=False)
    with pytest.raises(InputError, match="missing.h5: no such file"):
        ingest(tmp_path / "missing.h5", tmp_path / "ds", progress=False)
    with pytest.raises(InputError, match="unknown input format '.txt'"):
        (tmp_path / "x.txt").write_text("1")
        ingest(tmp_path / "x.txt", tmp_path / "ds", progress=False)


def nan_survey(tmp_path):
    images = make_cutouts(10)
    images[3, 2, 2, 0] = np.nan
    images[7, :2, 0, 1] = np.inf
    return write_h5(tmp_path / "nan.h5", images), images


def test_nan_policies(tmp_path):
    path, images = nan_survey(tmp_path)
    with pytest.raises(
        InputError, match=rf"nan.h5 object {BIG_ID + 9} \(index 3\): 1 NaN/inf pixel"
    ):
        ingest(path, tmp_path / "err", IngestConfig(nan_policy="error"), progress=False)
    assert not (tmp_path / "err" / MANIFEST).exists()

    manifest = ingest(path, tmp_path / "fill", IngestConfig(nan_policy="fill"), progress=False)
    nan = manifest["ingest"]["nan"]
    assert nan["objects_with_nonfinite"] == 2 and nan["pixels_filled"] == 3
    got = read_all(tmp_path / "fill")["image"]
    assert np.isfinite(got).all() and got[3, 2, 2, 0] == 0.0
    np.testing.assert_array_equal(got[0], images[0])

    manifest = ingest(path, tmp_path / "drop", IngestConfig(nan_policy="drop"), progress=False)
    assert manifest["count"] == 8
    assert manifest["ingest"]["nan"]["dropped_object_ids"] == [BIG_ID + 9, BIG_ID + 21]
    assert len(read_all(tmp_path / "drop")["image"]) == 8


def test_bad_config():
    with pytest.raises(ConfigError, match="unknown NaN policy 'zero'"):
        IngestConfig(nan_policy="zero").validate()
    with pytest.raises(ConfigError, match="shard size"):
        IngestConfig(shard_size=0).validate()


def test_interrupted_ingest_resumes(tmp_path, monkeypatch):
    path = write_h5(tmp_path / "s.h5", make_cutouts(50))
    config = IngestConfig(shard_size=10)
    reference = ingest(path, tmp_path / "reference", config, progress=False)

    real_read = cutouts_module.ArraySource.read
    calls = []

    def crash_on_third_shard(self, start, stop):
        calls.append(start)
        if start == 20:
            raise KeyboardInterrupt
        return real_read(self, start, stop)

    monkeypatch.setattr(cutouts_module.ArraySource, "read", crash_on_third_shard)
    out = tmp_path / "ds"
    with pytest.raises(KeyboardInterrupt):
        ingest(path, out, config, progress=False)
    assert not (out / MANIFEST).exists() and (out / STATE).exists()
    with pytest.raises(DatasetError, match="interrupted here: rerun it"):
        read_manifest(out)
    assert sorted(p.name for p in out.glob("cutouts-*")) == [
        "cutouts-00000-of-00005.tfrecord",
        "cutouts-00001-of-00005.tfrecord",
    ]  # no partial third shard lies around
    assert not list(out.glob(".*partial*"))
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("cutouts-*")}

    monkeypatch.setattr(cutouts_module.ArraySource, "read", real_read)
    calls.clear()
    resumed = ingest(path, out, config, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("cutouts-*")}.items() >= finished.items()
    assert resumed["shards"] == reference["shards"]  # same files, same checksums
    assert not (out / STATE).exists()


def test_rerun_and_overwrite(tmp_path, survey_h5):
    ingest(survey_h5, tmp_path / "ds", progress=False)
    with pytest.raises(DatasetError, match="already holds a complete data set"):
        ingest(survey_h5, tmp_path / "ds", progress=False)
    manifest = ingest(
        survey_h5, tmp_path / "ds", IngestConfig(shard_size=5), overwrite=True, progress=False
    )
    assert len(manifest["shards"]) == 4 and len(list((tmp_path / "ds").glob("cutouts-*"))) == 4
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty and not a tfanomaly data set"):
        ingest(survey_h5, tmp_path / "other", progress=False)


def test_changed_source_restarts_instead_of_resuming(tmp_path, monkeypatch):
    path = write_h5(tmp_path / "s.h5", make_cutouts(30))
    real_read = cutouts_module.ArraySource.read

    def crash(self, start, stop):
        if start == 10:
            raise KeyboardInterrupt
        return real_read(self, start, stop)

    monkeypatch.setattr(cutouts_module.ArraySource, "read", crash)
    with pytest.raises(KeyboardInterrupt):
        ingest(path, tmp_path / "ds", IngestConfig(shard_size=10), progress=False)
    monkeypatch.setattr(cutouts_module.ArraySource, "read", real_read)
    new_images = make_cutouts(30, seed=9)
    write_h5(path, new_images)
    ingest(path, tmp_path / "ds", IngestConfig(shard_size=10), progress=False)
    np.testing.assert_array_equal(read_all(tmp_path / "ds")["image"], new_images)


def test_corrupt_shard_detected(tmp_path, survey_h5):
    manifest = ingest(survey_h5, tmp_path / "ds", IngestConfig(shard_size=8), progress=False)
    shard = tmp_path / "ds" / manifest["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert verify(tmp_path / "ds") == [manifest["shards"][1]["file"]]
    assert json.loads((tmp_path / "ds" / MANIFEST).read_text())["count"] == 20


def test_fits_truncated_inside_the_data(tmp_path):
    write_fits_per_object(tmp_path / "fits", make_cutouts(2, size=64), [5, 6])
    path = tmp_path / "fits" / "6.fits"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 4000])  # cuts into the last band's pixels
    with pytest.raises(UnreadableFileError, match=r"6\.fits: object 6: unreadable or truncated"):
        ingest(tmp_path / "fits", tmp_path / "ds", progress=False)
