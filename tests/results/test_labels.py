"""The label store: exact uint64 ids, merged records, undo through the history, WAL and fsynced
transactions (a killed process loses nothing committed), shared files, and label tables in and out
(CSV and FITS)."""

import csv
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from astropy.table import Table
from conftest import BIG_ID

from tfanomaly.errors import ConfigError, InputError, UnreadableFileError
from tfanomaly.models.relevance import LABELS
from tfanomaly.pipelines.config import RerankConfig
from tfanomaly.results.labels import (
    LABEL_FILE,
    LabelStore,
    default_label_path,
    export_labels,
    import_labels,
    read_label_table,
)

TOP_ID = 2**64 - 1  # above int64: SQLite integers could not hold it


@pytest.fixture
def store(tmp_path):
    with LabelStore(tmp_path / "labels.sqlite") as opened:
        yield opened


def test_set_current_and_exact_ids(store):
    assert store.current() == {} and store.undo() is None
    record = store.set(TOP_ID, label="interesting", tags=["merger", "tidal tail"], version=2)
    assert record["label"] == "interesting" and record["tags"] == ["merger", "tidal tail"]
    store.set(str(BIG_ID), label="Artifact ", note="satellite trail in g")
    current = store.current()
    assert set(current) == {TOP_ID, BIG_ID}
    assert current[TOP_ID] == {
        "label": "interesting",
        "tags": ["merger", "tidal tail"],
        "note": "",
        "time": record["time"],
        "version": 2,
    }
    assert current[BIG_ID]["label"] == "artifact" and current[BIG_ID]["note"].endswith("in g")
    # Fields not given stay: a note alone keeps the label, new tags replace the old ones.
    store.set(TOP_ID, note="two nuclei")
    store.set(TOP_ID, tags="arc; ring,arc")
    assert store.get(TOP_ID) | {"time": None} == {
        "label": "interesting",
        "tags": ["arc", "ring"],
        "note": "two nuclei",
        "time": None,
        "version": 0,
    }
    with sqlite3.connect(store.path) as db:  # ids are decimal text, exact
        assert (str(TOP_ID),) in db.execute("SELECT object_id FROM events").fetchall()


def test_bad_labels_tags_ids_are_clear_errors(store):
    with pytest.raises(InputError, match="unknown label 'lens'; use one of interesting, artifact"):
        store.set(1, label="lens")
    with pytest.raises(InputError, match="not an unsigned 64-bit integer"):
        store.set(2**64, label="normal")
    with pytest.raises(InputError, match="not an unsigned 64-bit integer"):
        store.set("-3", label="normal")
    with pytest.raises(InputError, match="not floats"):
        store.set(3.0, label="normal")
    with pytest.raises(InputError, match="no commas"):
        store.set(1, tags=["a" * 65])
    with pytest.raises(InputError, match="tags must be a list"):
        store.set(1, tags=7)
    with pytest.raises(InputError, match="a note must be text"):
        store.set(1, note=5)
    assert store.current() == {} and store.history() == []  # nothing half-written


def test_undo_walks_back_through_the_history(store):
    store.set(5, label="normal")
    store.set(5, label="interesting", tags=["merger"])
    store.set(6, label="artifact")
    undone = store.undo()
    assert undone["object_id"] == 6 and undone["label"] is None and undone["time"] is None
    assert undone["undone"]["label"] == "artifact"
    undone = store.undo()
    assert undone["object_id"] == 5 and undone["label"] == "normal" and undone["tags"] == []
    assert store.current() == {5: store.get(5)} and store.get(6) is None
    store.set(7, label="normal")  # new labels after an undo go on top of the history
    assert store.undo()["object_id"] == 7
    assert store.undo()["object_id"] == 5 and store.undo() is None and store.current() == {}
    kinds = [e["undoes"] is not None for e in store.history()]
    assert kinds == [False, False, False, True, True, False, True, True]  # append-only


def test_wal_fsync_and_reopening(tmp_path):
    path = tmp_path / "sub" / "labels.sqlite"
    with LabelStore(path) as store:
        store.set(BIG_ID, label="interesting")
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with LabelStore(path) as again:
        assert again.current()[BIG_ID]["label"] == "interesting"
    (tmp_path / "junk.sqlite").write_bytes(b"x" * 4096)
    with pytest.raises(UnreadableFileError, match="not a tfanomaly label file"):
        LabelStore(tmp_path / "junk.sqlite")


def test_a_killed_process_keeps_every_committed_label(tmp_path):
    path = tmp_path / "labels.sqlite"
    script = (
        "import os, signal, sys\n"
        "from tfanomaly.results.labels import LabelStore\n"
        f"store = LabelStore({str(path)!r})\n"
        "for k in range(40):\n"
        f"    store.set({BIG_ID} + k, label=('interesting', 'artifact', 'normal')[k % 3])\n"
        "    print(k, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL and done.stdout.split()[-1] == "39"
    with LabelStore(path) as store:
        current = store.current()
    assert sorted(current) == [BIG_ID + k for k in range(40)]
    assert current[BIG_ID + 4]["label"] == "artifact"


def test_two_stores_share_one_file(tmp_path):
    with LabelStore(tmp_path / "l.sqlite") as a, LabelStore(tmp_path / "l.sqlite") as b:
        a.set(1, label="normal")
        b.set(2, label="interesting")
        assert set(a.current()) == set(b.current()) == {1, 2}


def test_names_agree_with_the_ranking_and_the_cli(tmp_path):
    assert LABELS == ("interesting", "artifact", "normal")
    assert LABEL_FILE == RerankConfig.labels
    assert default_label_path(tmp_path) == tmp_path / LABEL_FILE
    (tmp_path / "paper.h5").touch()
    assert default_label_path(tmp_path / "paper.h5") == tmp_path / LABEL_FILE


@pytest.mark.parametrize("suffix", [".csv", ".fits"])
def test_export_import_round_trip(store, tmp_path, suffix):
    store.set(TOP_ID, label="interesting", tags=["lensed arc", "blue"], note="Einstein ring, λ?")
    store.set(BIG_ID, label="artifact", note='ghost, "halo"\nsecond line')
    store.set(BIG_ID + 1, note="no label yet")
    out = tmp_path / f"labels{suffix}"
    assert export_labels(store, out) == 3
    assert not list(tmp_path.glob(".*partial*"))  # written atomically
    rows = read_label_table(out)
    assert [r["object_id"] for r in rows] == [BIG_ID, BIG_ID + 1, TOP_ID]
    with LabelStore(tmp_path / "colleague.sqlite") as other:
        assert import_labels(other, out) == 3
        theirs, ours = other.current(), store.current()
    for oid in ours:
        for field in ("label", "tags", "note", "time"):
            assert theirs[oid][field] == ours[oid][field], (oid, field)
    if suffix == ".fits":
        table = Table.read(out)
        assert table["object_id"].dtype == np.uint64 and int(table["object_id"][2]) == TOP_ID
    else:
        with out.open(newline="") as handle:
            assert next(csv.reader(handle)) == ["object_id", "label", "tags", "note", "time"]


def test_import_tables_from_elsewhere(store, tmp_path):
    table = tmp_path / "zoo.csv"
    table.write_text(f"object_id,label,extra\n{BIG_ID},Interesting,x\n{BIG_ID + 1},,y\n")
    store.set(BIG_ID + 1, label="normal", tags=["kept"])
    assert import_labels(store, table, version=4) == 2
    assert store.get(BIG_ID)["label"] == "interesting" and store.get(BIG_ID)["version"] == 4
    assert store.get(BIG_ID + 1)["label"] == "normal"  # empty label, no tags column: kept
    assert store.get(BIG_ID + 1)["tags"] == ["kept"]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"object_id,label\n{BIG_ID + 5},normal\n{BIG_ID + 6},spiral\n")
    with pytest.raises(InputError, match=r"bad.csv, row 3: unknown label 'spiral'"):
        import_labels(store, bad)
    assert store.get(BIG_ID + 5) is None  # all rows or none
    (tmp_path / "noid.csv").write_text("id,label\n1,normal\n")
    with pytest.raises(InputError, match="needs an object_id column"):
        read_label_table(tmp_path / "noid.csv")
    with pytest.raises(ConfigError, match="label tables are .csv or .fits"):
        read_label_table(tmp_path / "labels.parquet")
    with pytest.raises(InputError, match="no such label table"):
        read_label_table(tmp_path / "missing.csv")


def test_one_undo_takes_back_a_whole_bulk_action(store):
    store.set(1, label="normal", tags=["kept"])
    members = [BIG_ID + k for k in range(40)] + [TOP_ID]
    records = [
        {"object_id": oid, "label": "artifact", "tags": ["satellite trail", "cluster:7"]}
        for oid in members
    ]
    assert store.set_many(records) == 41
    store.set_many([{"object_id": 1, "label": "artifact", "tags": ["selection"]}])
    store.set(2, label="interesting")
    assert store.undo()["object_id"] == 2  # a single label: one object
    undone = store.undo()  # the second bulk action: object 1 back to its own label
    assert undone["object_id"] == 1 and undone["label"] == "normal" and undone["tags"] == ["kept"]
    assert [o["object_id"] for o in undone["objects"]] == [1] and undone["batch"] is not None
    current = store.current()
    assert all(current[oid]["tags"] == ["satellite trail", "cluster:7"] for oid in members)
    undone = store.undo()  # the first: all 41 at once
    assert undone["batch"] == 1 and sorted(o["object_id"] for o in undone["objects"]) == members
    assert all(o["label"] is None and o["undone"]["label"] == "artifact" for o in undone["objects"])
    assert store.current() == {1: store.get(1)}
    assert store.undo()["object_id"] == 1 and store.undo() is None
    batches = {e["batch"] for e in store.history() if e["undoes"] is None}
    assert batches == {None, 1, 2}


def test_a_label_after_a_bulk_action_is_undone_alone_first(store):
    store.set_many([{"object_id": k, "label": "normal"} for k in (3, 4, 5)])
    store.set(4, label="interesting")
    undone = store.undo()
    assert undone["batch"] is None and [o["object_id"] for o in undone["objects"]] == [4]
    assert store.get(4)["label"] == "normal" and len(store.current()) == 3
    assert len(store.undo()["objects"]) == 3 and store.current() == {}


def test_a_label_file_of_the_first_schema_opens_and_gains_batches(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the schema of tfanomaly's first label files
        db.executescript("""
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, object_id TEXT NOT NULL, label TEXT,
                tags TEXT NOT NULL DEFAULT '[]', note TEXT NOT NULL DEFAULT '',
                time TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 0,
                undoes INTEGER REFERENCES events(seq));
            CREATE INDEX events_object ON events(object_id);
            CREATE INDEX events_undoes ON events(undoes);
            CREATE VIEW effective AS SELECT * FROM events WHERE undoes IS NULL
                AND seq NOT IN (SELECT undoes FROM events WHERE undoes IS NOT NULL);
            CREATE VIEW current_labels AS SELECT e.* FROM effective e
                JOIN (SELECT object_id, MAX(seq) AS seq FROM effective GROUP BY object_id) latest
                ON e.seq = latest.seq;
            INSERT INTO meta VALUES ('schema_version', '1');""")
        db.execute(
            "INSERT INTO events (object_id, label, tags, time) VALUES (?, 'interesting', "
            "'[\"arc\"]', '2024-01-01T00:00:00.000Z')",
            (str(TOP_ID),),
        )
        db.execute(
            "INSERT INTO events (object_id, label, time) VALUES ('5', 'normal', "
            "'2024-01-02T00:00:00.000Z')"
        )
    with LabelStore(path) as store:
        assert store.current()[TOP_ID]["tags"] == ["arc"] and store.get(5)["label"] == "normal"
        store.set_many([{"object_id": k, "label": "artifact", "tags": "cluster:0"} for k in (6, 7)])
        assert len(store.undo()["objects"]) == 2 and set(store.current()) == {TOP_ID, 5}
        assert store.undo()["object_id"] == 5  # the old single labels undo one at a time
    with LabelStore(path) as again, sqlite3.connect(path) as db:  # opens as it is now
        assert again.current() == {TOP_ID: again.get(TOP_ID)}
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert version == ("2",)
        assert "batch" in {row[1] for row in db.execute("PRAGMA table_info(events)")}
