"""The Python API (sparring.api, exported from sparring): the README's example runs as written,
and the functions return what the commands write."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import sparring

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "import sparring" in b]


def test_the_stable_names_are_exported():
    for name in ("train", "evaluate", "scan", "load_config", "load_run", "Run"):
        assert name in sparring.__all__ and callable(getattr(sparring, name))
    with pytest.raises(AttributeError):
        sparring.no_such_name  # noqa: B018


@pytest.mark.slow  # a two-round tiny game, its evaluation and a scan
@pytest.mark.parametrize("doc", ["README.md", "docs/cli.md"])
def test_the_documented_python_example_runs_as_written(doc, run_data, tmp_path, monkeypatch):
    """The example's lines, run in order with two names pointed at tiny stand-ins: its config
    file (a tiny game instead of the arena) and the model it scans (the run's own defender)."""
    blocks = _python_blocks(ROOT / doc)
    assert len(blocks) == 1, f"{doc}: one Python example"
    code = blocks[0]
    assert len(code.strip().splitlines()) <= 10  # "ten lines"
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(run_data()), encoding="utf-8")
    code = code.replace('"configs/arena.yaml"', repr(str(config)))
    code = code.replace('"runs/arena/final/defender"', "run.defender_dir")
    code = code.replace(
        "sparring.scan(run.defender_dir)", "sparring.scan(run.defender_dir, samples=4)"
    )
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, doc, "exec"), scope)  # noqa: S102 - the documented example itself
    run, result, scan = scope["run"], scope["result"], scope["scan"]
    assert isinstance(run, sparring.Run) and len(run.metrics()) == 4  # 2 rounds x 2 stages
    assert result["name"] == "api" and (run.run_dir / "eval" / "api.json").is_file()
    assert run.evaluation("api")["samples"] == result["samples"]
    assert set(scan["sets"]) == {"harmbench-test", "strongreject-test"}
    assert (Path(scan["folder"]) / "report.html").is_file()
