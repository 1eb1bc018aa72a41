"""Scored results: the results HDF5 and its catalogs, the label store, the results browser and the
HTML report (each imported when first used)."""

from tfanomaly._lazy import lazy_exports

_HOMES = {
    "read_results": "tfanomaly.results.catalog",
    "read_cube": "tfanomaly.results.catalog",
    "read_statistics": "tfanomaly.results.catalog",
    "catalog_table": "tfanomaly.results.catalog",
    "write_catalog": "tfanomaly.results.catalog",
    "merge_results": "tfanomaly.results.catalog",
    "SCORE_KEYS": "tfanomaly.results.catalog",
    "CATALOG_COLUMNS": "tfanomaly.results.catalog",
    "IMAGE_KEYS": "tfanomaly.results.catalog",
    "VECTOR_KEYS": "tfanomaly.results.catalog",
    "LabelStore": "tfanomaly.results.labels",
    "default_label_path": "tfanomaly.results.labels",
    "export_labels": "tfanomaly.results.labels",
    "import_labels": "tfanomaly.results.labels",
    "read_label_table": "tfanomaly.results.labels",
    "ResultsView": "tfanomaly.results.browse",
    "build_report": "tfanomaly.results.report",
}
__all__ = list(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
del lazy_exports
