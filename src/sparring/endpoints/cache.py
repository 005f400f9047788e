"""Answers already paid for, by a hash of everything that decides them (model, request, draw),
in one SQLite file per endpoint in the run folder. Each answer is committed as it arrives, so a
run killed mid-step keeps what it paid for."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any


def request_key(payload: dict[str, Any]) -> str:
    """SHA-256 of the request as canonical JSON (the API key is never part of it)."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    """``get(key)`` / ``put(key, value)`` of JSON values; in memory when ``path`` is None."""

    def __init__(self, path: Path | None = None):
        self.path = path
        self._lock = threading.Lock()
        self._memory: dict[str, str] = {}
        self._db = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            self._db.commit()

    def get(self, key: str) -> Any | None:
        with self._lock:
            if self._db is None:
                raw = self._memory.get(key)
            else:
                row = self._db.execute("SELECT value FROM answers WHERE key = ?", (key,)).fetchone()
                raw = row[0] if row else None
        return None if raw is None else json.loads(raw)

    def put(self, key: str, value: Any) -> None:
        raw = json.dumps(value, ensure_ascii=False)
        with self._lock:
            if self._db is None:
                self._memory[key] = raw
            else:
                self._db.execute(
                    "INSERT OR REPLACE INTO answers (key, value) VALUES (?, ?)", (key, raw)
                )
                self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            if self._db is None:
                return len(self._memory)
            return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class RequestBudget:
    """The HTTP attempts an endpoint may still make: ``reserve()`` takes one, or says False when
    ``limit`` is spent. The count lives in a SQLite file (``path``) that every process of a run
    opens, and a reservation is one atomic statement, so N processes share one budget instead of
    spending N of them; in memory (this process alone) without ``path``. No limit: always True.
    """

    def __init__(self, limit: int | None, path: Path | None = None, name: str = "endpoint"):
        self.limit, self.name = limit, name
        self._lock = threading.Lock()
        self._used = 0
        self._db = None
        if limit is not None and path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
            self._db.execute("CREATE TABLE IF NOT EXISTS spent (name TEXT PRIMARY KEY, n INTEGER)")
            self._db.execute("INSERT OR IGNORE INTO spent (name, n) VALUES (?, 0)", (name,))
            self._db.commit()

    def reserve(self) -> bool:
        if self.limit is None:
            return True
        with self._lock:
            if self._db is None:
                if self._used >= self.limit:
                    return False
                self._used += 1
                return True
            cur = self._db.execute(
                "UPDATE spent SET n = n + 1 WHERE name = ? AND n < ?", (self.name, self.limit)
            )
            self._db.commit()
            return cur.rowcount == 1

    @property
    def used(self) -> int:
        with self._lock:
            if self._db is None:
                return self._used
            row = self._db.execute("SELECT n FROM spent WHERE name = ?", (self.name,)).fetchone()
            return int(row[0]) if row else 0

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
