"""What a judge is, as files: the SHA-256 of every local file a judge spec reads.

A judge's name says which kind of judge scored a run; it does not say which weights. Two
judges trained by ``sparring models train-judge`` on different answers share a name and a
folder path, and their figures differ. :func:`judge_files` hashes what a spec points at on disk
(a model or judge folder, a tokenizer, a callable's module), so a run folder (``judges.json``)
and every evaluation (``judge_files`` in ``eval/<name>.json``) record exactly which judge
produced their figures, and ``make smollm2-judges`` can be checked against the judges the docs
report. Hub ids and endpoints are recorded as they are written (nothing local to hash).
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sparring._files import sha256_file_remembered
from sparring.plugins import resolve_reference

#: the spec fields that may name a local file or folder
_PATH_FIELDS = ("model", "path", "tokenizer")


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, or of a folder: every file under it in sorted order, each as its
    relative path and its bytes (so renaming, adding or changing a file changes the hash)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(path).as_posix().encode() if f != path else b"")
        h.update(b"\0")
        h.update(sha256_file_remembered(f).encode())
    return h.hexdigest()


def judge_files(spec: Any) -> dict[str, str]:
    """``{path as written: sha256}`` for every local file or folder ``spec`` (a judge spec, with
    the judges nested in it) reads; a callable's module file is included."""
    out: dict[str, str] = {}
    _walk(spec, out)
    return out


def _walk(value: Any, out: dict[str, str]) -> None:
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            field = getattr(value, name)
            local = _local(field) if name in _PATH_FIELDS else None
            if local is not None:
                out[str(field)] = sha256_of(local)
            elif name == "target" and isinstance(field, str) and ":" in field:
                origin = _module_file(field.split(":", 1)[0])
                if origin is not None:
                    out[field] = sha256_of(origin)
            else:
                _walk(field, out)
    elif isinstance(value, list | tuple):
        for item in value:
            _walk(item, out)


def _local(field: Any) -> Path | None:
    """The local file or folder a path field names, a prefixed model name resolved
    (``sparring:<name>``: the prepared folder); None for a hub id or nothing there."""
    if not isinstance(field, str | Path):
        return None
    folder = resolve_reference(str(field))
    path = folder if folder is not None else Path(field)
    return path if path.exists() else None


def _module_file(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    return Path(origin) if origin and Path(origin).is_file() else None
