"""Build a player's input text, and clean the attacker's output before the defender sees it."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sparring.config import TemplateConfig
from sparring.errors import ConfigError

_FIELDS = ("prompt", "seed")


class PromptFormatter:
    """Turns a text (a seed for the attacker, an attack for the defender) into a model input."""

    def __init__(self, template: TemplateConfig, tokenizer, role: str):
        self.template = template
        self.role = role
        has_chat = bool(getattr(tokenizer, "chat_template", None))
        if template.kind == "chat" and not has_chat:
            raise ConfigError(
                f"{role}.template.kind is 'chat' but the {role}'s tokenizer has no chat template"
            )
        self.use_chat = template.kind == "chat" or (template.kind == "auto" and has_chat)
        self.tokenizer = tokenizer
        fields = [f for f in _FIELDS if "{" + f + "}" in template.text]
        if len(fields) != 1:
            raise ConfigError(
                f"{role}.template.text must contain exactly one of {{prompt}} or {{seed}}: {template.text!r}"
            )
        self.field = fields[0]

    def fill(self, text: str) -> str:
        return self.template.text.replace("{" + self.field + "}", text)

    def __call__(self, texts: Sequence[str]) -> list[str]:
        if not self.use_chat:
            return [self.fill(t) for t in texts]
        out = []
        for t in texts:
            messages = []
            if self.template.system:
                messages.append({"role": "system", "content": self.template.system})
            messages.append({"role": "user", "content": self.fill(t)})
            out.append(
                self.tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True
                )
            )
        return out

    @property
    def add_special_tokens(self) -> bool:
        """Chat templates already carry their special tokens; plain text gets the tokenizer's."""
        return not self.use_chat


_ECHO_PREFIXES = re.compile(
    r"^\s*(?:output|question|prompt|answer|human|user|assistant|ai)\s*:\s*", re.IGNORECASE
)


def clean_attack(
    raw: str,
    *,
    fallback: str,
    template_text: str,
    special_tokens: Sequence[str] = (),
    max_chars: int = 1000,
    first_line: bool = True,
) -> str:
    """Make an attacker's raw continuation into a prompt for the defender.

    Strips special tokens and echoes of the attacker's template (its instruction text, or labels
    such as ``Output:``), keeps the first non-empty line when ``first_line`` is set, caps the
    length at ``max_chars`` (at a word boundary where possible), and never returns an empty
    string: ``fallback`` (the seed) is used when nothing is left.
    """
    text = raw
    for tok in special_tokens:
        if tok:
            text = text.replace(tok, " ")
    # the template's fixed parts, if the model repeated them
    for part in re.split(r"\{(?:seed|prompt)\}", template_text):
        part = part.strip()
        if len(part) >= 4:
            text = text.replace(part, " ")
    if first_line:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        text = lines[0] if lines else ""
    text = " ".join(text.split())
    while True:
        stripped = _ECHO_PREFIXES.sub("", text)
        if stripped == text:
            break
        text = stripped
    if len(text) > max_chars:
        cut = text[:max_chars]
        space = cut.rfind(" ")
        text = cut[:space] if space > max_chars // 2 else cut
    text = text.strip()
    return text if text else fallback.strip()[:max_chars]
