"""The survey simulator: what a survey is (``SurveyConfig``), its object kinds and bands, and the
stamps of a range of its objects (``simulate_stamps``). ``tfanomaly.simulate_survey`` writes a
whole survey to an HDF5 file."""

from tfanomaly._lazy import lazy_exports

_HOMES = {
    "SurveyConfig": "tfanomaly.simulate.config",
    "KIND_NAMES": "tfanomaly.simulate.config",
    "ANOMALY_KINDS": "tfanomaly.simulate.config",
    "INSTRUMENT_KINDS": "tfanomaly.simulate.config",
    "BANDS": "tfanomaly.simulate.config",
    "survey_labels": "tfanomaly.simulate.config",
    "simulate_stamps": "tfanomaly.simulate.stamps",
}
__all__ = list(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
del lazy_exports
