"""Models behind OpenAI-compatible endpoints (vLLM, TGI, Ollama, ``transformers serve``, hosted
APIs), through the ``openai`` client: bounded concurrency, retries with backoff, a request budget
and cost counter, and a content-hash cache in the run folder so that a resumed run never pays
for the same answer twice. The API key is read from an environment variable and never written.

:class:`~sparring.endpoints.client.EndpointClient` is what the endpoint defender
(:mod:`sparring.players.endpoint`) and the LLM judge (:mod:`sparring.judges.llm`) use.
"""

from sparring.endpoints.client import Completion, EndpointClient
from sparring.endpoints.spec import EndpointSpec, parse_target

__all__ = ["Completion", "EndpointClient", "EndpointSpec", "parse_target"]
