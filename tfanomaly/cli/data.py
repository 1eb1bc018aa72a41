"""Commands that make and check data sets: ``simulate``, ``ingest`` and ``inspect``."""

from __future__ import annotations

import json
import sys

import click

from tfanomaly.cli._common import _friendly_errors, _uses_tensorflow
from tfanomaly.cli.options import build_config, config_options, quiet_option
from tfanomaly.errors import ConfigError
from tfanomaly.pipelines.config import IngestConfig, SimulateConfig, split_names
from tfanomaly.simulate.config import SurveyConfig


@click.command()
@click.argument("out", type=click.Path(dir_okay=False))
@config_options(SurveyConfig)
@click.option(
    "--substructure/--smooth",
    default=True,
    show_default=True,
    help="Galaxies with star-forming knots, spiral arms and dust lanes, blends and slightly "
    "elliptical PSFs; --smooth: plain bulge + disk galaxies and round PSFs (the same galaxies, "
    "anomalies and noise otherwise).",
)
@config_options(SimulateConfig)
@quiet_option()
@_friendly_errors
def simulate(out, substructure, quiet, **options):
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

    config = build_config(SurveyConfig, options)
    if not substructure:
        config = config.smooth()
    workers = build_config(SimulateConfig, options).workers
    summary = simulate_survey(out, config, workers=workers, progress=not quiet)
    click.echo(
        f"wrote {summary['n_objects']} cutouts ({summary['n_anomalies']} anomalies) to {out} "
        f"in {summary['seconds']:.1f} s ({summary['stamps_per_second']:.0f} stamps/s)"
    )


@click.command()
@click.argument("source", type=click.Path(exists=False))
@click.argument("out", type=click.Path(file_okay=False))
@config_options(IngestConfig, exclude=("size", "resize", "stretch", "mask_bits"))
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
@config_options(IngestConfig, exclude=("shard_size", "nan_policy", "fill_value"))
@click.option("--overwrite", is_flag=True, help="Replace a complete data set already in OUT.")
@quiet_option()
@_friendly_errors
@_uses_tensorflow
def ingest(source, out, bands, object_ids_path, overwrite, quiet, **options):
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

    config = build_config(IngestConfig, options)
    manifest = run_ingest(
        source,
        out,
        config,
        bands=split_names(bands),
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
    for line in (manifest.get("health") or {}).get("findings", []):
        click.echo(line)
    for band, why in (record.get("noise_model") or {}).items():
        click.echo(f"stretch noise model ({band}): {why}")


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

    DATA may also be a run folder: then its default score, as calibrated: the calibration's
    data, the terms and the weights the score gives them, and a line per term left out of it
    because it carries no information on the calibration set (constant, quantised or NaN).
    """
    from tfanomaly.pipelines.inspect import describe, save_gallery
    from tfanomaly.pipelines.run import is_run

    if is_run(data):
        if gallery or check:
            raise ConfigError(f"{data} is a run folder: --gallery and --verify are for data sets")
        _inspect_run(data, as_json)
        return
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
    health = summary["health"]
    if health is None:
        click.echo("health: not recorded (ingested before tfanomaly measured data health)")
    elif not health.get("findings"):
        click.echo(f"health: no findings ({health.get('sample_cutouts', 0)} cutouts sampled)")
    for line in (health or {}).get("findings", []):
        click.echo(line)
    if check:
        bad = summary["corrupt_shards"]
        click.echo("checksums: all shards intact" if not bad else f"checksums: CORRUPT {bad}")
        if bad:
            sys.exit(1)
    if gallery:
        click.echo(f"gallery: {gallery} (rows: {', '.join(summary['gallery']['rows'])})")


def _inspect_run(run_dir, as_json: bool) -> None:
    """Print a run's default score as calibrated (``pipelines.inspect.describe_run``)."""
    from tfanomaly.pipelines.inspect import describe_run

    summary = describe_run(run_dir)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    stages = ", ".join(summary["stages"]) or "nothing trained"
    click.echo(f"{summary['path']}: run of {summary['model']} ({stages})")
    c = summary["calibration"]
    if c is None:
        click.echo(f"calibration: none (run `tfanomaly calibrate {run_dir}`)")
        return
    planes = f", planes {','.join(c['planes'])}" if c["planes"] else ""
    click.echo(f"calibration {c['path']}: {c['count']} cutouts of {c['data']}{planes}")
    weights = ", ".join(
        f"{term} {weight:.3g}"
        + (f" (set {c['nominal_weights'][term]:.3g})" if term in c["degenerate_terms"] else "")
        for term, weight in c["term_weights"].items()
    )
    click.echo(f"default score: {c['combine']} of the terms' robust z, weights {weights}")
    for term, why in c["degenerate_terms"].items():
        click.echo(f"term '{term}' left out of the default score: {why}")
    if c["health"] is None:
        click.echo("term health: not recorded (calibrated before tfanomaly checked it)")
    elif not c["degenerate_terms"]:
        click.echo("term health: every term carries information on the calibration set")
    for term, name in (("morphology", "morphology"), ("residual_shape", "residual-shape")):
        record = c.get(term)
        if record:
            click.echo(f"{name} term: {reference_summary(record)}")


def reference_summary(record: dict) -> str:
    """A k-NN term's reference set in words (``inspect``): k, its size, the parameters it reads
    (the morphology term's), the units of its distance and the cutouts the calibration left out
    of it."""
    left = [
        f"{record[key]} {what}"
        for key, what in (
            ("trimmed", "as the calibration set's own anomalies"),
            ("copies", "as copies"),
        )
        if record.get(key)
    ]
    what = [f"{record['parameters']} parameters"] if record.get("parameters") else []
    what += [f"{record['units']} units"] if record.get("units") else []
    reads = f" ({', '.join(what)})" if what else ""
    return f"{record['neighbours']}-NN over {record['reference']} reference cutouts{reads}" + (
        f"; left out: {', '.join(left)}" if left else ""
    )
