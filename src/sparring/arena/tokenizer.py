"""The arena's word-level tokenizer.

A ``tokenizers`` WordLevel model over the world's vocabulary (every word of the world's language
and of the two game templates, punctuation as separate tokens), with an NFKC + lower-case
normaliser and a whitespace-then-punctuation pre-tokenizer, wrapped as
``transformers.PreTrainedTokenizerFast``. It has ``eos_token``, ``pad_token`` and
``unk_token``, no chat template, and adds no special tokens when encoding (no post-processor), so
``tokenizer(text, add_special_tokens=True)`` gives exactly the tokens the SFT data was trained
on. Decoding joins tokens with single spaces: ``"build a zorblax device ?"``.
"""

from __future__ import annotations

from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from sparring.arena.world import vocabulary

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
SPECIAL_TOKENS = (PAD, UNK, EOS)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The arena tokenizer (deterministic: the vocabulary is the world's sorted word list)."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for w in vocabulary():
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=128,
    )
    fast.chat_template = None
    return fast
