"""Small file helpers shared across the package."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

#: files at least this large have their hash remembered on disk (a judge model's weights)
REMEMBER_BYTES = 64 << 20
_HASHES: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sparring_home() -> Path:
    """``$SPARRING_HOME`` or ``~/.cache/sparring``: the model cache and remembered hashes."""
    home = os.environ.get("SPARRING_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "sparring"


def sha256_file_remembered(path: Path) -> str:
    """:func:`sha256_file`, remembered by (resolved path, size, modification time): in memory,
    and for files of :data:`REMEMBER_BYTES` or more in ``sparring_home()/file-hashes.json``, so
    a judge model of gigabytes is read once, not at every evaluation that records it."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key in _HASHES:
        return _HASHES[key]
    store = sparring_home() / "file-hashes.json"
    name = json.dumps(key)
    known = (read_json_object(store) or {}) if st.st_size >= REMEMBER_BYTES else {}
    digest = known.get(name) or sha256_file(path)
    _HASHES[key] = digest
    if st.st_size >= REMEMBER_BYTES and name not in known:
        try:  # atomic replace: concurrent writers lose an entry at worst, never the file
            store.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=store.parent, prefix=".file-hashes-")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({**known, name: digest}, f)
            os.replace(tmp, store)
        except OSError:
            pass  # a read-only home: the hash is still right, only not remembered
    return digest


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when the file is missing, unreadable or not an object."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
