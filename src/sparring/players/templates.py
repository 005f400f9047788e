"""Build a player's input text, and clean the attacker's output before the defender sees it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sparring.config import DEFAULT_TEMPLATE_TEXT, TemplateConfig
from sparring.errors import ConfigError

_FIELDS = ("prompt", "seed")
#: how a plain-text attacker is shown the defender's reply to its previous turn
PLAIN_REPLY = "\nReply: {reply}\nNext:"


@dataclass(frozen=True)
class Dialogue:
    """A conversation as one player reads it: messages alternating user, model, user, ...,
    ending with the user message to answer (an odd count). For the defender the attacker's turns
    are the user's and its own answers the model's. For the attacker the seed behaviour opens
    it, its own earlier turns are the model's and the defender's answers come back as the user's:
    each player sees itself as the assistant of its own conversation."""

    messages: tuple[str, ...]

    def chat(self) -> list[dict[str, str]]:
        """The messages as chat roles: user, assistant, user, ..."""
        roles = ("user", "assistant")
        return [{"role": roles[i % 2], "content": m} for i, m in enumerate(self.messages)]

    def __str__(self) -> str:
        return "\n".join(f"{m['role']}: {m['content']}" for m in self.chat())

    def __post_init__(self):
        if len(self.messages) % 2 != 1:
            raise ValueError(
                f"a dialogue ends with the message to answer: {len(self.messages)} messages"
            )


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
        # the text in force: the configured one, else the role's default for plain or chat input
        self.text = template.text
        if self.text is None:
            self.text = DEFAULT_TEMPLATE_TEXT.get(role, ("{prompt}", "{prompt}"))[self.use_chat]
        fields = [f for f in _FIELDS if "{" + f + "}" in self.text]
        if len(fields) != 1:
            raise ConfigError(
                f"{role}.template.text must contain exactly one of {{prompt}} or {{seed}}: {self.text!r}"
            )
        self.field = fields[0]

    def fill(self, text: str) -> str:
        return self.text.replace("{" + self.field + "}", text)

    def __call__(self, texts: Sequence[str | Dialogue], max_tokens: int | None = None) -> list[str]:
        """Each text (or :class:`Dialogue`, fitted to ``max_tokens``) as this player's input."""
        out = []
        for t in texts:
            if isinstance(t, Dialogue):
                out.append(self.dialogue(t, max_tokens))
            elif not self.use_chat:
                out.append(self.fill(t))
            else:
                out.append(self._chat([self.fill(t)]))
        return out

    def encode(self, texts: Sequence[str | Dialogue], max_tokens: int):
        """The model inputs of ``texts`` and their token batch, padded and cut at ``max_tokens``
        on the tokenizer's sides (a player's are both left:
        :func:`~sparring.players.loading.load_tokenizer`), so the end of a prompt or of a
        conversation, which the model answers, is what is kept."""
        inputs = self(texts, max_tokens)
        enc = self.tokenizer(
            inputs,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_tokens,
            add_special_tokens=self.add_special_tokens,
        )
        return inputs, enc

    def _chat(self, contents: Sequence[str]) -> str:
        messages = []
        if self.template.system:
            messages.append({"role": "system", "content": self.template.system})
        messages += Dialogue(tuple(contents)).chat()
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def _render(self, messages: Sequence[str]) -> str:
        """The template fills the first message, and for the defender every user message (each
        is an attacker's turn); the attacker's later user messages are the defender's replies,
        shown as they are (in plain text after :data:`PLAIN_REPLY`'s cue)."""
        every = self.role == "defender"
        filled = [
            self.fill(m) if i == 0 or (every and i % 2 == 0) else m for i, m in enumerate(messages)
        ]
        if self.use_chat:
            return self._chat(filled)
        text = filled[0]
        for i in range(1, len(filled), 2):
            user = filled[i + 1] if every else PLAIN_REPLY.format(reply=filled[i + 1])
            text += f" {filled[i]}" + ("\n" + user if every else user)
        return text

    def dialogue(self, d: Dialogue, max_tokens: int | None = None) -> str:
        """A dialogue as this player's input. When it outgrows ``max_tokens``, whole exchanges
        (a model message and the user message after it) go first, oldest first: the defender
        keeps at least the latest user message, the attacker the seed behaviour that opens its
        dialogue and the latest exchange. What still does not fit is cut from the left by the
        tokenizer (:meth:`encode`), so the end of the conversation, which the next message
        answers, is never lost."""
        messages = list(d.messages)
        text = self._render(messages)
        drop = 1 if self.role == "attacker" else 0  # the attacker keeps its seed
        while max_tokens is not None and self._tokens(text) > max_tokens:
            if len(messages) < 3 + 2 * drop:  # nothing left that may go
                break
            del messages[drop : drop + 2]
            text = self._render(messages)
        return text

    def _tokens(self, text: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=self.add_special_tokens)["input_ids"]
        return len(ids)

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
    for part in _template_parts(template_text):
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


def _template_parts(template_text: str) -> list[str]:
    parts = (p.strip() for p in re.split(r"\{(?:seed|prompt)\}", template_text))
    return [p for p in parts if len(p) >= 4]


def attack_end(
    raw: str,
    *,
    template_text: str,
    special_tokens: Sequence[str] = (),
    first_line: bool = True,
    max_chars: int | None = None,
) -> int | None:
    """Where :func:`clean_attack` stops reading ``raw``, or None when it reads to the end. The
    attacker is credited only for the tokens up to that character (:func:`cut_at_ends`).

    With ``first_line``, reading stops at the line break that ends the first non-empty line
    (after special tokens and template echoes are blanked), found as ``str.splitlines`` finds
    it, so ``\r``, ``\x85`` or ``\u2028`` end a line here exactly when they end it for the
    cleaner. With ``max_chars``, reading stops where the cleaned text reaches the length cap:
    the shortest prefix of ``raw`` whose cleaning already holds the whole capped attack, the
    end being that prefix's last character.
    """
    kw = {"template_text": template_text, "special_tokens": special_tokens}
    end = _line_end(raw, first_line=first_line, **kw)
    if max_chars is None:
        return end
    unbounded = 1 << 62
    limit = len(raw) if end is None else end
    if (
        len(
            clean_attack(raw[:limit], fallback="", max_chars=unbounded, first_line=first_line, **kw)
        )
        <= max_chars
    ):
        return end
    kept = len(clean_attack(raw, fallback="", max_chars=max_chars, first_line=first_line, **kw))
    lo, hi = 0, limit
    while lo < hi:  # the cleaned length grows with the prefix
        mid = (lo + hi) // 2
        got = clean_attack(raw[:mid], fallback="", max_chars=unbounded, first_line=first_line, **kw)
        if len(got) >= kept:
            hi = mid
        else:
            lo = mid + 1
    return max(lo - 1, 0)


def _line_end(
    raw: str, *, template_text: str, special_tokens: Sequence[str], first_line: bool
) -> int | None:
    """The index of the line break that ends the first non-empty line, or None (see
    :func:`attack_end`)."""
    if not first_line:
        return None
    text = raw
    for part in [t for t in special_tokens if t] + _template_parts(template_text):
        text = text.replace(part, " " * len(part))  # blank, keeping character offsets
    pos = 0
    for line in text.splitlines(keepends=True):
        body = line.splitlines()[0] if line.splitlines() else ""  # without its line break
        if body.strip():
            end = pos + len(body)
            return end if end < len(text) else None
        pos += len(line)
    return None


@dataclass
class CleanedAttacks:
    texts: list[str]  # what the defender sees
    fallback: list[bool]  # nothing was left: the seed stands in
    ends: list[int | None]  # see attack_end


def clean_attacks(
    raw: Sequence[str],
    seeds: Sequence[str],
    *,
    template_text: str,
    special_tokens: Sequence[str] = (),
    max_chars: int = 1000,
    first_line: bool = True,
) -> CleanedAttacks:
    """:func:`clean_attack` over a batch, saying which attacks fell back to their seed."""
    texts, fallback, ends = [], [], []
    for r, seed in zip(raw, seeds, strict=True):
        kw = {"template_text": template_text, "special_tokens": special_tokens}
        text = clean_attack(r, fallback="", max_chars=max_chars, first_line=first_line, **kw)
        fallback.append(not text)
        texts.append(text or seed.strip()[:max_chars])
        ends.append(attack_end(r, first_line=first_line, max_chars=max_chars, **kw))
    return CleanedAttacks(texts, fallback, ends)


def cut_at_ends(tokenizer, response_ids, response_mask, ends: Sequence[int | None]) -> None:
    """Zero ``response_mask`` (in place) after the token that carries character ``ends[row]``
    of the decoded response: the fewest leading tokens whose decoded text reaches past it, whole
    characters only (binary search: the decoded length grows with the token count)."""
    for row, end in enumerate(ends):
        if end is None:
            continue
        ids = response_ids[row]
        lo, hi = 1, int(response_mask[row].sum())
        while lo < hi:
            mid = (lo + hi) // 2
            # a token that ends mid-character decodes to U+FFFD: not yet past the character
            text = tokenizer.decode(ids[:mid], skip_special_tokens=True).rstrip("\ufffd")
            if len(text) > end:
                hi = mid
            else:
                lo = mid + 1
        response_mask[row, lo:] = 0
