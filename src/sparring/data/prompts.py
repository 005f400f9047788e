"""Load prompt pools from files or named sources, and sample from them reproducibly.

Supported files: ``.jsonl`` (one object per line, text under ``field``, or a bare JSON string),
``.json`` (a list of strings or objects), ``.csv`` (a header row naming ``field``), ``.txt``
(one prompt per line; blank lines skipped) and a folder written by ``datasets``'
``save_to_disk``. Errors name the file and the line.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sparring.errors import DataError

#: Named prompt sources (``source: NAME`` in a config) -> loader returning a list of prompts.
SOURCES: dict[str, Callable[[], list[str]]] = {}

MAX_PROMPT_CHARS = 100_000


#: Families of named sources (``source: PREFIX<name>``, e.g. ``arena:seeds``) -> loader of a name.
PREFIXES: dict[str, Callable[[str], list[str]]] = {}

#: A training source -> the held-out source of the same kind (``harmbench-train`` ->
#: ``harmbench-test`` is derived from the name; these are the other pairs).
HELDOUT: dict[str, str] = {}


def register_source(name: str, loader: Callable[[], list[str]]) -> None:
    """Make ``source: name`` available in configs."""
    SOURCES[name] = loader


def register_prefix(prefix: str, loader: Callable[[str], list[str]]) -> None:
    """Make ``source: <prefix><name>`` available: ``loader`` gets the whole reference."""
    PREFIXES[prefix] = loader


def register_heldout(source: str, heldout: str) -> None:
    """Declare ``heldout`` the held-out counterpart of the training source ``source``."""
    HELDOUT[source] = heldout


def known_sources() -> set[str]:
    """The names ``source:`` accepts besides prefixed references (``arena:...``)."""
    _load_builtin_sources()
    return set(SOURCES)


def source_prefix(source: str) -> str | None:
    """The registered prefix ``source`` starts with, if any."""
    from sparring.plugins import load_plugins

    if ":" in source:
        load_plugins()
    return next((p for p in PREFIXES if source.startswith(p)), None)


def heldout_source(source: str | None) -> str | None:
    """The held-out counterpart of a training source: a declared pair, else ``NAME-train`` or
    ``NAME`` -> ``NAME-test`` when such a source exists; None when there is none."""
    if source is None:
        return None
    from sparring.plugins import load_plugins

    load_plugins()
    if source in HELDOUT:
        return HELDOUT[source]
    name = source[: -len("-train")] if source.endswith("-train") else source
    return f"{name}-test" if f"{name}-test" in known_sources() else None


def load_prompts(
    path: str | Path | None = None,
    *,
    source: str | None = None,
    field: str = "prompt",
    split: str | None = None,
    limit: int | None = None,
) -> list[str]:
    """Read prompts from ``path`` or the named ``source``; never returns an empty list."""
    prefix = source_prefix(source) if source is not None else None
    if prefix is not None:
        prompts, origin = PREFIXES[prefix](source), f"source {source!r}"
    elif source is not None:
        _load_builtin_sources()
        if source not in SOURCES:
            known = ", ".join(sorted(SOURCES)) or "none"
            raise DataError(f"unknown prompt source {source!r} (known: {known})")
        prompts = SOURCES[source]()
        origin = f"source {source!r}"
    elif path is not None:
        p = Path(path).expanduser()
        origin = str(p)
        if not p.exists():
            raise DataError(f"prompt file {p} does not exist")
        prompts = _read_dataset(p, field, split) if p.is_dir() else _read_file(p, field)
    else:
        raise DataError("give a prompt file path or a source name")
    if limit is not None:
        prompts = prompts[:limit]
    if not prompts:
        raise DataError(f"{origin} holds no prompts")
    return prompts


def _load_builtin_sources() -> None:
    # Modules that register named sources when imported (they may be missing their optional deps).
    for module in ("sparring.data.sources",):
        with contextlib.suppress(ImportError):
            importlib.import_module(module)


def _check_text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: expected a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise DataError(f"{where}: empty prompt")
    if len(text) > MAX_PROMPT_CHARS:
        raise DataError(
            f"{where}: prompt of {len(text)} characters is longer than {MAX_PROMPT_CHARS}"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a JSON "\ud800" escape: no tokenizer can encode it
        raise DataError(
            f"{where}: invalid Unicode (lone surrogate at character {exc.start})"
        ) from None
    return text


def _read_lines(p: Path) -> list[str]:
    try:
        return p.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not UTF-8 text (byte {exc.start}): {exc.reason}") from None
    except OSError as exc:
        raise DataError(f"{p}: cannot read: {exc.strerror}") from None


def _from_record(obj: Any, field: str, where: str) -> str:
    if isinstance(obj, str):
        return _check_text(obj, where)
    if isinstance(obj, dict):
        if field not in obj:
            raise DataError(f"{where}: no {field!r} field (fields: {', '.join(map(str, obj))})")
        return _check_text(obj[field], f"{where}, field {field!r}")
    raise DataError(
        f"{where}: expected an object with a {field!r} field or a string, got {type(obj).__name__}"
    )


def _read_file(p: Path, field: str) -> list[str]:
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        out = []
        for i, line in enumerate(_read_lines(p), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{p}, line {i}: invalid JSON ({exc.msg} at column {exc.colno})"
                ) from None
            except RecursionError:
                raise DataError(f"{p}, line {i}: invalid JSON (nested too deeply)") from None
            out.append(_from_record(obj, field, f"{p}, line {i}"))
        return out
    if suffix == ".json":
        try:
            data = json.loads("\n".join(_read_lines(p)))
        except json.JSONDecodeError as exc:
            raise DataError(f"{p}, line {exc.lineno}: invalid JSON ({exc.msg})") from None
        except RecursionError:
            raise DataError(f"{p}: invalid JSON (nested too deeply)") from None
        if not isinstance(data, list):
            raise DataError(f"{p}: expected a JSON list of prompts, got {type(data).__name__}")
        return [_from_record(obj, field, f"{p}, item {i}") for i, obj in enumerate(data)]
    if suffix == ".csv":
        lines = _read_lines(p)
        try:
            reader = csv.DictReader(lines)
            if reader.fieldnames is None or field not in reader.fieldnames:
                raise DataError(
                    f"{p}, line 1: header has no {field!r} column (columns: {reader.fieldnames})"
                )
            return [_check_text(row[field], f"{p}, line {reader.line_num}") for row in reader]
        except csv.Error as exc:
            raise DataError(f"{p}: malformed CSV: {exc}") from None
    if suffix in (".txt", ".text", ""):
        return [
            _check_text(line, f"{p}, line {i}")
            for i, line in enumerate(_read_lines(p), 1)
            if line.strip()
        ]
    raise DataError(
        f"{p}: unsupported prompt file type {suffix!r} (use .jsonl, .json, .csv, .txt or a dataset folder)"
    )


def _read_dataset(p: Path, field: str, split: str | None) -> list[str]:
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{p} is a folder: reading a saved dataset needs `pip install datasets`"
        ) from None
    try:
        ds = datasets.load_from_disk(str(p))
    except Exception as exc:  # datasets raises several types for a folder that is not a dataset
        raise DataError(f"{p}: not a dataset saved with save_to_disk ({exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            if len(ds) != 1:
                raise DataError(f"{p}: dataset has splits {sorted(ds)}; set 'split'")
            split = next(iter(ds))
        if split not in ds:
            raise DataError(f"{p}: no split {split!r} (splits: {sorted(ds)})")
        ds = ds[split]
    if field not in ds.column_names:
        raise DataError(f"{p}: no column {field!r} (columns: {ds.column_names})")
    return [_check_text(v, f"{p}, row {i}") for i, v in enumerate(ds[field])]


class PromptPool:
    """Prompts sampled without replacement in reshuffled epochs, from a seeded generator.

    The sampler's state is part of a checkpoint, so a resumed run draws the same prompts.
    """

    def __init__(self, prompts: list[str], seed: int = 0):
        if not prompts:
            raise DataError("prompt pool is empty")
        self.prompts = list(prompts)
        self._rng = np.random.default_rng(seed)
        self._order: list[int] = []
        self._pos = 0

    def __len__(self) -> int:
        return len(self.prompts)

    def sample(self, n: int) -> list[str]:
        out = []
        for _ in range(n):
            if self._pos >= len(self._order):
                self._order = self._rng.permutation(len(self.prompts)).tolist()
                self._pos = 0
            out.append(self.prompts[self._order[self._pos]])
            self._pos += 1
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state, "order": self._order, "pos": self._pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self._order = list(state["order"])
        self._pos = int(state["pos"])
