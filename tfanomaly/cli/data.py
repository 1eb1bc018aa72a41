"""Commands that make and check data sets: ``simulate``, ``ingest`` and ``inspect``."""

from __future__ import annotations

import json
import sys

import click

from tfanomaly.cli._common import _bands, _friendly_errors, _uses_tensorflow
from tfanomaly.data.planes import DEFAULT_MASK_BITS
from tfanomaly.data.resize import RESIZE_METHODS
from tfanomaly.data.stretch import STRETCH_MODES
from tfanomaly.pipelines.config import NAN_POLICIES, IngestConfig, SimulateConfig
from tfanomaly.simulate.config import SurveyConfig


@click.command()
@click.argument("out", type=click.Path(dir_okay=False))
@click.option(
    "-n",
    "--n-objects",
    default=SurveyConfig.n_objects,
    show_default=True,
    help="Cutouts to simulate.",
)
@click.option(
    "--size",
    default=SurveyConfig.size,
    show_default=True,
    help="Cutout side in pixels (96 = the paper's; 32 or 48 for CPU presets).",
)
@click.option(
    "--anomaly-fraction",
    default=SurveyConfig.anomaly_fraction,
    show_default=True,
    help="Fraction of injected anomalies.",
)
@click.option(
    "--kinds",
    default="all",
    show_default=True,
    help="Comma-separated anomaly kinds to inject (see the list below), or 'all'.",
)
@click.option(
    "--seed",
    default=SurveyConfig.seed,
    show_default=True,
    help="Random seed: same seed, same bits.",
)
@click.option(
    "--substructure/--smooth",
    default=True,
    show_default=True,
    help="Galaxies with star-forming knots, spiral arms and dust lanes, blends and slightly "
    "elliptical PSFs; --smooth: plain bulge + disk galaxies and round PSFs (the same galaxies, "
    "anomalies and noise otherwise).",
)
@click.option(
    "-j",
    "--workers",
    default=SimulateConfig.workers,
    show_default=True,
    help="Worker processes (output is identical).",
)
@click.option(
    "--planes",
    is_flag=True,
    help="Also write `variances` (sky + the sources' Poisson noise, which the images then carry) "
    "and `masks` (HSC bits: SAT star cores, CR cosmic rays, BAD columns, DETECTED).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly_errors
def simulate(
    out, n_objects, size, anomaly_fraction, kinds, seed, substructure, workers, planes, quiet
):
    """Simulate an HSC-like gri survey with labelled anomalies into the HDF5 file OUT.

    Normal galaxies are bulge + disk GalSim profiles at 20 < i < 20.5 with HSC seeing, pixel scale
    (0.168"/px) and Wide-depth sky noise, in flux units (zero point 27); extended disks have
    star-forming knots, spiral arms or dust lanes, and some cutouts a fainter blended galaxy. The
    file uses the paper's layout (images, idxs, object_ids, ra, dec) plus `labels` (0 = normal,
    k = kind_names[k]).

    Anomaly kinds: merger, tidal_feature, star_forming_clump, lensed_arc, satellite_trail,
    diffraction_spikes, cosmic_rays, bad_column.
    """
    from tfanomaly.pipelines.simulate import simulate_survey
    from tfanomaly.simulate.config import ANOMALY_KINDS

    chosen = ANOMALY_KINDS if kinds == "all" else tuple(k.strip() for k in kinds.split(","))
    config = SurveyConfig(
        n_objects=n_objects,
        size=size,
        anomaly_fraction=anomaly_fraction,
        kinds=chosen,
        seed=seed,
        planes=planes,
    )
    if not substructure:
        config = config.smooth()
    summary = simulate_survey(out, config, workers=workers, progress=not quiet)
    click.echo(
        f"wrote {summary['n_objects']} cutouts ({summary['n_anomalies']} anomalies) to {out} "
        f"in {summary['seconds']:.1f} s ({summary['stamps_per_second']:.0f} stamps/s)"
    )


@click.command()
@click.argument("source", type=click.Path(exists=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option(
    "--shard-size",
    default=IngestConfig.shard_size,
    show_default=True,
    help="Cutouts per TFRecord shard.",
)
@click.option(
    "--nan",
    "nan_policy",
    type=click.Choice(NAN_POLICIES),
    default=IngestConfig.nan_policy,
    show_default=True,
    help="NaN/inf pixels (HSC masks): fill with --fill-value, drop the cutout, or stop.",
)
@click.option(
    "--fill-value",
    default=IngestConfig.fill_value,
    show_default=True,
    help="Flux put into NaN pixels.",
)
@click.option(
    "--bands",
    default=None,
    help="Band names in channel order, e.g. g,r,i (default: from the file, else g,r,i for 3).",
)
@click.option(
    "--object-ids",
    "object_ids_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="For a .npy SOURCE: a .npy of uint64 object ids (default 0..N-1).",
)
@click.option(
    "--size",
    type=int,
    default=None,
    help="Resize every cutout to SIZE x SIZE pixels (default: keep the input's size).",
)
@click.option(
    "--resize",
    type=click.Choice(RESIZE_METHODS),
    default=IngestConfig.resize,
    show_default=True,
    help="With --size: crop the centre, or area-weighted resampling (flux per pixel averaged, "
    "variance propagated, mask bits OR-ed).",
)
@click.option(
    "--stretch",
    type=click.Choice(STRETCH_MODES),
    default=IngestConfig.stretch,
    show_default=True,
    help="auto: the paper's Lupton stretch with its softening scaled to the sky noise measured "
    f"per band (from neighbouring-pixel differences) on the first {IngestConfig.stretch_sample} "
    "cutouts, for any flux unit; "
    "paper: Lupton Q=15, stretch=0.5 fixed (HSC coadd units).",
)
@click.option(
    "--mask-bits",
    default=None,
    help="Comma-separated mask bit names whose pixels are left out (default: "
    f"{','.join(DEFAULT_MASK_BITS)}, those the input defines).",
)
@click.option("--overwrite", is_flag=True, help="Replace a complete data set already in OUT.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly_errors
@_uses_tensorflow
def ingest(source, out, shard_size, nan_policy, fill_value, bands, object_ids_path, size, resize,
           stretch, mask_bits, overwrite, quiet):  # fmt: skip
    """Convert cutouts in SOURCE into TFRecord shards + manifest.json in the folder OUT.

    SOURCE is an HDF5 file in the paper's layout (`images` (N,H,W,C) float32 flux, `object_ids`,
    optional `idxs`, `ra`, `dec`, `labels`), a .npy (N,H,W,C) or .npz with the same keys, or a
    folder of FITS cutouts named <object_id>.fits (one extension per band, EXTNAME or FILTER = the
    band) or <object_id>_<band>.fits (one file per band). An interrupted ingest resumes when rerun.

    Variance and mask planes travel along where the input has them: `variances` and `masks`
    arrays beside `images`, or the VARIANCE and MASK HDUs beside IMAGE (bit names from the MP_*
    cards). Zero, negative or non-finite variances are masked and counted in the manifest.
    """
    from tfanomaly.pipelines.ingest import ingest as run_ingest

    config = IngestConfig(
        shard_size=shard_size,
        nan_policy=nan_policy,
        fill_value=fill_value,
        size=size,
        resize=resize,
        stretch=stretch,
        mask_bits=_bands(mask_bits),
    )
    manifest = run_ingest(
        source,
        out,
        config,
        bands=_bands(bands),
        object_ids_path=object_ids_path,
        overwrite=overwrite,
        progress=not quiet,
    )
    nan = manifest["ingest"]["nan"]
    click.echo(
        f"wrote {manifest['count']} cutouts {tuple(manifest['shape'])} bands "
        f"{','.join(manifest['bands'])} in {len(manifest['shards'])} shard(s) to {out}"
    )
    if nan["objects_with_nonfinite"]:
        click.echo(
            f"NaN/inf: {nan['objects_with_nonfinite']} cutout(s) affected, "
            f"{nan['pixels_filled']} pixel(s) filled, {nan['objects_dropped']} dropped"
        )
    planes = manifest["planes"]
    if planes:
        mask = planes["mask"]
        bad = planes.get("variance", {}).get("nonpositive_pixels", 0)
        click.echo(
            f"planes: {', '.join(planes)}; masked {','.join(mask['masked'])}: "
            f"{mask['masked_pixels']} pixel(s)"
            + (f", {bad} with zero/negative variance" if bad else "")
        )
    record = manifest["stretch"]
    if record["mode"] == "auto":
        click.echo(
            f"stretch auto: Q {record['Q']:g}, stretch {record['stretch']:.4g} from sky sigma "
            + ", ".join(f"{b} {v:.4g}" for b, v in record["sky_sigma"].items())
        )
    elif "fallback" in record:
        click.echo(f"warning: {record['fallback']}", err=True)


@click.command()
@click.argument("data", type=click.Path(file_okay=False))
@click.option("--gallery", type=click.Path(dir_okay=False), help="Write a PNG gallery here.")
@click.option("--verify", "check", is_flag=True, help="Re-hash every shard against the manifest.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_friendly_errors
@_uses_tensorflow
def inspect(data, gallery, check, as_json):
    """Summarise the ingested data set DATA; optionally verify checksums and write a gallery.

    The gallery has one row per anomaly kind for a labelled (simulated) survey, stretched as the
    models see the images (Lupton, R=i G=r B=g).
    """
    from tfanomaly.pipelines.inspect import describe, save_gallery

    summary = describe(data, check=check)
    if gallery:
        summary["gallery"] = {"path": gallery, "rows": save_gallery(data, gallery)}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(
        f"{summary['path']}: {summary['count']} cutouts {tuple(summary['shape'])}, bands "
        f"{','.join(summary['bands'])}, {summary['shards']} shard(s), "
        f"{summary['bytes'] / 1e6:.1f} MB, from {summary['source']}"
    )
    if summary["labels"]:
        click.echo("labels: " + ", ".join(f"{k} {n}" for k, n in summary["labels"].items()))
    nan = summary["nan"]
    click.echo(
        f"NaN policy {nan['policy']}: {nan['objects_with_nonfinite']} cutout(s) had NaN/inf, "
        f"{nan['objects_dropped']} dropped"
    )
    stretch = summary["stretch"]
    click.echo(
        f"stretch {stretch['mode']}: Lupton Q {stretch['Q']:g}, stretch {stretch['stretch']:.4g}"
        + (f" ({stretch['fallback']})" if "fallback" in stretch else "")
    )
    if summary["planes"]:
        mask = summary["planes"]["mask"]
        click.echo(
            f"planes: {', '.join(summary['planes'])}; masked bits {','.join(mask['masked'])} "
            f"({mask['masked_pixels']} pixel(s))"
        )
    if check:
        bad = summary["corrupt_shards"]
        click.echo("checksums: all shards intact" if not bad else f"checksums: CORRUPT {bad}")
        if bad:
            sys.exit(1)
    if gallery:
        click.echo(f"gallery: {gallery} (rows: {', '.join(summary['gallery']['rows'])})")
