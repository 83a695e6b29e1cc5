"""Durable room history in SQLite: completed messages and each room's head `seq`.

Only messages are stored (a user's `Text`, a finished answer as an assistant `Text`), not
every token: that keeps writes to one per message. Writes happen on the event loop
thread; each is a small transaction in WAL mode (`synchronous=NORMAL`: a committed
transaction survives the process being killed; only a power cut may lose the last ones).

One server owns a history file at a time: it holds an exclusive lock on `<file>.lock`, and
a second server naming the same file is refused with a clear error instead of numbering
the same rooms' seqs on its own (which lost messages). A row is never replaced by another
message: only an answer stored in progress (about once a second, see answers.py) is
updated, under its own message id, until its final version replaces it.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, one server per file is on the user
    fcntl = None  # type: ignore[assignment]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    name TEXT PRIMARY KEY,
    head_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL,
    PRIMARY KEY (room, seq)
);
CREATE TABLE IF NOT EXISTS room_settings (
    name TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
"""
BUSY_TIMEOUT = 5.0  # seconds a write waits for another process's lock on the file
# How far back (in stored messages of the room) the context queries look.
CONTEXT_SCAN = 1000
# Who wrote a message and what it answers, beside `data`, with covering indexes: the
# context queries find the asker's exchanges without reading any message's text (a room
# of 1 MB posts made each `Generate` parse them all: ~0.7 s of the event loop).
_FIELDS = {"kind": "$.author.kind", "username": "$.author.username", "in_reply_to": "$.in_reply_to"}
_INDEXES = """
CREATE INDEX IF NOT EXISTS messages_recent ON messages (room, seq, kind, in_reply_to);
CREATE INDEX IF NOT EXISTS messages_asked ON messages (message_id, room, username, seq);
"""


class HistoryInUse(RuntimeError):
    """Another running server owns this history file."""


def _lock(path: Path) -> IO[str] | None:
    """Hold `<path>.lock` exclusively for the life of this process (released by the OS on exit)."""
    if fcntl is None:
        return None
    handle = open(f"{path}.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise HistoryInUse(
            f"the history file {path} is in use by another running Jupyter server (pid {owner}); "
            "stop it, or give this server its own file with --LLMChat.history_path=…"
        ) from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


class HistoryStore:
    """One SQLite file per server; rooms' head seqs and their `Text` messages."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _lock(self.path)
        # Autocommit, each write its own transaction; wait up to BUSY_TIMEOUT s for a reader
        # (a `sqlite3` shell, a backup) that holds the file, rather than fail at once.
        self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=BUSY_TIMEOUT)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._add_fields()
        self._db.executescript(_INDEXES)

    def _add_fields(self) -> None:
        """The columns of `_FIELDS`, filled from `data` once for a file written before them."""
        present = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
        missing = [name for name in _FIELDS if name not in present]
        if not missing:
            return
        with self._db:
            self._db.execute("BEGIN")
            for name in missing:
                self._db.execute(f"ALTER TABLE messages ADD COLUMN {name} TEXT")
            assign = ", ".join(f"{name} = json_extract(data, '{path}')" for name, path in _FIELDS.items())
            self._db.execute(f"UPDATE messages SET {assign}")

    def head_seq(self, room: str) -> int | None:
        """The last seq a room used, or None for a room never seen."""
        row = self._db.execute("SELECT head_seq FROM rooms WHERE name = ?", (room,)).fetchone()
        return None if row is None else int(row[0])

    def save_head(self, room: str, seq: int) -> None:
        self._db.execute(
            "INSERT INTO rooms (name, head_seq) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET head_seq = max(head_seq, excluded.head_seq)",
            (room, seq),
        )

    def add_message(self, room: str, seq: int, data: dict[str, Any], head_seq: int) -> None:
        """Store a `Text` message's data under its seq, and the room's head with it."""
        with self._db:
            self._db.execute("BEGIN")
            author = data.get("author") or {}
            self._db.execute(
                "INSERT INTO messages (room, seq, message_id, data, kind, username, in_reply_to) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(message_id) DO UPDATE SET data = excluded.data, kind = excluded.kind, "
                "username = excluded.username, in_reply_to = excluded.in_reply_to",
                (
                    room, seq, data["message_id"], json.dumps(data, ensure_ascii=False),
                    author.get("kind"), author.get("username"), data.get("in_reply_to"),
                ),
            )
            self.save_head(room, head_seq)

    def messages(
        self,
        room: str,
        *,
        before_seq: int | None = None,
        since: int | None = None,
        limit: int = 50,
    ) -> list[tuple[int, dict[str, Any]]]:
        """Messages in the given seq range, oldest first: the newest `limit` of them, or with
        `since` alone the oldest `limit` after it (paging forward)."""
        clauses, params = ["room = ?"], [room]
        if before_seq is not None:
            clauses.append("seq < ?")
            params.append(before_seq)
        if since is not None:
            clauses.append("seq > ?")
            params.append(since)
        # Paging forward from `since` takes the oldest after it (so the next page starts where
        # this one ends); otherwise the newest before `before_seq` (or of the room).
        forward = since is not None and before_seq is None
        rows = self._db.execute(
            f"SELECT seq, data FROM messages WHERE {' AND '.join(clauses)} ORDER BY seq {'ASC' if forward else 'DESC'} LIMIT ?",
            (*params, limit),
        ).fetchall()
        if not forward:
            rows.reverse()
        return [(int(seq), json.loads(data)) for seq, data in rows]

    def message(self, room: str, *, message_id: str | None = None, seq: int | None = None) -> tuple[int, dict[str, Any]] | None:
        """One stored message of `room`, by id or by seq."""
        if message_id is not None:
            row = self._db.execute(
                "SELECT seq, data FROM messages WHERE room = ? AND message_id = ?", (room, message_id)
            ).fetchone()
        else:
            row = self._db.execute("SELECT seq, data FROM messages WHERE room = ? AND seq = ?", (room, seq)).fetchone()
        return None if row is None else (int(row[0]), json.loads(row[1]))

    def exchanges(
        self, room: str, username: str, *, before_seq: int, limit: int
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """`username`'s latest (question, answer) pairs in `room` before `before_seq`, newest first.

        Only the last `CONTEXT_SCAN` messages of the room are looked at, so the cost is
        bounded whatever the room's age, and they are looked at in the indexes: only the
        pairs returned are read. A question answered twice (regenerated) counts once, with
        its newest answer.
        """
        rows = self._db.execute(
            """
            SELECT q.seq, q.data, a.data FROM
                (SELECT seq, kind, in_reply_to FROM messages WHERE room = ? AND seq < ? ORDER BY seq DESC LIMIT ?) AS recent
            JOIN messages AS q ON q.message_id = recent.in_reply_to AND q.room = ? AND q.username = ?
            JOIN messages AS a ON a.room = ? AND a.seq = recent.seq
            WHERE recent.kind = 'assistant'
            ORDER BY recent.seq DESC
            """,
            (room, before_seq, CONTEXT_SCAN, room, username, room),
        )  # a cursor: rows after the `limit`-th pair are never read
        pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
        seen: set[int] = set()
        for q_seq, q_data, a_data in rows:
            if q_seq in seen:
                continue
            seen.add(q_seq)
            pairs.append((json.loads(q_data), json.loads(a_data)))
            if len(pairs) >= limit:
                break
        return pairs

    def delete_messages(self, room: str) -> int:
        """Forget a room's messages (its head seq stays: seqs are never reused)."""
        return self._db.execute("DELETE FROM messages WHERE room = ?", (room,)).rowcount

    def delete_older_than(self, created_before: str) -> int:
        """Forget messages created before an ISO-8601 UTC time (the retention setting)."""
        return self._db.execute(
            "DELETE FROM messages WHERE json_extract(data, '$.created') < ?", (created_before,)
        ).rowcount

    def room_settings(self, room: str) -> dict[str, Any]:
        row = self._db.execute("SELECT data FROM room_settings WHERE name = ?", (room,)).fetchone()
        return {} if row is None else json.loads(row[0])

    def save_room_settings(self, room: str, settings: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO room_settings (name, data) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET data = excluded.data",
            (room, json.dumps(settings, ensure_ascii=False)),
        )

    def rooms(self) -> dict[str, int]:
        """Every room ever used, with its head seq."""
        return {name: int(head) for name, head in self._db.execute("SELECT name, head_seq FROM rooms")}

    def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            self._lock.close()
