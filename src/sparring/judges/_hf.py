"""Helpers shared by the judges that run a Hugging Face model in-process.

torch and transformers are imported inside the functions: importing :mod:`sparring.judges`
stays cheap for users of remote or callable judges.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable
from typing import Any

from sparring.errors import JudgeError, ModelError
from sparring.plugins import resolve_reference

_FIELD_RE = re.compile(r"\{(prompt|response)\}")


def render_template(template: str, prompt: str, response: str) -> str:
    """Fill ``{prompt}`` and ``{response}`` in one pass.

    Only those two fields are replaced (other braces are left alone), and text that comes from
    the prompt is never itself searched for fields, so a prompt containing ``{response}`` stays
    literal.
    """
    values = {"prompt": prompt, "response": response}
    return _FIELD_RE.sub(lambda m: values[m.group(1)], template)


def default_name(model: str) -> str:
    """A short judge name from a model path or hub id (its last component)."""
    return os.path.basename(model.rstrip("/\\")) or model


def resolve_device(device: str) -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


def resolve_dtype(dtype: str, device: Any) -> Any:
    import torch

    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


def local_model(name: str) -> str:
    """``name``, or the folder a prefixed name stands for (``sparring:<name>`` from the model
    cache, a plug-in's ``arena:<name>``; :func:`sparring.plugins.resolve_reference`)."""
    folder = resolve_reference(name)
    return str(folder) if folder is not None else name


def load_tokenizer(spec: Any, *, padding_side: str) -> Any:
    from transformers import AutoTokenizer

    path = local_model(spec.tokenizer or spec.model)
    try:
        tok = AutoTokenizer.from_pretrained(
            path, revision=spec.revision, trust_remote_code=spec.trust_remote_code
        )
    except Exception as exc:  # transformers raises OSError, ValueError, ...
        raise ModelError(f"cannot load the tokenizer of judge model {path!r}: {exc}") from exc
    tok.padding_side = padding_side
    return tok


def load_model(spec: Any, auto_class: str, *, class_name: str | None = None) -> tuple[Any, Any]:
    """Load ``spec.model`` with safetensors weights, in eval mode, on the spec's device/dtype."""
    import transformers

    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    name = class_name or auto_class
    cls = getattr(transformers, name, None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise ModelError(f"transformers has no model class {name!r} (judge model {spec.model!r})")
    kwargs: dict[str, Any] = {
        "revision": spec.revision,
        "trust_remote_code": spec.trust_remote_code,
        "use_safetensors": True,
        "dtype": dtype,
    }
    if spec.attn_implementation:
        kwargs["attn_implementation"] = spec.attn_implementation
    try:
        model = cls.from_pretrained(local_model(spec.model), **kwargs)
    except Exception as exc:
        raise ModelError(
            f"cannot load judge model {spec.model!r} with {name} (safetensors weights only, "
            f"trust_remote_code={spec.trust_remote_code}): {exc}"
        ) from exc
    model.to(device)
    model.eval()
    return model, device


def forward_params(model: Any) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()


def _char_spans(tokenizer: Any, text: str) -> list[tuple[int, int]] | None:
    """Character span of each token of ``text`` (fast tokenizers), else None."""
    if not text:
        return []
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, ValueError, TypeError):
        return None
    return [tuple(s) for s in enc["offset_mapping"]]


def _cut_middle(tokenizer: Any, text: str, keep: int, marker: str) -> str:
    """``text`` with its middle replaced by ``marker`` so that about ``keep`` tokens remain."""
    spans = _char_spans(tokenizer, text)
    if spans is None:  # slow tokenizer: cut token ids and decode
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if keep >= len(ids):
            return text
        head, tail = (keep + 1) // 2, keep // 2
        left = tokenizer.decode(ids[:head]) if head else ""
        right = tokenizer.decode(ids[len(ids) - tail :]) if tail else ""
        return left + marker + right
    n = len(spans)
    if keep >= n:
        return text
    keep = max(keep, 0)
    head, tail = (keep + 1) // 2, keep // 2
    head_end = spans[head - 1][1] if head else 0
    tail_start = spans[n - tail][0] if tail else len(text)
    return text[:head_end] + marker + text[tail_start:]


_ZWSP = "\u200b"


def special_token_strings(tokenizer: Any) -> list[str]:
    """The tokenizer's special-token strings (``<|eot_id|>``, ``</s>``, ...), longest first."""
    found: set[str] = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(tok, "special", False):
            found.add(str(tok.content) if hasattr(tok, "content") else str(tok))
    return sorted((s for s in found if len(s) > 1), key=len, reverse=True)


def escape_special(text: str, specials: list[str]) -> str:
    """Break special-token strings inside user text so the tokenizer reads them as plain text.

    A zero-width space goes after the first character of each occurrence. Without this, a
    defender could write the guard's own control tokens (``<|eot_id|>...safe``) into its answer
    and forge the guard's verdict. Texts without such strings are returned unchanged.
    """
    if not specials or not any(s in text for s in specials):
        return text
    for s in specials:
        if s in text:
            text = text.replace(s, s[0] + _ZWSP + s[1:])
    return text


def fit_pair(
    count: Callable[[str, str], int],
    tokenizer: Any,
    prompt: str,
    response: str,
    max_tokens: int,
    *,
    marker: str,
    judge: str,
) -> tuple[str, str]:
    """Shorten ``(prompt, response)`` until ``count(prompt, response) <= max_tokens``.

    ``count`` gives the number of tokens of the whole judge input (instructions included).
    The middle of the response is cut first; the prompt's middle is cut only when the prompt
    alone would take more than half of the room. The judge's instructions are never cut: if
    they alone do not fit, JudgeError.
    """
    n = count(prompt, response)
    if n <= max_tokens:
        return prompt, response
    overhead = count("", "")
    if overhead >= max_tokens:
        raise JudgeError(
            f"judge {judge!r}: its instructions alone take {overhead} tokens, more than "
            f"max_length={max_tokens}; raise max_length"
        )
    p_len = len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) if prompt else 0
    r_len = len(tokenizer(response, add_special_tokens=False)["input_ids"]) if response else 0
    marker_len = len(tokenizer(marker, add_special_tokens=False)["input_ids"])
    room = max_tokens - overhead
    for _ in range(8):
        avail = max(room - 2 * marker_len, 0)
        if p_len + r_len <= avail:
            r_keep, p_keep = r_len, p_len
        else:
            r_keep = max(avail - p_len, min(r_len, avail // 2))
            p_keep = max(avail - r_keep, 0)
        p2 = _cut_middle(tokenizer, prompt, p_keep, marker) if p_keep < p_len else prompt
        r2 = _cut_middle(tokenizer, response, r_keep, marker) if r_keep < r_len else response
        n = count(p2, r2)
        if n <= max_tokens:
            return p2, r2
        room -= max(n - max_tokens, 1)  # token boundaries moved: try again a little shorter
        if room <= 0:
            break
    raise JudgeError(
        f"judge {judge!r}: cannot fit a pair into max_length={max_tokens} tokens by cutting the "
        f"middle of its texts; raise max_length"
    )
