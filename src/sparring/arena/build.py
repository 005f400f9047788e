"""Build the arena: world data, tokenizer, defender SFT, attacker SFT and proxy judge.

``build_arena(out_dir, seed=0, size="default")`` regenerates everything deterministically from
the seed; ``ensure_arena(seed)`` builds once into the cache (:func:`arena_home`) and reuses it.

Layout of an arena folder::

    manifest.json           seed, sizes, versions, file hashes, content hash, proxy accuracy
    data/*.jsonl            seed pool, benign pool, evaluation sets, SFT and proxy data
    tokenizer/              the word-level tokenizer (AutoTokenizer.from_pretrained)
    defender/               defender SFT (AutoModelForCausalLM + its tokenizer)
    attacker/               attacker SFT (AutoModelForCausalLM + its tokenizer)
    proxy_judge/            proxy.json + weights.safetensors
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from sparring._files import sha256_file
from sparring.arena import world as W
from sparring.arena.conversations import DIALOGUE_SETS
from sparring.arena.data import PROMPT_SETS, TRAINING_FILES, build_datasets
from sparring.arena.models import MODEL_SIZES, encode_examples, make_model, train_lm
from sparring.arena.proxy import accuracy, train_proxy
from sparring.arena.recipes import RECIPES
from sparring.arena.tokenizer import build_tokenizer
from sparring.errors import DataError

ARENA_VERSION = "1"
SIZES = ("default", "hard", "tiny", "dialogue", "tiny-dialogue")


@dataclass(frozen=True)
class TrainSize:
    defender_steps: int
    attacker_steps: int
    batch_size: int
    lr: float
    proxy_iters: int


TRAIN_SIZES: dict[str, TrainSize] = {
    "default": TrainSize(
        defender_steps=500, attacker_steps=300, batch_size=64, lr=3e-3, proxy_iters=100
    ),
    # the hard world's defender is smaller and its SFT mix richer (stacks, look-alikes)
    "hard": TrainSize(
        defender_steps=600, attacker_steps=300, batch_size=64, lr=3e-3, proxy_iters=100
    ),
    "tiny": TrainSize(defender_steps=12, attacker_steps=8, batch_size=32, lr=3e-3, proxy_iters=20),
    # the dialogue world's SFT holds conversations beside single prompts: more to learn
    "dialogue": TrainSize(
        defender_steps=700, attacker_steps=400, batch_size=64, lr=3e-3, proxy_iters=100
    ),
}

TRAIN_SIZES["tiny-dialogue"] = TRAIN_SIZES["tiny"]  # seconds to build, for tests

# What the game engine should use with the arena's players (recorded in the manifest).
GENERATION = {
    "defender_template": W.DEFENDER_TEMPLATE,
    "attacker_template": W.ATTACKER_TEMPLATE,
    "defender_max_new_tokens": 32,
    "attacker_max_new_tokens": 32,
    "max_prompt_words": 40,
    "temperature": 1.0,
    "top_p": 1.0,
    "padding_side": "left",
}


@dataclass(frozen=True)
class ArenaPaths:
    """Where the parts of a built arena live."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def defender(self) -> Path:
        return self.root / "defender"

    @property
    def attacker(self) -> Path:
        return self.root / "attacker"

    @property
    def proxy_judge(self) -> Path:
        return self.root / "proxy_judge"

    @property
    def seeds(self) -> Path:
        return self.data / "seeds.jsonl"

    @property
    def benign(self) -> Path:
        return self.data / "benign.jsonl"

    def data_file(self, stem: str) -> Path:
        return self.data / f"{stem}.jsonl"

    def read_manifest(self) -> dict:
        return json.loads(self.manifest.read_text())


def arena_home() -> Path:
    """The arena cache: ``$SPARRING_HOME/arena``, else ``~/.cache/sparring/arena``."""
    home = os.environ.get("SPARRING_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "sparring"
    return base / "arena"


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, sort_keys=True) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    p = Path(path)
    rows = []
    with p.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{p}:{i}: not a JSON object ({exc.msg})") from None
    return rows


_RECIPE_MODULES = (
    "world",
    "oracle",
    "recipes",
    "requests",
    "conversations",
    "data",
    "tokenizer",
    "models",
    "proxy",
    "build",
)


def recipe_hash() -> str:
    """sha256 of the source of the modules that decide an arena's content.

    Stored in the manifest; :func:`is_built` treats an arena built by other code as stale, so
    the cache is rebuilt after the world, the data or the training recipe change.
    """
    h = hashlib.sha256(ARENA_VERSION.encode())
    here = Path(__file__).parent
    for name in _RECIPE_MODULES:
        h.update(name.encode() + b"\0" + (here / f"{name}.py").read_bytes())
    return h.hexdigest()


def file_hashes(root: str | Path) -> dict[str, str]:
    """sha256 of every file of an arena folder except the manifest, by relative path."""
    r = Path(root)
    return {
        p.relative_to(r).as_posix(): sha256_file(p)
        for p in sorted(r.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def content_hash(hashes: dict[str, str]) -> str:
    h = hashlib.sha256()
    for k in sorted(hashes):
        h.update(f"{k}\0{hashes[k]}\n".encode())
    return h.hexdigest()


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# Builds use one torch thread: CPU kernels round differently with other thread counts, so one
# thread everywhere gives the same bytes for the same seed on every machine; and the models
# are so small that more threads gain little (and lose a lot on a busy machine).
BUILD_THREADS = 1


class _Progress:
    """Rich progress bars, or nothing."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._p = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            from sparring.runtime import logged_progress

            self._p = logged_progress(
                TextColumn("[bold]arena[/bold] {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                transient=False,
            )
            self._p.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)

    def task(self, description: str, total: int):
        if self._p is None:
            return None
        return self._p.add_task(description, total=total, info="")

    def advance(self, task, n: int = 1, **fields) -> None:
        if self._p is not None and task is not None:
            self._p.update(task, advance=n, **fields)


def _defender_prompt(row: dict) -> str:
    if "setup" in row:
        return W.dialogue_prompt(row["setup"], row["ack"], row["prompt"])
    return row["prompt"]


def _attacker_context(row: dict) -> str:
    if "turn1" in row:
        return W.attacker_followup_context(row["seed"], row["turn1"], row["reply"])
    return W.ATTACKER_TEMPLATE.format(seed=row["seed"])


def _save_model(model, tok, path: Path) -> None:
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(path, safe_serialization=True)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    _save_tokenizer(tok, path)


def _save_tokenizer(tok, path: Path) -> None:
    tok.save_pretrained(path)
    cfg_path = path / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    # portable across transformers 4.x and 5.x
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def _versions() -> dict[str, str]:
    import numpy
    import tokenizers
    import transformers

    import sparring

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": numpy.__version__,
        "sparring": sparring.__version__,
    }


def build_arena(
    out_dir: str | Path,
    *,
    seed: int = 0,
    size: str = "default",
    progress: bool = True,
    threads: int | None = None,
) -> ArenaPaths:
    """Regenerate the arena into ``out_dir`` deterministically from ``seed``.

    ``size="default"`` takes a few minutes on a laptop CPU; ``size="tiny"`` takes seconds and
    is meant for tests (its models are too small to behave like the real ones). ``threads``:
    torch threads to train with (default 1); the bytes are reproducible for a given seed,
    thread count and library versions.
    """
    if size not in SIZES:
        raise ValueError(f"unknown arena size {size!r}; expected one of {SIZES}")
    paths = ArenaPaths(Path(out_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    ts = TRAIN_SIZES[size]
    recipe = RECIPES[size]
    n_threads = threads or BUILD_THREADS
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    with _threads(n_threads), _Progress(progress) as prog:
        # 1. world data
        t = time.perf_counter()
        sets = build_datasets(seed, size)
        for stem, rows in sets.items():
            _write_jsonl(paths.data_file(stem), rows)
        timings["data"] = time.perf_counter() - t

        # 2. tokenizer
        tok = build_tokenizer()
        _save_tokenizer(tok, paths.tokenizer)

        # 3. players
        models_info = {}
        for role, rows, steps in (
            ("defender", sets["sft_defender"], ts.defender_steps),
            ("attacker", sets["sft_attacker"], ts.attacker_steps),
        ):
            t = time.perf_counter()
            if role == "defender":  # a conversation as the game shows it (world.py)
                ctx = [W.DEFENDER_TEMPLATE.format(prompt=_defender_prompt(r)) for r in rows]
                tgt = [r["response"] for r in rows]
            else:
                ctx = [_attacker_context(r) for r in rows]
                tgt = [r["output"] for r in rows]
            examples = encode_examples(tok, ctx, tgt)
            model_seed = seed * 1000 + (1 if role == "defender" else 2)
            model = make_model(tok, MODEL_SIZES[size][role], model_seed)
            task = prog.task(f"{role} SFT", steps)
            losses = train_lm(
                model,
                examples,
                steps=steps,
                batch_size=ts.batch_size,
                lr=ts.lr,
                seed=model_seed,
                pad_id=tok.pad_token_id,
                on_step=lambda s, loss, task=task: prog.advance(task, info=f"loss {loss:.3f}"),
            )
            _save_model(model, tok, getattr(paths, role))
            tail = losses[-min(20, len(losses)) :]
            models_info[role] = {
                "architecture": "GPT2LMHeadModel",
                "parameters": sum(p.numel() for p in model.parameters()),
                "n_embd": model.config.n_embd,
                "n_layer": model.config.n_layer,
                "n_head": model.config.n_head,
                "n_positions": model.config.n_positions,
                "train_examples": len(examples),
                "max_example_tokens": max(len(ids) for ids, _ in examples),
                "steps": steps,
                "batch_size": ts.batch_size,
                "lr": ts.lr,
                "final_loss": sum(tail) / len(tail),
            }
            timings[role] = time.perf_counter() - t

        # 4. proxy judge
        t = time.perf_counter()
        task = prog.task("proxy judge", 1)
        proxy = train_proxy(sets["proxy_train"], steps=ts.proxy_iters, seed=seed)
        acc = {
            "held_in": accuracy(proxy, sets["proxy_test"]),
            "held_out": accuracy(proxy, sets["proxy_heldout"]),
        }
        proxy.save(
            paths.proxy_judge,
            {"trained_on": "data/proxy_train.jsonl", "train_examples": len(sets["proxy_train"])},
        )
        prog.advance(task, info=f"held-in {acc['held_in']['safe_accuracy']:.3f}")
        timings["proxy_judge"] = time.perf_counter() - t

    hashes = file_hashes(paths.root)
    manifest = {
        "arena_version": ARENA_VERSION,
        "recipe_hash": recipe_hash(),
        "seed": seed,
        "size": size,
        "torch_threads": n_threads,
        "build_seconds": round(time.perf_counter() - t0, 2),
        "stage_seconds": {k: round(v, 2) for k, v in timings.items()},
        "versions": _versions(),
        "data_sizes": {stem: len(rows) for stem, rows in sets.items()},
        "prompt_sets": {**PROMPT_SETS, **(DIALOGUE_SETS if recipe.dialogue else {})},
        "training_files": [f"data/{s}.jsonl" for s in TRAINING_FILES],
        "framings": {
            **recipe.manifest(),
            "heldout": list(W.HELDOUT_FRAMINGS),
            "heldout_twin": dict(W.HELDOUT_TWIN),
        },
        "categories": list(W.CATEGORY_NAMES),
        "benign_topics": list(W.BENIGN_NAMES),
        "alarming_topics": list(W.ALARMING_TOPICS),
        "defender_policy": dict(recipe.policy),
        "attacker_framings": dict(recipe.attacker_framings),
        "models": models_info,
        "proxy_judge": {"kind": "bow-logreg", "accuracy": acc},
        "generation": dict(GENERATION),
        "files": hashes,
        "content_hash": content_hash(hashes),
    }
    paths.manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return paths


def is_built(root: str | Path, *, seed: int | None = None, size: str | None = None) -> bool:
    """True when ``root`` holds a complete arena built by this code (and seed/size, if given)."""
    paths = ArenaPaths(Path(root))
    try:
        m = paths.read_manifest()
    except (OSError, ValueError):
        return False
    if m.get("arena_version") != ARENA_VERSION or m.get("recipe_hash") != recipe_hash():
        return False
    if seed is not None and m.get("seed") != seed:
        return False
    if size is not None and m.get("size") != size:
        return False
    return all((paths.root / rel).is_file() for rel in m.get("files", {}))


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_arena(
    seed: int = 0,
    *,
    size: str = "default",
    home: str | Path | None = None,
    progress: bool = True,
) -> ArenaPaths:
    """The arena for ``seed`` in the cache, built on first use and reused afterwards.

    Built into a temporary folder then renamed, under a lock, so concurrent callers build it
    once and a half-built arena is never used.
    """
    base = Path(home) if home is not None else arena_home()
    root = base / f"v{ARENA_VERSION}-{size}-seed{seed}"
    if is_built(root, seed=seed, size=size):
        return ArenaPaths(root)
    with _lock(base / f".{root.name}.lock"):
        if is_built(root, seed=seed, size=size):
            return ArenaPaths(root)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=base))
        try:
            build_arena(tmp, seed=seed, size=size, progress=progress)
            if root.exists():
                shutil.rmtree(root)
            os.replace(tmp, root)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return ArenaPaths(root)


def load_prompt_sets(arena_dir: str | Path) -> dict[str, list[dict]]:
    """The arena's named prompt sets: ``seeds``, ``benign``, ``heldout_framings``,
    ``weak_framings``, ``taught_framings``, ``benign_eval``, ``alarming``, ``heldout_benign``.

    Each row has ``prompt``, ``harmful``, ``category``, ``topic``, ``framing``, ``alarming``.
    """
    paths = ArenaPaths(Path(arena_dir))
    out = {}
    for name, stem in {**PROMPT_SETS, **DIALOGUE_SETS}.items():
        f = paths.data_file(stem)
        if stem in DIALOGUE_SETS.values() and not f.is_file():
            continue  # a world without conversations
        if not f.is_file():
            raise DataError(f"arena prompt set {name!r} is missing: {f} (rebuild the arena)")
        out[name] = read_jsonl(f)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m sparring.arena build [--out DIR] [--seed N] [--size default|tiny]``."""
    import argparse

    ap = argparse.ArgumentParser(description="Build the arena (world data, players, judge).")
    ap.add_argument("--out", type=Path, default=None, help="folder (default: the cache)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", choices=SIZES, default="default")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    if args.out is None:
        paths = ensure_arena(args.seed, size=args.size, progress=not args.quiet)
    else:
        paths = build_arena(args.out, seed=args.seed, size=args.size, progress=not args.quiet)
    m = paths.read_manifest()
    acc = m["proxy_judge"]["accuracy"]
    print(
        f"arena {paths.root} (seed {m['seed']}, {m['size']}): built in {m['build_seconds']:.0f} s, "
        f"content {m['content_hash'][:12]}, proxy judge accuracy held-in "
        f"{acc['held_in']['safe_accuracy']:.3f} / held-out {acc['held_out']['safe_accuracy']:.3f}"
    )
    return 0
