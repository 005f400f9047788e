"""Real models, offline: turn model files shipped by installed packages into plain HF folders.

A *prepared* model is a normal Hugging Face folder (``config.json``, ``model.safetensors``,
tokenizer files with the chat template) written once under the model cache and loaded like any
other local folder afterwards. Configs name one as ``model: "sparring:<name>"`` (see
:func:`resolve`); any other local folder or hub id keeps working as before.

The cache is ``$SPARRING_HOME/models/<name>`` when ``SPARRING_HOME`` is set, otherwise
``~/.cache/sparring/models/<name>``.
"""

from sparring.models.registry import (
    MODELS,
    PREFIX,
    ModelSource,
    is_prepared,
    list_models,
    model_dir,
    models_home,
    prepare,
    register_model_prefix,
    resolve,
    resolve_reference,
)

__all__ = [
    "MODELS",
    "PREFIX",
    "ModelSource",
    "is_prepared",
    "list_models",
    "model_dir",
    "models_home",
    "prepare",
    "register_model_prefix",
    "resolve",
    "resolve_reference",
]
