"""Load tokenizers and causal LMs for players, offline when the path is local."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sparring.errors import ModelError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return (
        len(parts) == 2
        and all(p and not p.startswith(".") for p in parts)
        and not Path(parts[0]).exists()
    )


def resolve_model_path(name: str, field: str) -> tuple[str, bool]:
    """(path or hub id, local_files_only). A local path that does not exist is an error now.

    A prefixed name is resolved by its registry (:func:`sparring.models.resolve_reference`):
    ``sparring:<name>`` names a model prepared from an installed package, and plug-ins add
    their own (the arena's ``arena:attacker`` / ``arena:defender``); they are built on first use.
    """
    from sparring.models import resolve_reference

    folder = resolve_reference(name)
    if folder is not None:
        return str(folder), True
    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir() and p.suffix != ".gguf":
            raise ModelError(f"{field}: {p} is a file; expected a model folder")
        return str(p), True
    if name.startswith((".", "/", "~")) or not _looks_like_hub_id(name):
        raise ModelError(f"{field}: model folder {p} does not exist")
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    return name, offline


def _from_pretrained_kwargs(
    name: str, field: str, revision: str | None, trust_remote_code: bool, gguf_file: str | None
) -> tuple[str, dict]:
    """The path and the ``from_pretrained`` options shared by tokenizers and models."""
    path, local = resolve_model_path(name, field)
    kwargs = {
        "revision": revision,
        "trust_remote_code": trust_remote_code,
        "local_files_only": local,
    }
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    return path, kwargs


def load_tokenizer(
    name: str,
    *,
    field: str,
    revision: str | None = None,
    trust_remote_code: bool = False,
    gguf_file: str | None = None,
):
    from transformers import AutoTokenizer

    path, kwargs = _from_pretrained_kwargs(name, field, revision, trust_remote_code, gguf_file)
    try:
        tok = AutoTokenizer.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{field}: cannot load a tokenizer from {path!r}: {exc}") from None
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ModelError(f"{field}: tokenizer of {path!r} has neither a pad nor an eos token")
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    tok.truncation_side = "left"
    return tok


def load_causal_lm(
    name: str,
    *,
    field: str,
    dtype: str = "float32",
    revision: str | None = None,
    trust_remote_code: bool = False,
    gguf_file: str | None = None,
):
    from transformers import AutoModelForCausalLM

    path, kwargs = _from_pretrained_kwargs(name, field, revision, trust_remote_code, gguf_file)
    kwargs["dtype"] = DTYPES[dtype]
    if not gguf_file:
        kwargs["use_safetensors"] = True
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{field}: cannot load a causal LM from {path!r}: {exc}") from None
    disable_dropout(model)
    return model


def disable_dropout(model: torch.nn.Module) -> None:
    """RL ratios compare log-probs of the same tokens under the same weights: dropout breaks that."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
