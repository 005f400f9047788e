"""How to reach a served model: the ``base_url``, ``model`` and limits shared by the endpoint
defender and the LLM judge (and ``--against`` targets)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sparring.errors import ConfigError


class EndpointSpec(BaseModel):
    """An OpenAI-compatible endpoint. ``api_key_env`` names the environment variable that holds
    the key (never the key itself: it is not written to the run folder, logs or samples); without
    it, local servers get a placeholder key."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="e.g. http://127.0.0.1:8000/v1")
    model: str = Field(description="the model name the server knows")
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    max_concurrency: int = Field(8, ge=1, le=256, description="requests in flight at once")
    max_retries: int = Field(
        4, ge=0, le=20, description="retries on 429, 5xx, timeouts and malformed answers"
    )
    timeout_s: float = Field(60.0, gt=0, description="per request")
    request_budget: int | None = Field(
        None, ge=1, description="requests this run may pay for (cache hits are free)"
    )
    price_per_1k_prompt_tokens: float = Field(0.0, ge=0)
    price_per_1k_completion_tokens: float = Field(0.0, ge=0)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return http_url(v, "base_url")


def http_url(value: str, field: str) -> str:
    """``value`` without a trailing slash when it is an http(s) URL that names a host; else a
    ValueError naming ``field``."""
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"{field} {value!r} must start with http:// or https:// and name a host")
    return value.rstrip("/")


_TARGET = re.compile(r"^openai:(?P<model>[^@]+)@(?P<url>https?://\S+)$")


def parse_target(text: str) -> EndpointSpec | None:
    """``openai:<model>@<base_url>`` (a ``--against`` target) -> its spec; None for anything
    else (a model folder)."""
    m = _TARGET.match(text)
    if m is None:
        if text.startswith("openai:"):
            raise ConfigError(
                f"{text!r}: an endpoint target looks like openai:MODEL@http://HOST:PORT/v1"
            )
        return None
    return EndpointSpec(base_url=m["url"], model=m["model"])
