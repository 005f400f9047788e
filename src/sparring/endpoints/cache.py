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
