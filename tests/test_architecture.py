"""The package's shape: imports flow one way (no cycles, lower floors never import higher ones),
``rl/`` knows tensors only, measuring never trains, plug-ins are found by registration, and no
module grows past what one reader holds in their head.

Imports are read from the source (``ast``), function-level imports included: a lazy import is
still a dependency. Imports under ``if TYPE_CHECKING:`` are not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sparring

ROOT = Path(sparring.__file__).parent

#: Each top-level module or folder of ``sparring`` and its floor: an import may go to the same
#: floor or lower, never higher. A new module gets a floor here (docs/architecture.md explains
#: them).
FLOORS = {
    # leaves: import nothing of Sparring's but errors
    "sparring": 0,
    "errors": 0,
    "_files": 0,
    "runtime": 0,
    "plugins": 0,
    "embedders": 0,
    "testing": 0,
    "cli_args": 0,
    # foundations
    "config_load": 1,
    "runs": 1,
    "novelty": 1,
    "data": 1,
    "rl": 1,
    "endpoints": 1,
    "judges": 2,
    "config": 3,
    "models": 3,
    "players": 4,
    "arena": 4,
    "evaluation": 5,
    "game": 6,
    "experiments": 7,
    "cli": 8,
    # the Python API: what the commands do, as functions (the package root re-exports it
    # lazily, PEP 562, so ``import sparring`` imports none of it)
    "api": 8,
}

#: Files allowed past the size limit, and why (see docs/architecture.md).
LONG_FILES = {
    "arena/world.py": "the arena's whole world definition (framings, topics, wording) as data",
    "arena/build.py": "one build pipeline: data, tokenizer, three model trainings, manifest",
    "novelty/selfbleu.py": "one algorithm (incremental per-reference SelfBLEU) with its proofs",
    "judges/serve.py": "the HTTP judge server: schema, auth, limits and CLI in one place",
    "evaluation/evaluate.py": "evaluate_run: one pass over every prompt set, and its helpers",
    "config.py": "the run config schema: one pydantic class per YAML section, read in one place",
}
MAX_LINES = 420  # "about 400"


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(_resolve(a.name) for a in node.names if a.name.startswith("sparring"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                full = ".".join(base + ([node.module] if node.module else []))
            else:
                full = node.module or ""
            if full.startswith("sparring"):
                for a in node.names:
                    sub = f"{full}.{a.name}"
                    found.add(sub if sub in MODULES else _resolve(full))
    found.discard(module)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _unit(module: str) -> str:
    """The top-level module or folder a module belongs to (``sparring`` for the root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "sparring"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _folder_graph() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for m, deps in GRAPH.items():
        for d in deps:
            if _unit(m) != _unit(d):
                out.setdefault(_unit(m), set()).add(_unit(d))
    return out


def test_the_import_reader_sees_lazy_imports():
    # game/loop.py imports evaluation at the top; players/loading.py imports models in a function
    assert "sparring.evaluation.evaluate" in GRAPH["sparring.game.loop"]
    assert "sparring.models" in GRAPH["sparring.players.loading"]


def test_no_import_cycle_between_files():
    assert _cycles(GRAPH) == []


def test_no_import_cycle_between_folders():
    assert _cycles(_folder_graph()) == []


def test_every_module_has_a_floor_and_imports_go_down():
    units = {_unit(m) for m in MODULES}
    assert units - set(FLOORS) == set(), "give the new module a floor in FLOORS"
    upward = [
        f"{m} -> {d}"
        for m, deps in GRAPH.items()
        for d in deps
        if FLOORS[_unit(d)] > FLOORS[_unit(m)]
    ]
    assert upward == []


def _imported_units(prefix: str) -> set[str]:
    return {_unit(d) for m, deps in GRAPH.items() if m.startswith(prefix) for d in deps}


def test_rl_knows_tensors_not_players_or_games():
    assert _imported_units("sparring.rl") <= {"rl", "runtime", "errors"}


def test_measuring_never_trains():
    assert _imported_units("sparring.evaluation") & {"game", "experiments", "cli"} == set()


def test_the_arena_is_known_by_registration_only():
    users = {
        _unit(m)
        for m, deps in GRAPH.items()
        if any(_unit(d) == "arena" for d in deps) and _unit(m) != "arena"
    }
    assert users == set()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_says_what_it_holds(module):
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    if MODULES[module].name == "__main__.py":
        return
    assert ast.get_docstring(tree), f"{MODULES[module]} has no module docstring"


def test_modules_stay_short():
    long = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES and rel not in LONG_FILES:
            long[rel] = n
    assert long == {}, "split these, or say in LONG_FILES why they are one file"
    stale = [rel for rel in LONG_FILES if not (ROOT / rel).exists()]
    assert stale == []


def test_the_floor_checker_catches_an_upward_import(monkeypatch):
    monkeypatch.setitem(
        GRAPH, "sparring.rl.core", GRAPH["sparring.rl.core"] | {"sparring.game.loop"}
    )
    upward = [
        d for d in GRAPH["sparring.rl.core"] if FLOORS[_unit(d)] > FLOORS[_unit("sparring.rl.core")]
    ]
    assert upward == ["sparring.game.loop"]
    assert _cycles(_folder_graph())  # rl -> game -> rl


# -- plug-ins ------------------------------------------------------------------------------------


def test_a_plugin_registers_a_prompt_family_and_its_heldout_set(monkeypatch):
    from sparring.data import prompts as P

    monkeypatch.setitem(P.PREFIXES, "toy:", lambda ref: [f"{ref} #{i}" for i in range(3)])
    monkeypatch.setitem(P.HELDOUT, "toy:train", "toy:test")
    assert P.load_prompts(source="toy:train") == ["toy:train #0", "toy:train #1", "toy:train #2"]
    assert P.heldout_source("toy:train") == "toy:test"


def test_plugins_load_from_entry_points(monkeypatch, tmp_path):
    import sys
    from importlib.metadata import EntryPoint

    from sparring import plugins
    from sparring.data import prompts as P

    (tmp_path / "toy_plugin.py").write_text(
        "from sparring.data.prompts import register_prefix\n"
        "register_prefix('toy2:', lambda ref: ['hello from ' + ref])\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_loaded", False)
    ep = EntryPoint(name="toy", value="toy_plugin", group=plugins.GROUP)
    monkeypatch.setattr(
        plugins, "entry_points", lambda group: [ep] if group == plugins.GROUP else []
    )
    monkeypatch.delitem(P.PREFIXES, "toy2:", raising=False)
    try:
        assert P.load_prompts(source="toy2:x") == ["hello from toy2:x"]
    finally:
        P.PREFIXES.pop("toy2:", None)
        sys.modules.pop("toy_plugin", None)


def test_the_arena_registers_its_judge_models_and_prompts():
    from sparring.data.prompts import HELDOUT, PREFIXES
    from sparring.judges.registry import BUILDERS
    from sparring.judges.specs import ArenaJudgeSpec
    from sparring.plugins import MODEL_PREFIXES, load_plugins

    load_plugins()
    assert ArenaJudgeSpec in BUILDERS
    assert "arena:" in PREFIXES and "arena:" in MODEL_PREFIXES
    assert HELDOUT["arena:benign"] == "arena:benign_unseen"
