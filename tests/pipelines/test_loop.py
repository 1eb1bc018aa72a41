"""The one resume mechanism: the ledger of a job's options and finished units."""

import json

import pytest

from tfanomaly.errors import ConfigError
from tfanomaly.pipelines.loop import Ledger, stage_options
from tfanomaly.pipelines.train import GanTrainConfig


def test_same_job_resumes_with_the_units_whose_files_exist(tmp_path):
    ledger = Ledger(tmp_path / "state.json", {"size": 4})
    assert ledger.resume("restart") == []
    for name in ("a.bin", "b.bin"):
        (tmp_path / name).write_bytes(b"x")
        ledger.add({"file": name, "count": 2})
    (tmp_path / "b.bin").unlink()  # a unit whose file went missing is done again
    again = Ledger(tmp_path / "state.json", {"size": 4})
    assert again.resume("restart") == [{"file": "a.bin", "count": 2}]
    again.close()
    assert not (tmp_path / "state.json").exists()


def test_other_options_restart_after_clearing_or_are_refused(tmp_path):
    Ledger(tmp_path / "state.json", {"size": 4}).resume("restart")
    (tmp_path / "a.bin").write_bytes(b"x")
    cleared = []
    fresh = Ledger(tmp_path / "state.json", {"size": 8})
    assert fresh.resume("restart", clear=lambda: cleared.append(1)) == [] and cleared == [1]
    assert json.loads((tmp_path / "state.json").read_text())["job"] == {"size": 8}
    with pytest.raises(ConfigError, match="size"):
        Ledger(tmp_path / "state.json", {"size": 16}).resume(
            "refuse", refusal=lambda changed: f"changed: {', '.join(changed)}"
        )


def test_sections_share_a_file_with_the_runs_own_fields(tmp_path):
    path = tmp_path / "run.json"
    gan = stage_options(GanTrainConfig(steps=10))
    assert "steps" not in gan and gan["preset"] == "auto"  # steps may change on resume
    Ledger(path, gan, section="gan").resume(
        "refuse", extra={"model": {"n": 1}}, fields={"steps": 10}
    )
    Ledger(path, {"lam": 0.3}, section="encoder").resume("refuse", fields={"steps": 5})
    saved = json.loads(path.read_text())
    assert saved["model"] == {"n": 1} and saved["gan"] == {"job": gan, "steps": 10}
    assert saved["encoder"] == {"job": {"lam": 0.3}, "steps": 5}
    # Longer training of the same stage is a resume, not a change.
    more = stage_options(GanTrainConfig(steps=20))
    Ledger(path, more, section="gan").resume("refuse", fields={"steps": 20})
    assert json.loads(path.read_text())["gan"]["steps"] == 20


def test_run_folders_of_version_0_1_still_resume(tmp_path):
    gan = stage_options(GanTrainConfig())
    (tmp_path / "run.json").write_text(json.dumps({"gan": {"architecture": gan, "steps": 5}}))
    Ledger(tmp_path / "run.json", gan, section="gan").resume("refuse")
    with pytest.raises(ConfigError):
        Ledger(tmp_path / "run.json", {**gan, "n_critic": 2}, section="gan").resume("refuse")


def test_options_added_later_resume_older_runs_and_augmented_runs_resume_too(tmp_path):
    path = tmp_path / "run.json"
    gan = stage_options(GanTrainConfig())
    assert "augment" not in gan  # at its default: as a run recorded before the option existed
    Ledger(path, gan, section="gan").resume("refuse")
    augmented = stage_options(GanTrainConfig(augment=("flip",)))
    assert augmented["augment"] == ["flip"]  # as JSON reads it back: a resume compares equal
    with pytest.raises(ConfigError):
        Ledger(path, augmented, section="gan").resume("refuse")
    Ledger(tmp_path / "aug.json", augmented, section="gan").resume("refuse")
    Ledger(
        tmp_path / "aug.json", stage_options(GanTrainConfig(augment=["flip"])), section="gan"
    ).resume("refuse")


def test_a_damaged_record_is_a_clear_error(tmp_path):
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(ConfigError, match="damaged job record"):
        Ledger(tmp_path / "state.json", {}).resume("restart")
