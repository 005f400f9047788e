"""How to reach a served model: the ``base_url``, ``model``, credentials and limits shared by the
endpoint defender, the LLM judge and ``--against`` targets.

Secrets never travel in a spec: ``api_key_env`` and ``headers_env`` name environment variables,
and a spec that carries a credential itself (a key pasted into ``api_key_env``, a user:password
or a key in ``base_url``) is refused without echoing it, so it reaches no config file, log or
tracker.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sparring.errors import ConfigError

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: query parameters that carry credentials (a ``base_url`` holding one is refused)
SECRET_QUERY = re.compile(
    r"^(?:.*[-_])?(?:key|apikey|token|secret|password|passwd|sig|signature|auth|code)$",
    re.IGNORECASE,
)


class EndpointSpec(BaseModel):
    """An OpenAI-compatible endpoint. ``api_key_env`` names the environment variable that holds
    the key (never the key itself: it is not written to the run folder, logs or samples); without
    it, local servers get a placeholder key."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="e.g. http://127.0.0.1:8000/v1")
    model: str = Field(description="the model name the server knows")
    api_key_env: str | None = Field(
        None, description="name of the environment variable holding the API key (not the key)"
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra HTTP headers that are not secret"
    )
    headers_env: dict[str, str] = Field(
        default_factory=dict,
        description="extra HTTP headers whose values are secret: header name -> the environment "
        "variable holding its value (e.g. api-key: AZURE_OPENAI_KEY)",
    )
    max_concurrency: int = Field(8, ge=1, le=256, description="requests in flight at once")
    max_retries: int = Field(
        4,
        ge=0,
        le=20,
        description="retries of one request on 408, 409, 429, 5xx, timeouts, dropped connections "
        "and unreadable answers (every attempt counts against request_budget)",
    )
    timeout_s: float = Field(60.0, gt=0, description="per HTTP attempt")
    request_budget: int | None = Field(
        None,
        ge=1,
        description="HTTP attempts this run may make, failed ones and retries included, shared by "
        "all its processes (cache hits are free)",
    )
    max_requests_per_minute: int | None = Field(None, ge=1, description="per process")
    max_tokens_per_minute: int | None = Field(
        None,
        ge=1,
        description="per process; a request counts its max_tokens plus its prompt's characters / 4",
    )
    seed: int | None = Field(
        None,
        description="send a seed with each request (derived from this and the request's draw), "
        "for APIs that accept one; servers that reject unknown fields need it unset",
    )
    price_per_1k_prompt_tokens: float = Field(0.0, ge=0)
    price_per_1k_completion_tokens: float = Field(0.0, ge=0)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return http_url(v, "base_url")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not ENV_NAME.match(v):
            # the value is not shown: it may be the key itself, pasted in the wrong place
            raise ValueError(
                "must name an environment variable (letters, digits and underscores, not "
                "starting with a digit), not hold the key: export the key as a variable and "
                "give its name; the value given is not shown"
            )
        return v

    @field_validator("headers_env")
    @classmethod
    def _header_envs(cls, v: dict[str, str]) -> dict[str, str]:
        for header, env in v.items():
            if not ENV_NAME.match(env):
                raise ValueError(
                    f"headers_env[{header!r}] must name an environment variable, not hold the "
                    "secret; the value given is not shown"
                )
        return v


def http_url(value: str, field: str) -> str:
    """``value`` without a trailing slash when it is an http(s) URL that names a host and holds
    no credential (user:password, or a key, token or signature in its query); else a ValueError
    naming ``field`` that does not repeat the value."""
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"{field} must start with http:// or https:// and name a host")
    parts = urlsplit(value)
    secret_query = [k for k, _ in parse_qsl(parts.query, keep_blank_values=True)]
    secret_query = [k for k in secret_query if SECRET_QUERY.match(k)]
    if parts.username is not None or parts.password is not None or secret_query:
        what = "a user or password" if parts.username is not None else f"{secret_query[0]!r}"
        raise ValueError(
            f"{field} carries a credential ({what}); it would be written to the run folder and "
            "logs. Export it as an environment variable and name it in api_key_env (or "
            "headers_env); the URL is not shown"
        )
    return value.rstrip("/")


def is_loopback(url: str) -> bool:
    """True when ``url``'s host is this machine."""
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


_TARGET = re.compile(r"^openai:(?P<model>[^@]+)@(?P<url>https?://\S+)$")


def parse_target(text: str) -> EndpointSpec | None:
    """``openai:<model>@<base_url>`` (a keyless ``--against`` target) -> its spec; None for
    anything else (a model folder, a target file)."""
    m = _TARGET.match(text)
    if m is None:
        if text.startswith("openai:"):
            raise ConfigError(
                f"{text!r}: an endpoint target looks like openai:MODEL@http://HOST:PORT/v1; for "
                "a server that needs a key or a system prompt, give a target file (--against "
                "target.yaml)"
            )
        return None
    try:
        return EndpointSpec(base_url=m["url"], model=m["model"])
    except ValueError as exc:
        raise ConfigError(f"--against openai:{m['model']}@...: {_first_message(exc)}") from None


def _first_message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(str(e.get("msg", "")) for e in errors())
    return str(exc)


def is_target_file(text: str) -> bool:
    """True when ``text`` names a YAML target file (``--against target.yaml``)."""
    return text.endswith((".yaml", ".yml")) and Path(text).is_file()


def read_target_file(path: str | Path) -> dict[str, Any]:
    """The served model a target file describes, as a ``type: openai`` defender block.

    The file is either the block itself (``model``, ``base_url``, ``api_key_env``, ``system``,
    ``headers``, ``generation``, limits and prices) or a run config whose ``defender`` is one
    (the run's own served defender, keys and system prompt included). ``system`` is shorthand
    for ``template: {system: ...}``.
    """
    from sparring.config_load import read_yaml_block

    data = read_yaml_block(
        path, "defender", option="--against", expected="a mapping with model and base_url"
    )
    data.setdefault("type", "openai")
    if data["type"] != "openai":
        raise ConfigError(f"--against {path}: type must be openai (got {data['type']!r})")
    if "system" in data:
        template = dict(data.get("template") or {})
        template["system"] = data.pop("system")
        data["template"] = template
    return data
