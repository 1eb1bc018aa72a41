"""The reader layer itself (tfanomaly.data.readers, .sources, .array_source, .fits_source): what
each source returns and how it refuses bad input. The end-to-end path through ``ingest`` is tested
in tests/pipelines/test_ingest.py."""

from __future__ import annotations

import os
import re

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from conftest import BIG_ID, make_cutouts, write_h5

from tfanomaly.data.array_source import ArraySource
from tfanomaly.data.fits_source import FitsFolderSource
from tfanomaly.data.readers import open_source
from tfanomaly.data.sources import CutoutBatch, check_unique_ids, default_bands
from tfanomaly.errors import InputError, UnreadableFileError

ABOVE_2_63 = 2**63 + 7  # needs all 64 bits: an int64 or float64 would change it


def tan_header(crval=(140.0, -0.5), crpix=(3.0, 5.0), scale=0.168 / 3600):
    """A celestial TAN WCS whose reference pixel is off the cutout's centre."""
    header = fits.Header()
    header.update(
        CTYPE1="RA---TAN",
        CTYPE2="DEC--TAN",
        CRVAL1=crval[0],
        CRVAL2=crval[1],
        CRPIX1=crpix[0],
        CRPIX2=crpix[1],
        CDELT1=-scale,
        CDELT2=scale,
    )
    return header


def centre_of(header, shape):
    """astropy's own sky position of the cutout's centre pixel (0-based (W-1)/2, (H-1)/2)."""
    world = WCS(header).pixel_to_world((shape[1] - 1) / 2, (shape[0] - 1) / 2)
    return world.ra.deg, world.dec.deg


def write_per_band(folder, images, ids, bands=("g", "r", "i"), header=None, suffix=".fits"):
    """The HSC cutout service's layout: PRIMARY, IMAGE, MASK, VARIANCE per band file."""
    folder.mkdir(exist_ok=True)
    for image, object_id in zip(images, ids, strict=True):
        for k, band in enumerate(bands):
            plane = image[..., k]
            fits.HDUList(
                [
                    fits.PrimaryHDU(),
                    fits.ImageHDU(plane, header=header, name="IMAGE"),
                    fits.ImageHDU(np.full(plane.shape, 7, np.int32), name="MASK"),
                    fits.ImageHDU(np.full(plane.shape, 99.0, np.float32), name="VARIANCE"),
                ]
            ).writeto(folder / f"{object_id}_{band}{suffix}")


def write_per_object(folder, images, ids, hdu_bands=("g", "r", "i"), primary=None, by="EXTNAME"):
    """One multi-extension file per object; ``hdu_bands`` gives the order of the band HDUs in
    the file, named by EXTNAME (``HSC-G``) or by the FILTER keyword."""
    folder.mkdir(exist_ok=True)
    canonical = ("g", "r", "i")
    for image, object_id in zip(images, ids, strict=True):
        hdus = [fits.PrimaryHDU(header=primary)]
        for band in hdu_bands:
            plane = image[..., canonical.index(band)]
            if by == "EXTNAME":
                hdus.append(fits.ImageHDU(plane, name=f"HSC-{band.upper()}"))
            else:
                hdus.append(fits.ImageHDU(plane, header=fits.Header({"FILTER": band})))
        fits.HDUList(hdus).writeto(folder / f"{object_id}.fits")


# ---- small helpers ------------------------------------------------------------------------------


def test_default_bands():
    assert default_bands(3) == ("g", "r", "i")
    assert default_bands(1) == ("band0",)
    assert default_bands(5) == ("band0", "band1", "band2", "band3", "band4")


def test_check_unique_ids_names_the_id_and_both_indices():
    check_unique_ids(np.array([3, 1, 2], dtype=np.uint64), "ok.h5")  # no error
    ids = np.array([BIG_ID, ABOVE_2_63, BIG_ID + 1, 5, ABOVE_2_63, 5], dtype=np.uint64)
    with pytest.raises(InputError) as info:
        check_unique_ids(ids, "dup.h5")
    # The smallest duplicated id is reported first: 5, at positions 3 and 5; two pairs in all.
    assert (
        str(info.value) == "dup.h5: duplicate object id 5 at index 3 and 5 (2 duplicate(s) in all)"
    )
    ids = np.array([7, ABOVE_2_63, 8, ABOVE_2_63], dtype=np.uint64)
    with pytest.raises(InputError, match=rf"x: duplicate object id {ABOVE_2_63} at index 1 and 3 "):
        check_unique_ids(ids, "x")  # an id above 2**63 printed exactly


def test_cutout_batch_len():
    batch = CutoutBatch(4, np.zeros((3, 2, 2, 1), np.float32), *(np.zeros(3) for _ in range(5)))
    assert len(batch) == 3 and batch.origins == []


# ---- HDF5 ---------------------------------------------------------------------------------------


def test_hdf5_source_reads_every_column_exactly(tmp_path):
    images = make_cutouts(6)
    ids = np.array([ABOVE_2_63, 2**64 - 1, BIG_ID, 0, 2**53 + 1, 12], dtype=np.uint64)
    path = write_h5(
        tmp_path / "s.h5",
        images,
        object_ids=ids,
        labels=np.array([0, 1, 2, 0, 1, 2]),
        kind_names='["normal", "ring", "merger"]',
    )
    source = open_source(path)
    assert isinstance(source, ArraySource)
    assert (source.count, source.shape, source.bands) == (6, (16, 16, 3), ("g", "r", "i"))
    assert source.kind_names == ["normal", "ring", "merger"]
    assert source.object_ids().dtype == np.uint64
    assert [int(i) for i in source.object_ids()] == [int(i) for i in ids]  # all 64 bits kept
    batch = source.read(0, 6)
    assert batch.images.dtype == np.float32 and batch.images.shape == (6, 16, 16, 3)
    np.testing.assert_array_equal(batch.images, images)
    assert batch.object_ids.dtype == np.uint64 and batch.idxs.dtype == np.int64
    assert batch.ra.dtype == np.float64 and batch.labels.dtype == np.int64
    np.testing.assert_array_equal(batch.idxs, np.arange(100, 106))
    with h5py.File(path) as f:
        np.testing.assert_array_equal(batch.ra, f["ra"][:])  # float64, not rounded to float32
        np.testing.assert_array_equal(batch.dec, f["dec"][:])
    np.testing.assert_array_equal(batch.labels, [0, 1, 2, 0, 1, 2])
    assert batch.origins[1] == f"{path} object {2**64 - 1} (index 1)"


def test_read_a_slice(tmp_path):
    images = make_cutouts(10)
    path = write_h5(tmp_path / "s.h5", images)
    batch = open_source(path).read(3, 7)
    assert batch.start == 3 and len(batch) == 4
    np.testing.assert_array_equal(batch.images, images[3:7])
    expected_ids = np.uint64(BIG_ID) + np.arange(3, 7, dtype=np.uint64) * np.uint64(3)
    np.testing.assert_array_equal(batch.object_ids, expected_ids)
    np.testing.assert_array_equal(batch.idxs, np.arange(103, 107))
    assert batch.origins[0] == f"{path} object {BIG_ID + 9} (index 3)"


def test_hdf5_without_optional_columns_fills_them(tmp_path):
    images = make_cutouts(5, bands=2).astype(np.float64)  # float64 flux comes back float32
    with h5py.File(tmp_path / "bare.h5", "w") as f:
        f["images"] = images
    source = open_source(tmp_path / "bare.h5")
    assert source.bands == ("band0", "band1") and source.kind_names is None
    batch = source.read(2, 5)
    assert batch.images.dtype == np.float32
    np.testing.assert_array_equal(batch.images, images[2:5].astype(np.float32))
    np.testing.assert_array_equal(batch.object_ids, np.array([2, 3, 4], np.uint64))
    np.testing.assert_array_equal(batch.idxs, [2, 3, 4])  # the position in the file
    assert np.isnan(batch.ra).all() and np.isnan(batch.dec).all()
    np.testing.assert_array_equal(batch.labels, [-1, -1, -1])


@pytest.mark.parametrize(
    "attr",
    ["i,r,g", "i, r, g", '["i", "r", "g"]', ["i", "r", "g"], np.array([b"i", b"r", b"g"])],
    ids=["text", "spaced", "json", "list", "bytes"],
)
def test_hdf5_band_names_from_the_file(tmp_path, attr):
    path = write_h5(tmp_path / "s.h5", make_cutouts(2), bands=attr)
    assert open_source(path).bands == ("i", "r", "g")
    assert open_source(path, bands=["u", "v", "w"]).bands == ("u", "v", "w")  # given names win


def test_hdf5_bands_attribute_that_is_broken_json(tmp_path):
    path = write_h5(tmp_path / "s.h5", make_cutouts(2), bands='["i", "r", "g"')
    with pytest.raises(InputError, match="s.h5: attribute 'bands' is not a JSON list"):
        open_source(path)


def test_band_count_mismatch(tmp_path):
    path = write_h5(tmp_path / "s.h5", make_cutouts(2, bands=3))
    with pytest.raises(InputError) as info:
        open_source(path, bands=("g", "r"))
    assert str(info.value) == (
        f"{path}: band count mismatch: the cutouts have 3 band(s) but 2 band name(s) were given "
        "(g,r)"
    )


def test_integer_and_float_ids(tmp_path):
    path = write_h5(tmp_path / "i.h5", make_cutouts(2), object_ids=[1, 2])
    with h5py.File(path, "a") as f:  # signed ids, as many catalogs store them
        del f["object_ids"]
        f["object_ids"] = np.array([BIG_ID, 2**62], np.int64)
    assert [int(i) for i in open_source(path).object_ids()] == [BIG_ID, 2**62]
    with h5py.File(path, "a") as f:
        f["object_ids"][0] = -4
    with pytest.raises(InputError, match=r"i\.h5: object_ids\[0\] = -4 is negative"):
        open_source(path)
    with h5py.File(path, "a") as f:
        del f["object_ids"]
        f["object_ids"] = np.array([3.0, 2.5])
    with pytest.raises(InputError, match="object_ids are floats that are not whole"):
        open_source(path)
    with h5py.File(path, "a") as f:  # the paper's files: ids as float64, rounded above 2**53
        del f["object_ids"]
        f["object_ids"] = np.array([float(2**60), 7.0])
    with pytest.warns(UserWarning, match="stored as float64 above 9007199254740992"):
        ids = open_source(path).object_ids()
    assert ids.dtype == np.uint64 and [int(i) for i in ids] == [2**60, 7]
    with h5py.File(path, "a") as f:
        del f["object_ids"]
        f["object_ids"] = np.array([b"a", b"b"])
    with pytest.raises(InputError, match=r"object_ids have dtype \|S1, expected unsigned integers"):
        open_source(path)


@pytest.mark.parametrize(
    "images, message",
    [
        (
            np.zeros((4, 16, 16), np.float32),
            r"rank 3 with shape \(4, 16, 16\); expected "
            r"\(N, H, W, C\) \(add a band axis: images\[\.\.\., None\]\)",
        ),
        (np.zeros((16, 16), np.float32), r"rank 2 with shape \(16, 16\); expected \(N, H, W, C\)$"),
        (np.zeros((4, 16, 16, 1), bool), "non-numeric dtype bool"),
        (np.zeros((4, 16, 16, 1), np.complex64), "non-numeric dtype complex64"),
        (np.zeros((0, 16, 16, 3), np.float32), "holds no cutouts"),
        (np.zeros((2, 1, 16, 3), np.float32), r"shape \(2, 1, 16, 3\): empty cutouts"),
    ],
)
def test_bad_image_arrays(tmp_path, images, message):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["images"] = images
    with pytest.raises(InputError, match=f"^{re.escape(str(path))}: 'images' .*{message}"):
        open_source(path)


def test_no_images_array(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["pixels"] = np.zeros((2, 4, 4, 1))
        f["object_ids"] = np.arange(2)
    with pytest.raises(InputError, match=r"x\.h5: no 'images' array \(found: object_ids, pixels\)"):
        open_source(tmp_path / "x.h5")


@pytest.mark.parametrize("key", ["object_ids", "idxs", "ra", "dec", "labels"])
def test_column_length_mismatch(tmp_path, key):
    path = write_h5(tmp_path / "s.h5", make_cutouts(4), labels=np.zeros(4, int))
    with h5py.File(path, "a") as f:
        short = f[key][:3]
        del f[key]
        f[key] = short
    with pytest.raises(
        InputError, match=rf"s\.h5: '{key}' has 3 entries but 'images' has 4 cutouts"
    ):
        open_source(path)


def test_non_numeric_column(tmp_path):
    path = write_h5(tmp_path / "s.h5", make_cutouts(2), labels=np.array([b"ring", b"none"]))
    with pytest.raises(InputError, match=r"s\.h5: 'labels' has non-numeric dtype \|S4"):
        open_source(path)


def test_missing_and_unknown_inputs(tmp_path):
    with pytest.raises(InputError, match=rf"^{re.escape(str(tmp_path / 'no.h5'))}: no such file"):
        open_source(tmp_path / "no.h5")
    (tmp_path / "table.csv").write_text("a,b\n")
    with pytest.raises(InputError, match=r"table\.csv: unknown input format '\.csv'"):
        open_source(tmp_path / "table.csv")
    (tmp_path / "one.fits").write_bytes(b"")
    with pytest.raises(InputError, match="one.fits: give the folder that holds the FITS cutouts"):
        open_source(tmp_path / "one.fits")


def test_truncated_hdf5_is_unreadable(tmp_path):
    path = write_h5(tmp_path / "cut.h5", make_cutouts(40))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(UnreadableFileError, match=r"cut\.h5: not a readable HDF5 file: .+"):
        open_source(path)


def test_corrupt_chunk_is_reported_when_read(tmp_path):
    """A file whose metadata is sound but one compressed chunk is garbage opens; reading the
    cutouts in that chunk names the file, the range and the first object of the range."""
    path = tmp_path / "corrupt.h5"
    ids = np.uint64(BIG_ID) + np.arange(6, dtype=np.uint64)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=make_cutouts(6), chunks=(1, 16, 16, 3), compression="gzip")
        f["object_ids"] = ids
        chunk = f["images"].id.get_chunk_info(3)  # cutout 3
    data = bytearray(path.read_bytes())
    data[chunk.byte_offset : chunk.byte_offset + chunk.size] = b"\x5a" * chunk.size
    path.write_bytes(bytes(data))
    source = open_source(path)
    assert len(source.read(0, 3)) == 3  # the sound chunks still read
    with pytest.raises(UnreadableFileError) as info:
        source.read(2, 5)
    assert str(info.value).startswith(
        f"{path}: cannot read cutouts 2..4 (object {BIG_ID + 2} onwards): "
    )


# ---- NumPy --------------------------------------------------------------------------------------


def test_npy_with_separate_ids(tmp_path):
    images = make_cutouts(5, bands=1)
    np.save(tmp_path / "c.npy", images)
    ids = np.array([ABOVE_2_63, 1, 2, 3, 2**64 - 1], dtype=np.uint64)
    np.save(tmp_path / "ids.npy", ids)
    source = open_source(tmp_path / "c.npy", bands=["i"], object_ids_path=tmp_path / "ids.npy")
    assert (source.count, source.shape, source.bands) == (5, (16, 16, 1), ("i",))
    assert [int(i) for i in source.object_ids()] == [int(i) for i in ids]
    batch = source.read(1, 5)
    np.testing.assert_array_equal(batch.images, images[1:5])
    np.testing.assert_array_equal(batch.idxs, [1, 2, 3, 4])
    assert [p.name for p in source.files()] == ["c.npy", "ids.npy"]
    np.save(tmp_path / "ids.npy", ids[:4])
    with pytest.raises(InputError, match="'object_ids' has 4 entries but 'images' has 5"):
        open_source(tmp_path / "c.npy", object_ids_path=tmp_path / "ids.npy")


def test_npz_in_the_paper_layout(tmp_path):
    images = make_cutouts(4)
    ids = np.uint64(BIG_ID) + np.arange(4, dtype=np.uint64)
    np.savez(
        tmp_path / "p.npz",
        images=images,
        object_ids=ids,
        idxs=np.arange(4) + 50,
        ra=np.linspace(10, 11, 4),
        labels=np.array([2, -1, 0, 1]),
    )
    batch = open_source(tmp_path / "p.npz").read(0, 4)
    np.testing.assert_array_equal(batch.images, images)
    np.testing.assert_array_equal(batch.object_ids, ids)
    np.testing.assert_array_equal(batch.idxs, [50, 51, 52, 53])
    np.testing.assert_array_equal(batch.ra, np.linspace(10, 11, 4))
    assert np.isnan(batch.dec).all()
    np.testing.assert_array_equal(batch.labels, [2, -1, 0, 1])


def test_npy_errors(tmp_path):
    np.save(tmp_path / "text.npy", np.array([[[["a"]]]]))
    with pytest.raises(InputError, match=r"text\.npy: 'images' has non-numeric dtype <U1"):
        open_source(tmp_path / "text.npy")
    np.save(tmp_path / "obj.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"obj\.npy: not numeric array data"):
        open_source(tmp_path / "obj.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all" * 10)
    with pytest.raises(UnreadableFileError, match=r"junk\.npy: not a \.npy file"):
        open_source(tmp_path / "junk.npy")
    np.save(tmp_path / "cut.npy", make_cutouts(10))
    data = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:3000])
    with pytest.raises(
        UnreadableFileError,
        match=rf"cut\.npy: unreadable or truncated: 3000 bytes, the header promises {len(data)}",
    ):
        open_source(tmp_path / "cut.npy")


def test_truncated_npz_is_unreadable(tmp_path):
    np.savez(tmp_path / "p.npz", images=make_cutouts(20))
    data = (tmp_path / "p.npz").read_bytes()
    (tmp_path / "p.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableFileError, match=r"p\.npz: unreadable or truncated"):
        open_source(tmp_path / "p.npz")


# ---- fingerprint and describe -------------------------------------------------------------------


def test_fingerprint_follows_the_file(tmp_path):
    path = write_h5(tmp_path / "s.h5", make_cutouts(3))
    first = open_source(path).fingerprint()
    assert first["kind"] == "ArraySource" and first["files"] == 1
    assert open_source(path).fingerprint() == first  # unchanged file, same fingerprint
    assert open_source(os.path.relpath(path)).fingerprint() == first  # the path is resolved
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: same bytes
    touched = open_source(path).fingerprint()
    assert touched["entries_digest"] != first["entries_digest"]
    write_h5(path, make_cutouts(4))  # rewritten with other content
    assert open_source(path).fingerprint()["entries_digest"] not in (
        first["entries_digest"],
        touched["entries_digest"],
    )


def test_fingerprint_covers_the_ids_file(tmp_path):
    np.save(tmp_path / "c.npy", make_cutouts(3))
    np.save(tmp_path / "ids.npy", np.arange(3, dtype=np.uint64))
    first = open_source(tmp_path / "c.npy", object_ids_path=tmp_path / "ids.npy").fingerprint()
    assert first["files"] == 2
    np.save(tmp_path / "ids.npy", np.arange(3, dtype=np.uint64) + np.uint64(10))
    stat = (tmp_path / "ids.npy").stat()  # same size: make sure the time differs too
    os.utime(tmp_path / "ids.npy", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = open_source(tmp_path / "c.npy", object_ids_path=tmp_path / "ids.npy").fingerprint()
    assert second["entries_digest"] != first["entries_digest"]


def test_describe(tmp_path):
    path = write_h5(tmp_path / "s.h5", make_cutouts(3))
    assert open_source(path).describe() == {
        "path": str(path.resolve()),
        "format": "ArraySource",
        "count": 3,
    }


# ---- FITS folders -------------------------------------------------------------------------------


def test_per_object_layout_orders_bands_by_name(tmp_path):
    """Band HDUs stored i, g, r come back in the requested band order, found by EXTNAME
    (HSC-G) or by the FILTER keyword; objects come in id order."""
    images = make_cutouts(3)
    ids = [ABOVE_2_63, 5, BIG_ID]
    write_per_object(
        tmp_path / "fits",
        images,
        ids,
        hdu_bands=("i", "g", "r"),
        primary=fits.Header({"RA": 135.5, "DEC": 1.25}),
    )
    source = open_source(tmp_path / "fits")
    assert isinstance(source, FitsFolderSource) and source.layout == "per_object"
    assert (source.count, source.shape, source.bands) == (3, (16, 16, 3), ("g", "r", "i"))
    assert [int(i) for i in source.object_ids()] == [5, BIG_ID, ABOVE_2_63]
    batch = source.read(0, 3)
    assert batch.images.dtype == np.float32 and batch.object_ids.dtype == np.uint64
    np.testing.assert_array_equal(batch.images, images[[1, 2, 0]])
    np.testing.assert_array_equal(batch.ra, [135.5] * 3)
    np.testing.assert_array_equal(batch.dec, [1.25] * 3)
    np.testing.assert_array_equal(batch.idxs, [0, 1, 2])
    np.testing.assert_array_equal(batch.labels, [-1, -1, -1])
    assert batch.origins[2] == f"{tmp_path / 'fits'} object {ABOVE_2_63}"

    write_per_object(
        tmp_path / "filter", images[:2], [1, 2], hdu_bands=("r", "i", "g"), by="FILTER"
    )
    np.testing.assert_array_equal(open_source(tmp_path / "filter").read(0, 2).images, images[:2])
    reordered = open_source(tmp_path / "filter", bands=["i", "g"]).read(0, 2).images
    np.testing.assert_array_equal(reordered, images[:2][..., [2, 0]])


def test_per_object_missing_band_hdu(tmp_path):
    write_per_object(tmp_path / "fits", make_cutouts(1), [9], hdu_bands=("g", "r"))
    with pytest.raises(InputError) as info:
        open_source(tmp_path / "fits")
    assert str(info.value) == (
        f"{tmp_path / 'fits' / '9.fits'}: object 9: no image extension for band 'i' (EXTNAME or "
        "FILTER); found ['PRIMARY', 'HSC-G', 'HSC-R']"
    )


def test_per_band_layout_reads_the_image_hdu(tmp_path):
    """<id>_<band>.fits with IMAGE, MASK and VARIANCE: the pixels are IMAGE's, whatever the other
    HDUs hold; ids above 2**63 come from the file names exactly."""
    images = make_cutouts(3)
    ids = [2**64 - 1, 40, ABOVE_2_63]
    write_per_band(tmp_path / "fits", images, ids)
    source = open_source(tmp_path / "fits")
    assert source.layout == "per_band" and source.shape == (16, 16, 3)
    assert [int(i) for i in source.object_ids()] == [40, ABOVE_2_63, 2**64 - 1]
    np.testing.assert_array_equal(source.read(0, 3).images, images[[1, 2, 0]])
    assert len(source.files()) == 9
    assert source.files()[:3] == [tmp_path / "fits" / f"40_{b}.fits" for b in "gri"]


def test_per_band_without_image_name_takes_the_first_2d_hdu(tmp_path):
    folder = tmp_path / "fits"
    folder.mkdir()
    image = make_cutouts(1)[0]
    for k, band in enumerate("gri"):
        fits.HDUList(
            [fits.PrimaryHDU(), fits.ImageHDU(image[..., k]), fits.ImageHDU(image[..., k] * 0)]
        ).writeto(folder / f"3-{band.upper()}.fits")  # dash and upper-case band also understood
    np.testing.assert_array_equal(open_source(folder).read(0, 1).images[0], image)


def test_fits_gz_and_other_files_ignored(tmp_path):
    images = make_cutouts(2)
    write_per_band(tmp_path / "fits", images, [11, 12], suffix=".fits.gz")
    (tmp_path / "fits" / "README.txt").write_text("downloaded from the HSC cutout service")
    source = open_source(tmp_path / "fits")
    assert [p.name for p in source.files()][:3] == ["11_g.fits.gz", "11_r.fits.gz", "11_i.fits.gz"]
    np.testing.assert_array_equal(source.read(0, 2).images, images)


def test_per_band_sky_position_from_the_wcs(tmp_path):
    """ra/dec at the centre pixel of a non-square cutout whose reference pixel is off centre,
    as astropy's own WCS places it."""
    image = np.random.default_rng(2).normal(size=(1, 12, 20, 3)).astype(np.float32)
    header = tan_header(crval=(140.0, -0.5), crpix=(3.0, 5.0), scale=0.01)
    write_per_band(tmp_path / "fits", image, [1], header=header)
    ra, dec = centre_of(header, (12, 20))
    assert abs(ra - 140.0) > 0.05 and abs(dec + 0.5) > 0.01  # the centre is not CRVAL
    batch = open_source(tmp_path / "fits").read(0, 1)
    assert batch.images.shape == (1, 12, 20, 3)
    np.testing.assert_allclose(batch.ra, [ra], rtol=0, atol=1e-10)
    np.testing.assert_allclose(batch.dec, [dec], rtol=0, atol=1e-10)


def test_sky_position_keywords_win_over_the_wcs(tmp_path):
    header = tan_header()
    header.update(RA_OBJ=33.25, DEC_OBJ=-4.5)
    write_per_band(tmp_path / "obj", make_cutouts(1), [1], header=header)
    batch = open_source(tmp_path / "obj").read(0, 1)
    assert (batch.ra[0], batch.dec[0]) == (33.25, -4.5)
    header = tan_header()
    header.update(RA="12:30:00", DEC="+01:00:00")  # sexagesimal text: fall back to the WCS
    write_per_band(tmp_path / "text", make_cutouts(1), [1], header=header)
    batch = open_source(tmp_path / "text").read(0, 1)
    np.testing.assert_allclose([batch.ra[0], batch.dec[0]], centre_of(header, (16, 16)), atol=1e-10)
    write_per_band(tmp_path / "none", make_cutouts(1), [1])  # no position at all: NaN
    batch = open_source(tmp_path / "none").read(0, 1)
    assert np.isnan(batch.ra).all() and np.isnan(batch.dec).all()


def test_per_object_sky_position_from_the_primary_wcs(tmp_path):
    header = tan_header(crval=(200.0, 30.0), scale=0.02)
    write_per_object(tmp_path / "fits", make_cutouts(1), [4], primary=header)
    batch = open_source(tmp_path / "fits").read(0, 1)
    np.testing.assert_allclose([batch.ra[0], batch.dec[0]], centre_of(header, (16, 16)), atol=1e-10)


def test_per_object_sky_position_from_the_band_extensions(tmp_path):
    folder = tmp_path / "fits"
    folder.mkdir()
    image = make_cutouts(1)[0]
    header = tan_header(crval=(150.0, 2.0), scale=0.01)
    hdus = [fits.PrimaryHDU()]
    hdus += [fits.ImageHDU(image[..., k], header=header, name=b) for k, b in enumerate("GRI")]
    fits.HDUList(hdus).writeto(folder / "8.fits")
    batch = open_source(folder).read(0, 1)
    np.testing.assert_allclose([batch.ra[0], batch.dec[0]], centre_of(header, (16, 16)), atol=1e-10)


def test_per_band_missing_and_extra_band_files(tmp_path):
    write_per_band(tmp_path / "fits", make_cutouts(2), [BIG_ID, ABOVE_2_63])
    (tmp_path / "fits" / f"{ABOVE_2_63}_i.fits").unlink()
    with pytest.raises(InputError) as info:
        open_source(tmp_path / "fits")
    assert str(info.value) == f"{tmp_path / 'fits'}: object {ABOVE_2_63}: missing band(s) i"
    write_per_band(tmp_path / "five", make_cutouts(1, bands=4), [3], bands=("g", "r", "i", "z"))
    with pytest.raises(InputError, match=r"object 3: band\(s\) z not in --bands g,r,i"):
        open_source(tmp_path / "five")
    assert open_source(tmp_path / "five", bands="griz").shape == (16, 16, 4)


def test_fits_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("")
    with pytest.raises(
        InputError, match=r"empty: no FITS files \(\*\.fits, \*\.fit, \*\.fits\.gz\)"
    ):
        open_source(tmp_path / "empty")
    write_per_band(tmp_path / "mixed", make_cutouts(1), [1])
    write_per_object(tmp_path / "mixed", make_cutouts(1), [2])
    with pytest.raises(InputError, match="mixed: mixes per-object and per-band FITS files"):
        open_source(tmp_path / "mixed")
    write_per_object(tmp_path / "huge", make_cutouts(1), [2**64])
    with pytest.raises(
        InputError, match=rf"{2**64}\.fits: object id {2**64} does not fit in uint64"
    ):
        open_source(tmp_path / "huge")


def test_fits_shape_problems(tmp_path):
    folder = tmp_path / "bands"
    folder.mkdir()
    for band, size in zip("gri", (16, 16, 12), strict=True):
        fits.PrimaryHDU(np.zeros((size, size), np.float32)).writeto(folder / f"6_{band}.fits")
    with pytest.raises(
        InputError, match=r"object 6: bands differ in shape \[\(12, 12\), \(16, 16\)\]"
    ):
        open_source(folder)
    write_per_object(tmp_path / "sizes", make_cutouts(1), [1])
    write_per_object(tmp_path / "sizes", make_cutouts(1, size=20), [2])
    source = open_source(tmp_path / "sizes")  # the first object sets the shape
    assert source.shape == (16, 16, 3) and len(source.read(0, 1)) == 1
    with pytest.raises(
        InputError,
        match=r"object 2: cutout shape \(20, 20, 3\) differs from the "
        r"first object's \(16, 16, 3\)",
    ):
        source.read(0, 2)


def test_corrupt_per_band_file_names_the_band_file(tmp_path):
    write_per_band(tmp_path / "fits", make_cutouts(2, size=64), [5, 6])
    path = tmp_path / "fits" / "6_r.fits"
    data = path.read_bytes()
    path.write_bytes(data[:10000])  # PRIMARY and IMAGE headers whole, then a third of its pixels
    source = open_source(tmp_path / "fits")  # object 5 alone is read when opening
    with pytest.raises(
        UnreadableFileError, match=rf"^{re.escape(str(path))}: object 6: unreadable"
    ):
        source.read(1, 2)


def test_fits_fingerprint_and_describe(tmp_path):
    write_per_band(tmp_path / "fits", make_cutouts(2), [1, 2])
    source = open_source(tmp_path / "fits")
    first = source.fingerprint()
    assert first["kind"] == "FitsFolderSource" and first["files"] == 6
    assert source.describe() == {
        "path": str((tmp_path / "fits").resolve()),
        "format": "FitsFolderSource",
        "count": 2,
    }
    path = tmp_path / "fits" / "2_i.fits"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert open_source(tmp_path / "fits").fingerprint()["entries_digest"] != first["entries_digest"]
