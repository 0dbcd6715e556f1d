"""Replaying a remote run's journal into this machine's store.

A run on a remote host records into a store of its own there, and every change is also
appended to a journal (one JSON line per change, see ``Store._journal``). The supervisor
here reads the journal from a byte offset and applies whole lines with :func:`apply`,
which stores the new offset in the same transaction as the changes. So a replay cut off
at any point (link lost, daemon killed) resumes right after the last applied line:
nothing is applied twice and nothing is lost.

Run ids are the same on both sides (the remote run is created with this run's id, and
its children are named after it), so no mapping is needed.

Besides the run history (runs, statuses, tags, properties, metrics, files), a script on
the host reaches this workspace with:

- ``model``: ``run.register_model`` / ``Model.register``: a new version here, numbered
  after this workspace's own versions of the name (the host's private registry numbers
  every run's first model 1);
- ``snapshot``: ``run.take_snapshot``;
- ``submit``: ``run.submit_child`` / ``Experiment.submit`` there: the run is recorded here
  as a submit here records it (Starting, its definition and snapshot), and this
  workspace's daemon launches it (the caller of ``apply`` wakes it); nothing launches it
  on the host.

An event may name blobs (``"blobs"``: digests); the host's agent sends their contents
ahead of the line (``remote_agent.Session._send_blobs``), so they are here when it applies.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from typing import Any

from runner.models import insert_model
from runner.store import Store

#: The stream name of the journal in ``sync_offsets``.
JOURNAL = "journal"
#: Columns a remote process may set on a run (the supervisor owns the others: handle,
#: heartbeat, definition, target).
_RUN_COLUMNS = {"display_name", "description", "status_details", "error", "start_utc", "end_utc"}


def applied_offset(store: Store, run_id: str, stream: str = JOURNAL) -> int:
    """How many bytes of the run's journal have been applied."""
    rows = store.query(
        "SELECT offset FROM sync_offsets WHERE run_id = ? AND stream = ?", (run_id, stream)
    )
    return int(rows[0][0]) if rows else 0


def complete_lines(data: bytes) -> bytes:
    """The prefix of ``data`` that ends with a newline (a partial last line waits)."""
    end = data.rfind(b"\n")
    return data[: end + 1] if end >= 0 else b""


def apply(
    store: Store,
    run_id: str,
    offset: int,
    data: bytes,
    submitted: list[str] | None = None,
    stream: str = JOURNAL,
) -> int:
    """Apply the journal lines in ``data`` (which starts at byte ``offset``).

    Only whole lines are applied; returns the offset after the last one. A chunk that
    does not start at the stored offset is ignored (a resent chunk already applied).
    The ids of runs handed over for this workspace to launch (``submit`` events) are
    appended to ``submitted``. ``stream``: which journal of the run (a distributed run
    on a cluster has one per rank: ``journal``, ``journal_1``...), each with its offset.
    """
    lines = complete_lines(data)
    if not lines:
        return offset
    with store.write() as conn:
        row = conn.execute(
            "SELECT offset FROM sync_offsets WHERE run_id = ? AND stream = ?", (run_id, stream)
        ).fetchone()
        if (int(row[0]) if row else 0) != offset:
            return int(row[0]) if row else 0
        handed: list[str] = []
        for line in lines.splitlines():
            if line.strip():
                _apply_one(conn, json.loads(line), handed)
        new = offset + len(lines)
        conn.execute(
            "INSERT OR REPLACE INTO sync_offsets(run_id, stream, offset) VALUES (?,?,?)",
            (run_id, stream, new),
        )
    if submitted is not None:
        submitted.extend(handed)
    return new


def _apply_one(conn: sqlite3.Connection, ev: dict[str, Any], submitted: list[str]) -> None:
    kind = ev.get("e")
    run_id = ev.get("id")
    if kind == "run":
        _create_run(conn, ev)
    elif kind == "submit":
        if _create_run(conn, ev):
            submitted.append(str(run_id))
    elif kind == "model":
        # Numbered here: two runs' first versions on their hosts are 1 and 2 here.
        insert_model(conn, ev["model"], ev["files"])
    elif kind == "snapshot":
        conn.execute(
            "INSERT OR IGNORE INTO run_snapshots(run_id, snapshot_id, created_utc) VALUES (?,?,?)",
            (run_id, ev["snapshot"], ev["created"]),
        )
    elif kind == "update":
        fields = {k: v for k, v in ev["fields"].items() if k in _RUN_COLUMNS}
        if fields:
            sets = ", ".join(f"{k} = ?" for k in fields)
            conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id))  # noqa: S608
    elif kind == "status":
        _set_status(conn, ev)
    elif kind == "tags":
        conn.executemany(
            "INSERT OR REPLACE INTO tags(run_id, key, value) VALUES (?,?,?)",
            [(run_id, k, v) for k, v in ev["tags"].items()],
        )
    elif kind == "untag":
        conn.executemany(
            "DELETE FROM tags WHERE run_id = ? AND key = ?", [(run_id, k) for k in ev["keys"]]
        )
    elif kind == "props":
        # Properties are immutable: a key set here meanwhile keeps its value.
        conn.executemany(
            "INSERT OR IGNORE INTO properties(run_id, key, value) VALUES (?,?,?)",
            [(run_id, k, v) for k, v in ev["props"].items()],
        )
    elif kind == "meta":
        has_step = ev.get("has_step")
        conn.execute(
            "INSERT OR IGNORE INTO metric_meta(run_id, name, kind, has_step, description) "
            "VALUES (?,?,?,?,?)",
            (
                run_id,
                ev["name"],
                ev["kind"],
                None if has_step is None else int(has_step),
                ev.get("description"),
            ),
        )
    elif kind == "metrics":
        conn.executemany(
            "INSERT INTO metrics(run_id, name, enc, data, steps, count, time_utc) "
            "VALUES (?,?,?,?,?,?,?)",
            [
                (
                    rid,
                    name,
                    enc,
                    base64.b64decode(data),
                    None if steps is None else base64.b64decode(steps),
                    count,
                    when,
                )
                for rid, name, enc, data, steps, count, when in ev["rows"]
            ],
        )
    elif kind == "files":
        verb = "REPLACE" if ev.get("replace") else "IGNORE"
        conn.executemany(
            f"INSERT OR {verb} INTO files(run_id, name, digest, size, created_utc) "  # noqa: S608
            "VALUES (?,?,?,?,?)",
            [(run_id, n, d, s, time.time()) for n, d, s in ev["entries"]],
        )
    # Unknown kinds come from a newer remote side: skipping them loses only that detail.


def _create_run(conn: sqlite3.Connection, ev: dict[str, Any]) -> bool:
    """Record a run of a ``run`` or ``submit`` event; False if its id is taken."""
    run_id = ev["id"]
    if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
        return False
    conn.execute(
        "INSERT OR IGNORE INTO experiments(name, created_utc) VALUES (?, ?)",
        (ev["experiment"], ev["created"]),
    )
    exp_id, number = conn.execute(
        "SELECT id, next_number FROM experiments WHERE name = ?", (ev["experiment"],)
    ).fetchone()
    parent = ev.get("parent")
    root = run_id
    if parent is not None:
        prow = conn.execute("SELECT root_id FROM runs WHERE id = ?", (parent,)).fetchone()
        root = prow[0] if prow else run_id
    status = ev["status"]
    running = ev["created"] if status == "Running" else None
    definition = ev.get("definition")
    conn.execute(
        "INSERT INTO runs(id, experiment_id, number, parent_id, root_id, type, status, "
        "display_name, target, created_utc, start_utc, heartbeat_utc, submitted_by, "
        "definition, child_count) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,0)",
        (
            run_id,
            exp_id,
            number,
            parent,
            root,
            ev["type"],
            status,
            ev.get("display_name"),
            ev["target"],
            ev["created"],
            running,
            running,
            ev.get("submitted_by"),
            None if definition is None else json.dumps(definition),
        ),
    )
    conn.execute("UPDATE experiments SET next_number = ? WHERE id = ?", (number + 1, exp_id))
    if parent is not None:
        conn.execute("UPDATE runs SET child_count = child_count + 1 WHERE id = ?", (parent,))
    tags = ev.get("tags") or {}
    conn.executemany(
        "INSERT OR REPLACE INTO tags(run_id, key, value) VALUES (?,?,?)",
        [(run_id, k, v) for k, v in tags.items()],
    )
    props = ev.get("props") or {}
    conn.executemany(
        "INSERT OR IGNORE INTO properties(run_id, key, value) VALUES (?,?,?)",
        [(run_id, k, v) for k, v in props.items()],
    )
    if ev.get("snapshot"):
        conn.execute(
            "INSERT OR IGNORE INTO run_snapshots(run_id, snapshot_id, created_utc) VALUES (?,?,?)",
            (run_id, ev["snapshot"], ev["created"]),
        )
    return True


def _set_status(conn: sqlite3.Connection, ev: dict[str, Any]) -> None:
    run_id = ev["id"]
    row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        return
    current = str(row[0])
    allowed = ev.get("from")
    # The remote side never saw this run NotResponding: that is a local view of Running.
    seen = "Running" if current == "NotResponding" else current
    if allowed is not None and seen not in allowed:
        return
    sets = ["status = ?", "status_details = ?"]
    params: list[Any] = [ev["status"], ev.get("details")]
    when = ev.get("time")
    if ev.get("start"):
        sets.append("start_utc = COALESCE(start_utc, ?)")
        params.append(when)
    if ev.get("end"):
        sets.append("end_utc = ?")
        params.append(when)
    if ev.get("error") is not None:
        sets.append("error = ?")
        params.append(json.dumps(ev["error"]))
    conn.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", (*params, run_id))  # noqa: S608
