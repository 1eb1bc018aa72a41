"""The visual report an astronomer opens first: one self-contained HTML file (Bokeh, inline JS, no
server, no network) with the UMAP map and beside it the cluster table (each cluster's size, its most
typical members, the labels given in it), galleries of triptychs, score histograms and the
evaluation.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import h5py
import numpy as np

from tfanomaly.errors import InputError
from tfanomaly.fileio import atomic_path
from tfanomaly.models.scores import SCORES
from tfanomaly.results.catalog import SCORE_KEYS, json_attr, read_results
from tfanomaly.results.clusters import EMBEDDING_FILE, ClusterMap
from tfanomaly.results.labels import LabelStore, default_label_path
from tfanomaly.results.report_config import ReportConfig

# Histogram titles, in catalog order (the one vocabulary of tfanomaly.models.scores).
SCORE_LABELS = {score.sigma: score.label for score in SCORES}


def _thumbnails(cubes, rows: np.ndarray, size: int) -> list[str]:
    """data: URIs of JPEG triptychs (real | reconstruction | residual), ``size`` px per panel;
    ``cubes`` maps the three cube names to arrays or h5py datasets (read row by row)."""
    import tensorflow as tf

    order = np.argsort(rows)
    sorted_rows = rows[order]
    panels = [
        np.asarray(cubes[key][sorted_rows]) for key in ("reals", "reconstructed", "residuals")
    ]
    triptych = np.concatenate(
        [tf.image.resize(p, (size, size), method="area").numpy() for p in panels], axis=2
    )
    if triptych.shape[-1] == 1:
        triptych = np.repeat(triptych, 3, axis=-1)
    pixels = np.clip(triptych[..., :3] * 255 + 0.5, 0, 255).astype(np.uint8)
    uris = [""] * len(rows)
    for k, image in zip(order, pixels, strict=True):
        jpeg = tf.io.encode_jpeg(image, quality=85).numpy()
        uris[k] = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    return uris


# Bokeh renders a Div inside a shadow root, out of reach of page-level CSS: style inline.
GALLERY_STYLE = "display:flex;flex-wrap:wrap;gap:6px"
THUMB_STYLE = "margin:0;font:11px sans-serif"


def _gallery(title: str, uris: list[str], captions: list[str], width: int) -> str:
    cells = "".join(
        f'<figure style="{THUMB_STYLE}"><img src="{u}" alt="{html.escape(c)}" width="{width}" '
        f'style="image-rendering:pixelated"><figcaption>{html.escape(c)}</figcaption></figure>'
        for u, c in zip(uris, captions, strict=True)
    )
    return f"<h3>{html.escape(title)}</h3><div style='{GALLERY_STYLE}'>{cells}</div>"


def _evaluation_html(results_dir: Path) -> str:
    path = results_dir / "evaluation.json"
    if not path.exists():
        return ""
    report = json.loads(path.read_text())
    cell = "padding:2px 8px;font:12px sans-serif"
    head = "<tr><th>group</th><th>score</th><th>n</th><th>AUROC</th><th>AP</th><th>P@k</th></tr>"
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td style='{cell}'>{v}</td>"
            for v in (
                g,
                k,
                m["n_anomalies"],
                f"{m['auroc']:.3f}",
                f"{m['average_precision']:.3f}",
                f"{m['precision_at_k']:.3f}",
            )
        )
        + "</tr>"
        for g, scores in report["table"].items()
        for k, m in scores.items()
    )
    return f"<h2>Evaluation against the labels</h2><table>{head}{rows}</table>"


CELL = "padding:4px 8px;font:12px sans-serif;vertical-align:top;border-bottom:1px solid #ddd"
LABEL_COLOURS = {"interesting": "#1a9e61", "artifact": "#c46a10", "normal": "#6b7385"}
MAX_CLUSTER_ROWS = 60


def _labels_by_row(path: Path, where: dict[int, int]) -> dict[int, str] | None:
    """The current labels of the results' objects (row -> label) in the label file at ``path``;
    None when there is no label file."""
    if not path.exists():
        return None
    with LabelStore(path) as store:
        current = store.current()
    return {where[oid]: r["label"] for oid, r in current.items() if oid in where and r["label"]}


def _cluster_table(
    summaries: list[dict], uris: dict[int, str], ids, width: int, noise: int, labels_note: str
) -> str:
    """The cluster table: cluster, size, most typical members (thumbnails), labels given."""
    head = "".join(
        f"<th style='{CELL};text-align:left'>{h}</th>"
        for h in ("cluster", "size", "most typical members", "labels")
    )
    rows = []
    for c in summaries[:MAX_CLUSTER_ROWS]:
        thumbs = "".join(
            f'<img src="{uris[int(r)]}" width="{width}" title="{int(ids[r])}" '
            f'alt="{int(ids[r])}" style="image-rendering:pixelated;margin:1px">'
            for r in c["typical"]
        )
        given = (
            ", ".join(
                f"<b style='color:{LABEL_COLOURS.get(k, '#333')}'>{k}</b> {n}"
                for k, n in c["labels"].items()
            )
            or "none"
        )
        cells = (c["cluster"], c["size"], thumbs, given)
        rows.append("<tr>" + "".join(f"<td style='{CELL}'>{v}</td>" for v in cells) + "</tr>")
    more = len(summaries) - MAX_CLUSTER_ROWS
    notes = [f"{noise} embedded objects are in no cluster."] if noise else []
    if more > 0:
        notes.append(f"{more} smaller clusters not shown.")
    notes.append(labels_note)
    return (
        f"<h2>Clusters</h2><p style='font:12px sans-serif'>{len(summaries)} clusters (HDBSCAN "
        "on the UMAP map); the most typical members are those nearest the cluster's centre "
        f"in the map. {' '.join(notes)}</p><table style='border-collapse:collapse'><tr>{head}</tr>"
        f"{''.join(rows)}</table>"
    )


def _insert_before_last(page: str, tag: str, text: str) -> str:
    at = page.rindex(tag)
    return page[:at] + text + page[at:]


def build_report(
    results_dir,
    out_path=None,
    config: ReportConfig | None = None,
    *,
    embedding=None,
    labels_path=None,
) -> dict:
    """Write the HTML report for a scored catalog (with image cubes) and, with an embedding
    (``embedding``: an ``embedding.h5`` of ``tfanomaly embed`` or the folder that holds it;
    default ``RESULTS/embedding.h5`` when it exists), its UMAP map and beside it the cluster
    table: each cluster's size, its ``config.typical`` most typical members and, when the label file
    ``labels_path`` (default ``RESULTS/labels.sqlite``) exists, the labels given in it. Returns
    the path and what it shows."""
    config = config or ReportConfig()
    results_dir = Path(results_dir)
    if embedding is None:
        embedding = results_dir / EMBEDDING_FILE
    elif Path(embedding).is_dir():
        embedding = Path(embedding) / EMBEDDING_FILE
        if not embedding.exists():
            raise InputError(f"{embedding.parent}: no {EMBEDDING_FILE}; run `tfanomaly embed`")
    out_path = Path(out_path or results_dir / "report.html")
    columns, attrs = read_results(results_dir)
    with h5py.File(results_dir / "results.h5", "r") as cubes:
        if any(k not in cubes for k in ("reals", "reconstructed", "residuals")):
            raise InputError(f"{results_dir}: no image cubes; score with --store-images")
        labels_path = Path(labels_path) if labels_path else default_label_path(results_dir)
        return _build(
            results_dir,
            out_path,
            columns,
            attrs,
            cubes,
            embedding,
            config.top_n,
            config.thumb_size,
            config.sigma_cut,
            labels_path,
            config.typical,
        )


def _build(
    results_dir,
    out_path,
    columns,
    attrs,
    cubes,
    embedding,
    top_n,
    thumb_size,
    sigma_cut,
    labels_path,
    typical,
):
    """The report's body; ``cubes`` is the open results file, read only for the rows shown."""
    from bokeh.embed import file_html
    from bokeh.layouts import column, row
    from bokeh.models import ColorBar, ColumnDataSource, Div, HoverTool, LinearColorMapper, Span
    from bokeh.palettes import Viridis256
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    encoded: dict[int, str] = {}  # row -> thumbnail, each encoded once (map, clusters, galleries)

    def thumbnails(rows) -> list[str]:
        new = np.array(sorted({int(r) for r in rows} - set(encoded)), dtype=np.int64)
        if len(new):
            encoded.update(zip(new.tolist(), _thumbnails(cubes, new, thumb_size), strict=True))
        return [encoded[int(r)] for r in rows]

    kind_names = json_attr(attrs.get("kind_names")) or []
    labels = columns.get("labels", np.full(len(columns["idxs"]), -1))

    def caption(r: int) -> str:
        kind = f" {kind_names[labels[r]]}" if 0 <= labels[r] < len(kind_names) else ""
        return f"{int(columns['object_ids'][r])} {columns['scores_sigma'][r]:.1f}σ{kind}"

    parts = [
        Div(
            text=f"<h1>tfanomaly report</h1><p>{len(columns['idxs'])} scored cutouts from "
            f"{html.escape(str(attrs.get('data', '')))}; thumbnails: real | "
            f"reconstruction | residual, {thumb_size} px per panel.</p>"
        )
    ]
    shown = {
        "objects": len(columns["idxs"]),
        "map_points": 0,
        "gallery_images": 0,
        "clusters": 0,
        "labels_counted": None,
    }
    width = 3 * thumb_size * 2  # thumbnails shown at twice their pixel size

    embedding_path = Path(embedding)
    if embedding_path.exists():
        with h5py.File(embedding_path, "r") as f:
            ids, ux, uy, clusters = (f[k][:] for k in ("object_ids", "umap_x", "umap_y", "cluster"))
            space = str(f.attrs.get("space", "CAE latents"))
        where = {int(i): k for k, i in enumerate(columns["object_ids"])}
        rows = np.array([where[int(i)] for i in ids])
        source = ColumnDataSource(
            dict(
                x=ux,
                y=uy,
                sigma=columns["scores_sigma"][rows],
                object_id=[str(int(i)) for i in ids],
                cluster=clusters,
                ra=columns["ra"][rows],
                dec=columns["dec"][rows],
                disc=columns["disc_scores_sigma"][rows],
                thumb=thumbnails(rows),
            )
        )
        mapper = LinearColorMapper(
            palette=Viridis256,
            low=float(np.min(source.data["sigma"])),
            high=float(np.max(source.data["sigma"])),
        )
        plot = figure(
            title=f"UMAP of {space} (colour: default score σ)",
            width=760,
            height=600,
            tools="pan,wheel_zoom,box_zoom,reset,save",
        )
        for c in sorted(set(clusters.tolist()) - {-1}):
            points = np.stack([ux[clusters == c], uy[clusters == c]], axis=1)
            if len(points) >= 3:
                from scipy.spatial import ConvexHull

                hull = points[ConvexHull(points).vertices]
                plot.patch(
                    hull[:, 0],
                    hull[:, 1],
                    fill_alpha=0.08,
                    line_alpha=0.8,
                    line_color="gray",
                    fill_color="gray",
                )
        glyph = plot.scatter(
            "x",
            "y",
            source=source,
            size=7,
            name="map_points",
            color={"field": "sigma", "transform": mapper},
        )
        plot.add_layout(ColorBar(color_mapper=mapper, title="score σ"), "right")
        kinds = _kind_layer(plot, ux, uy, labels[rows], kind_names)
        plot.add_tools(
            HoverTool(
                renderers=[glyph],
                tooltips="""
            <div><img src="@thumb" width="{w}"><br>
            id @object_id, cluster @cluster<br>ra @ra{{0.0000}}, dec @dec{{0.0000}}<br>
            score @sigma{{0.00}}σ, paper's disc @disc{{0.00}}σ</div>""".replace(
                    "{w}", str(3 * thumb_size * 2)
                )
                .replace("{{", "{")
                .replace("}}", "}"),
            )
        )
        shown["map_points"] = len(ids)
        shown["map_kinds"] = kinds
        n = len(columns["object_ids"])
        full = ClusterMap(
            np.full(n, np.nan), np.full(n, np.nan), np.full(n, -1, np.int64), embedding_path
        )
        full.x[rows], full.y[rows], full.cluster[rows] = ux, uy, clusters
        by_row = _labels_by_row(labels_path, where)
        summaries = full.summaries(by_row, typical)
        shown["clusters"] = len(summaries)
        shown["labels_counted"] = None if by_row is None else len(by_row)
        labels_note = (
            f"Labels from {labels_path} ({len(by_row)} of these objects labelled)."
            if by_row is not None
            else f"No label file ({labels_path}): label with `tfanomaly explore`."
        )
        shown_rows = [r for c in summaries[:MAX_CLUSTER_ROWS] for r in c["typical"]]
        shown_rows = [int(r) for r in shown_rows]
        uris = dict(zip(shown_rows, thumbnails(np.array(shown_rows, np.int64)), strict=True))
        shown["gallery_images"] += len(shown_rows)
        table = _cluster_table(
            summaries,
            uris,
            columns["object_ids"],
            3 * thumb_size,
            full.noise,
            html.escape(labels_note),
        )
        parts.append(row(plot, Div(text=table, width=3 * thumb_size * typical + 260)))

    galleries = []
    for key, label in SCORE_LABELS.items():
        top = np.argsort(-columns[key])[:top_n]
        galleries.append(
            _gallery(
                f"top {len(top)} by {label} score",
                thumbnails(top),
                [caption(r) for r in top],
                width,
            )
        )
        shown["gallery_images"] += len(top)
    parts.append(Div(text="<h2>Most anomalous</h2>" + "".join(galleries), width=1100))

    histograms = []
    for key in SCORE_KEYS:
        values = columns[f"{key}_sigma"]
        counts, edges = np.histogram(values, bins=60)
        hist = figure(
            title=f"{SCORE_LABELS[f'{key}_sigma']} score (σ)", width=360, height=260, tools=""
        )
        hist.quad(top=counts, bottom=0, left=edges[:-1], right=edges[1:], alpha=0.7)
        hist.add_layout(
            Span(location=sigma_cut, dimension="height", line_color="red", line_dash="dashed")
        )
        histograms.append(hist)
    parts.append(row(*histograms))
    evaluation = _evaluation_html(results_dir)
    if evaluation:
        parts.append(Div(text=evaluation, width=900))
    # A marker the browser test reads once Bokeh has rendered the page.
    probe = (
        "<script>const tfaProbe=setInterval(()=>{const d=window.Bokeh&&Bokeh.documents[0];"
        "if(!d)return;clearInterval(tfaProbe);const m=d.get_model_by_name('map_points');"
        "document.body.dataset.mapPoints=m?m.data_source.data.x.length:0;"
        "document.body.dataset.galleryImages=[...d.all_models].filter(x=>typeof x.text=="
        "'string').reduce((n,x)=>n+(x.text.match(/<img /g)||[]).length,0);"
        "document.body.dataset.rendered='1';},100);</script>"
    )
    page = file_html(column(*parts), resources=INLINE, title="tfanomaly report")
    # The inline BokehJS bundle itself contains "</body>" in strings: insert before the last
    # occurrence, the document's own tag.
    page = _insert_before_last(page, "</body>", probe)
    with atomic_path(out_path) as tmp:
        tmp.write_text(page)
    shown.update(path=out_path, bytes=out_path.stat().st_size)
    return shown


def _kind_layer(plot, x, y, labels, kind_names) -> int:
    """On a labelled (simulated) survey, ring each embedded anomaly in its kind's colour, with a
    legend that hides a kind on a click: whether the map groups the kinds, at a glance. Returns
    the number of kinds drawn."""
    from bokeh.palettes import Category10

    labels = np.asarray(labels)
    present = [k for k in np.unique(labels) if 0 < k < len(kind_names)]
    for index, kind in enumerate(present):
        here = labels == kind
        plot.scatter(
            x[here],
            y[here],
            size=11,
            fill_alpha=0,
            line_width=2,
            line_color=Category10[10][index % 10],
            legend_label=str(kind_names[kind]),
        )
    if present:
        plot.legend.location = "top_left"
        plot.legend.click_policy = "hide"
        plot.legend.label_text_font_size = "8pt"
    return len(present)
