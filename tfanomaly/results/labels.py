"""An astronomer's labels of scored objects, kept so that nothing is lost: an append-only SQLite
event log (WAL, one fsynced transaction per label or per bulk action, which one undo takes back
whole), its export and import as CSV or FITS tables.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from tfanomaly.errors import ConfigError, InputError, UnreadableFileError
from tfanomaly.fileio import atomic_path
from tfanomaly.models.relevance import LABELS

# The label file's name in a results folder (``pipelines.config.RerankConfig.labels`` too).
LABEL_FILE = "labels.sqlite"
TABLE_COLUMNS = ("object_id", "label", "tags", "note", "time")
TABLE_FORMATS = (".csv", ".fits")
MAX_TAG = 64
MAX_NOTE = 10_000
SCHEMA_VERSION = 2  # 2: events.batch (files of version 1 gain it when opened)

# Object ids are uint64 and SQLite integers signed 64-bit: ids are stored as decimal text. Every
# change is a new row of ``events``; an undo is a row whose ``undoes`` names the event it takes
# back, so the table is only ever appended to and keeps the whole history. The events of one
# bulk action (``set_many``: a cluster, a selection, an imported table) share a ``batch`` number,
# and one undo takes them all back.
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    object_id TEXT NOT NULL,
    label TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    note TEXT NOT NULL DEFAULT '',
    time TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    undoes INTEGER REFERENCES events(seq),
    batch INTEGER
);
CREATE INDEX IF NOT EXISTS events_object ON events(object_id);
CREATE INDEX IF NOT EXISTS events_undoes ON events(undoes);
CREATE VIEW IF NOT EXISTS effective AS
    SELECT * FROM events WHERE undoes IS NULL
    AND seq NOT IN (SELECT undoes FROM events WHERE undoes IS NOT NULL);
CREATE VIEW IF NOT EXISTS current_labels AS
    SELECT e.* FROM effective e
    JOIN (SELECT object_id, MAX(seq) AS seq FROM effective GROUP BY object_id) latest
    ON e.seq = latest.seq;
"""
BATCH_INDEX = "CREATE INDEX IF NOT EXISTS events_batch ON events(batch)"


def default_label_path(results) -> Path:
    """``RESULTS/labels.sqlite`` for a results folder; beside the file for a results file."""
    results = Path(results)
    return (results if results.is_dir() else results.parent) / LABEL_FILE


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_object_id(value) -> int:
    """An object id (int, or decimal text as JSON and CSV carry them) as an exact Python int."""
    if isinstance(value, bool | float | np.floating):
        raise InputError(f"object id {value!r}: give ids as integers or decimal text, not floats")
    text = str(value).strip()
    if not text.isdigit() or int(text) >= 2**64:
        raise InputError(f"object id {value!r} is not an unsigned 64-bit integer")
    return int(text)


def check_label(label) -> str | None:
    if label is None:
        return None
    name = str(label).strip().lower()
    if name not in LABELS:
        raise InputError(f"unknown label '{label}'; use one of {', '.join(LABELS)}")
    return name


def check_tags(tags) -> list[str]:
    """Free tags: a list, or text separated by commas or semicolons; order kept, duplicates out."""
    if isinstance(tags, str):
        tags = tags.replace(";", ",").split(",")
    if not isinstance(tags, list | tuple):
        raise InputError(f"tags must be a list of text, got {type(tags).__name__}")
    clean: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise InputError(f"tag {tag!r} is not text")
        tag = " ".join(tag.split())
        if "," in tag or ";" in tag or len(tag) > MAX_TAG:
            raise InputError(
                f"tag '{tag[:MAX_TAG]}': no commas or semicolons, at most {MAX_TAG} characters"
            )
        if tag and tag not in clean:
            clean.append(tag)
    return clean


def check_note(note) -> str:
    if not isinstance(note, str):
        raise InputError(f"a note must be text, got {type(note).__name__}")
    if len(note) > MAX_NOTE:
        raise InputError(f"a note is at most {MAX_NOTE} characters, got {len(note)}")
    return note


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a label file of an older schema up to ``SCHEMA_VERSION`` in one transaction (a
    second process opening the same old file at once finds it done); a current file is only read."""

    def current() -> bool:
        columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return "batch" in columns and version is not None and int(version[0]) >= SCHEMA_VERSION

    if current():
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if "batch" not in {row[1] for row in db.execute("PRAGMA table_info(events)")}:
            db.execute("ALTER TABLE events ADD COLUMN batch INTEGER")  # version 1: no bulk actions
        db.execute(BATCH_INDEX)
        db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _record(row) -> dict:
    return {
        "label": row["label"],
        "tags": json.loads(row["tags"]),
        "note": row["note"],
        "time": row["time"],
        "version": int(row["version"]),
    }


class LabelStore:
    """The labels of one astronomer (or a team sharing the file), one SQLite file.

    Every ``set`` and ``undo`` is its own transaction, committed with ``synchronous=FULL`` in WAL
    mode before it returns: a killed process or a power cut loses at most the label being written.
    Several processes may share the file (WAL readers do not block the writer).

    Args:
        path: the SQLite file; created with its folder when missing.

    Example:
        >>> import tempfile
        >>> store = LabelStore(Path(tempfile.mkdtemp()) / "labels.sqlite")
        >>> _ = store.set(2**60 + 7, label="interesting", tags=["merger"], note="tidal bridge?")
        >>> _ = store.set(2**60 + 7, label="artifact")
        >>> record = store.current()[2**60 + 7]
        >>> record["label"], record["tags"]
        ('artifact', ['merger'])
        >>> store.undo()  # takes the last change back # doctest: +ELLIPSIS
        {...'label': 'interesting'...}
        >>> store.close()
    """

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            _migrate(self._db)
        except sqlite3.DatabaseError as exc:
            raise UnreadableFileError(f"{self.path}: not a tfanomaly label file: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def _latest(self, key: str) -> sqlite3.Row | None:
        return self._db.execute(
            "SELECT * FROM events WHERE object_id = ? AND undoes IS NULL AND seq NOT IN "
            "(SELECT undoes FROM events WHERE object_id = ? AND undoes IS NOT NULL) "
            "ORDER BY seq DESC LIMIT 1",
            (key, key),
        ).fetchone()

    def _append(
        self, oid: int, label, tags, note, version: int, time: str | None, batch: int | None = None
    ) -> dict:
        """One event with the object's whole new state: given fields replace, None keeps."""
        key = str(oid)
        previous = self._latest(key)
        state = _record(previous) if previous else {"label": None, "tags": [], "note": ""}
        label = state["label"] if label is None else check_label(label)
        tags = state["tags"] if tags is None else check_tags(tags)
        note = state["note"] if note is None else check_note(note)
        row = (key, label, json.dumps(tags), note, time or now(), int(version), batch)
        self._db.execute(
            "INSERT INTO events (object_id, label, tags, note, time, version, batch) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            row,
        )
        return {"label": label, "tags": tags, "note": note, "time": row[4], "version": row[5]}

    def set(self, object_id, label=None, tags=None, note=None, version: int = 0) -> dict:
        """Record a label, tags (replacing the object's tags) and/or a note; what is None stays as
        it was. Returns the object's new record. Committed to disk when it returns."""
        oid = parse_object_id(object_id)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                record = self._append(oid, label, tags, note, version, None)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return record

    def set_many(self, records, version: int = 0) -> int:
        """Record many objects' states as one bulk action, in one transaction (all or none):
        ``records`` yields dicts with ``object_id`` and any of ``label``, ``tags``, ``note``,
        ``time``. The events share a batch number: one :meth:`undo` takes them all back."""
        count = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                batch = self._db.execute(
                    "SELECT COALESCE(MAX(batch), 0) + 1 FROM events"
                ).fetchone()[0]
                for item in records:
                    self._append(
                        parse_object_id(item["object_id"]),
                        item.get("label"),
                        item.get("tags"),
                        item.get("note"),
                        version,
                        item.get("time") or None,
                        batch,
                    )
                    count += 1
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return count

    def undo(self) -> dict | None:
        """Take back the most recent change still in effect: one label, or every label of the
        most recent bulk action (:meth:`set_many`) still in effect, in one transaction (repeat to
        walk back further).

        Returns the last object's record after the undo, with ``object_id``, ``undone`` (the
        record taken back), ``batch`` (the bulk action's number, None for one label) and
        ``objects``: every object taken back, each as such a record (one for a single label).
        A ``label`` is None when nothing is left. None: nothing to undo.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                last = self._db.execute(
                    "SELECT * FROM effective ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                if last is None:
                    self._db.execute("ROLLBACK")
                    return None
                events = [last]
                if last["batch"] is not None:
                    events = self._db.execute(
                        "SELECT * FROM effective WHERE batch = ? ORDER BY seq DESC",
                        (last["batch"],),
                    ).fetchall()
                stamp = now()
                for event in events:
                    self._db.execute(
                        "INSERT INTO events (object_id, tags, note, time, version, "
                        "undoes) VALUES (?, '[]', '', ?, ?, ?)",
                        (event["object_id"], stamp, event["version"], event["seq"]),
                    )
                # Each object once (a bulk action may name one twice), the most recent first.
                taken = {}
                for event in events:
                    taken.setdefault(event["object_id"], event)
                after = {key: self._latest(key) for key in taken}
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        objects = []
        for key, event in reversed(taken.items()):
            row = after[key]
            record = (
                _record(row)
                if row
                else {
                    "label": None,
                    "tags": [],
                    "note": "",
                    "time": None,
                    "version": event["version"],
                }
            )
            objects.append({"object_id": int(key), **record, "undone": _record(event)})
        return {**objects[-1], "batch": last["batch"], "objects": objects}

    def current(self) -> dict[int, dict]:
        """Each object's latest record: {object id: {label, tags, note, time, version}}."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM current_labels").fetchall()
        return {int(row["object_id"]): _record(row) for row in rows}

    def get(self, object_id) -> dict | None:
        with self._lock:
            row = self._latest(str(parse_object_id(object_id)))
        return _record(row) if row else None

    def history(self, object_id=None) -> list[dict]:
        """Every event (oldest first), of one object or of all; undo events carry ``undoes``, the
        events of a bulk action their ``batch``."""
        query, args = "SELECT * FROM events", ()
        if object_id is not None:
            query, args = query + " WHERE object_id = ?", (str(parse_object_id(object_id)),)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY seq", args).fetchall()
        return [
            {
                "seq": row["seq"],
                "object_id": int(row["object_id"]),
                **_record(row),
                "undoes": row["undoes"],
                "batch": row["batch"],
            }
            for row in rows
        ]

    def max_version(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(version) FROM events").fetchone()
        return int(row[0] or 0)


def _table_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise ConfigError(f"{path}: label tables are {' or '.join(TABLE_FORMATS)} files")
    return suffix


def export_labels(store: LabelStore, out_path) -> int:
    """Write the current labels as a table (columns ``TABLE_COLUMNS``, sorted by object id;
    tags joined by commas) to ``out_path`` (.csv or .fits) atomically; returns the row count."""
    out_path = Path(out_path)
    suffix = _table_format(out_path)
    current = sorted(store.current().items())
    rows = [
        (oid, r["label"] or "", ",".join(r["tags"]), r["note"], r["time"]) for oid, r in current
    ]
    with atomic_path(out_path) as tmp:
        if suffix == ".csv":
            with tmp.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(TABLE_COLUMNS)
                writer.writerows(rows)
        else:
            from astropy.table import Table

            table = Table()
            table["object_id"] = np.array([r[0] for r in rows], dtype=np.uint64)
            for k, name in enumerate(TABLE_COLUMNS[1:], start=1):
                # UTF-8 bytes: FITS tables hold ASCII characters, notes may not be ASCII.
                values = [r[k].encode("utf-8") for r in rows]
                table[name] = np.array(values, dtype=f"S{max([1, *map(len, values)])}")
            table.meta["EXTNAME"] = "LABELS"
            table.write(tmp, format="fits", overwrite=True)
    return len(rows)


def _text(value) -> str:
    if value is None or np.ma.is_masked(value):
        return ""
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8")
    return str(value)


def read_label_table(path) -> list[dict]:
    """The rows of a label table (.csv or .fits): ``object_id`` is required, ``label``, ``tags``,
    ``note`` and ``time`` are optional (a missing column leaves that field as it is)."""
    path = Path(path)
    suffix = _table_format(path)
    if not path.exists():
        raise InputError(f"{path}: no such label table")
    try:
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                names = [n.strip().lower() for n in reader.fieldnames or ()]
                rows = [dict(zip(names, row.values(), strict=False)) for row in reader]
        else:
            from astropy.table import Table

            table = Table.read(path, format="fits", character_as_bytes=True)
            names = [n.lower() for n in table.colnames]
            rows = [dict(zip(names, row, strict=True)) for row in table]
    except (OSError, ValueError, csv.Error, UnicodeDecodeError) as exc:
        raise UnreadableFileError(f"{path}: not a readable label table: {exc}") from exc
    if "object_id" not in names:
        raise InputError(
            f"{path}: a label table needs an object_id column (has: {', '.join(names) or 'none'})"
        )
    records = []
    for number, row in enumerate(rows, start=2 if suffix == ".csv" else 1):
        raw_id = row["object_id"]
        try:
            raw_id = int(raw_id) if isinstance(raw_id, np.integer) else _text(raw_id)
            record = {"object_id": parse_object_id(raw_id)}
            if "label" in names:
                record["label"] = check_label(_text(row["label"]) or None)
            if "tags" in names:
                record["tags"] = check_tags(_text(row["tags"]))
            if "note" in names:
                record["note"] = check_note(_text(row["note"]))
            if "time" in names:
                record["time"] = _text(row["time"]).strip() or None
        except InputError as exc:
            raise InputError(f"{path}, row {number}: {exc}") from exc
        records.append(record)
    return records


def import_labels(store: LabelStore, in_path, version: int = 0) -> int:
    """Add the rows of a label table to the store in one transaction; returns the row count."""
    return store.set_many(read_label_table(in_path), version=version)
