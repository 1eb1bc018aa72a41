"""Open survey cutouts by their path: HDF5 in the paper's layout, .npy/.npz arrays
(:mod:`~tfanomaly.data.array_source`) and folders of FITS files
(:mod:`~tfanomaly.data.fits_source`).

Each reader is a :class:`~tfanomaly.data.sources.CutoutSource` that validates its input and hands
out batches of cutouts, with their variance and mask planes where the input has them.
"""

from __future__ import annotations

from pathlib import Path

from tfanomaly.data.array_source import HDF5_SUFFIXES, open_hdf5, open_numpy
from tfanomaly.data.fits_source import FitsFolderSource, strip_fits_suffix
from tfanomaly.data.sources import CutoutSource
from tfanomaly.errors import InputError


def open_source(path, bands=None, object_ids_path=None) -> CutoutSource:
    """Open cutouts from ``path``: an HDF5 file, a .npy/.npz file or a folder of FITS files."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    bands = tuple(bands) if bands else None
    if path.is_dir():
        return FitsFolderSource(path, bands=bands)
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return open_hdf5(path, bands=bands)
    if suffix in (".npy", ".npz"):
        return open_numpy(path, bands=bands, object_ids_path=object_ids_path)
    if strip_fits_suffix(path.name) is not None:
        raise InputError(f"{path}: give the folder that holds the FITS cutouts, not one file")
    raise InputError(
        f"{path}: unknown input format '{suffix}'; expected .h5/.hdf5, .npy/.npz or a FITS folder"
    )
