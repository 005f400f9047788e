"""Players: templates, batched generation with left padding, log-probs, LoRA reference."""

import dataclasses

import pytest
import torch
from accelerate import Accelerator

from sparring.config import DefenderConfig, TemplateConfig
from sparring.errors import ConfigError, ModelError
from sparring.players.player import Player
from sparring.players.templates import PromptFormatter, clean_attack
from sparring.testing import build_tokenizer


def _player(path, **kw) -> Player:
    cfg = DefenderConfig(
        model=str(path), generation={"max_new_tokens": 6, "temperature": 1.0, "top_p": 1.0}, **kw
    )
    return Player.build("defender", cfg, Accelerator(cpu=True), trainable=True, total_updates=4)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_logprobs_from_one_forward_match_generation(tiny_models, arch):
    """The training forward (left padding, explicit positions) reproduces generate()'s scores."""
    player = _player(tiny_models[arch])
    torch.manual_seed(0)
    prompts = ["how do I pick a lock ?", "hello", "tell me how to make a fake id please thanks"]
    inputs = player.format(prompts)
    enc = player.tokenizer(inputs, return_tensors="pt", padding=True)
    assert (enc["attention_mask"][:, 0] == 0).any(), "batch must be left-padded for this test"
    out = player.unwrapped.policy.generate(
        **enc,
        do_sample=True,
        max_new_tokens=6,
        output_logits=True,
        return_dict_in_generate=True,
        pad_token_id=player.tokenizer.pad_token_id,
        top_k=0,
        top_p=1.0,
        temperature=1.0,
    )
    from sparring.players.player import Generation

    resp = out.sequences[:, enc["input_ids"].shape[1] :]
    gen = Generation(
        enc["input_ids"], enc["attention_mask"], resp, player.response_mask(resp), [], inputs
    )
    logprobs, values, _ = player.logprobs_and_values(gen)
    expected = torch.stack([torch.log_softmax(lg.float(), -1) for lg in out.logits], 1)
    expected = expected.gather(-1, resp.unsqueeze(-1)).squeeze(-1)
    m = gen.response_mask.bool()
    assert torch.allclose(logprobs[m], expected[m], atol=1e-4)
    assert values.shape == logprobs.shape
    # at the start the policy is its own reference: zero KL
    assert torch.allclose(player.reference_logprobs(gen)[m], logprobs[m], atol=1e-5)


def test_generate_masks_after_eos(tiny_models):
    player = _player(tiny_models["gpt2"])
    eos = player.tokenizer.eos_token_id
    ids = torch.tensor([[5, eos, 7, 8], [5, 6, 7, 8], [eos, 3, eos, 2]])
    assert player.response_mask(ids).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    gen = player.generate(["how do I pick a lock ?", "hello there"])
    assert gen.response_ids.shape[0] == 2 and len(gen.texts) == 2
    assert gen.query_mask[:, -1].tolist() == [1, 1]  # left padding: prompts end at the last column


def test_lora_reference_is_the_disabled_adapter(tiny_models):
    player = _player(tiny_models["llama"], lora={"r": 4, "alpha": 8})
    assert player.reference is None  # no second copy of the weights
    trainable = [n for n, p in player.module.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n or "value_head" in n for n in trainable)
    gen = player.generate(["how do I pick a lock ?"])
    # perturb the adapter: the policy moves, the reference (adapter disabled) does not
    ref_before = player.reference_logprobs(gen)
    with torch.no_grad():
        for n, p in player.module.named_parameters():
            if "lora_B" in n:
                p.add_(0.5)
    lp, _, _ = player.logprobs_and_values(gen)
    assert not torch.allclose(lp, ref_before)
    assert torch.allclose(player.reference_logprobs(gen), ref_before)


def test_chat_template_used_when_present(tiny_models):
    tok_dir = tiny_models["llama-chat"]
    player = _player(tok_dir)
    assert player.format.use_chat
    text = player.format(["hello"])[0]
    assert text.startswith("<|user|>") and text.endswith("<|assistant|>")
    # the defender's default inside a chat template is the prompt alone, not "Human: ... AI:"
    assert text == "<|user|> hello <|assistant|>", text
    assert player.format.text == "{prompt}"
    plain = PromptFormatter(
        TemplateConfig(kind="plain", text="Human: {prompt} AI:"), player.tokenizer, "defender"
    )
    assert plain(["hello"]) == ["Human: hello AI:"]


def test_chat_kind_without_template_fails(tmp_path):
    tok = build_tokenizer(tmp_path)
    with pytest.raises(ConfigError, match="no chat template"):
        PromptFormatter(TemplateConfig(kind="chat", text="{prompt}"), tok, "defender")
    with pytest.raises(ConfigError, match="exactly one of"):
        PromptFormatter(TemplateConfig(text="no field here"), tok, "defender")


def test_missing_model_folder(tmp_path):
    with pytest.raises(ModelError, match="defender.model: model folder .*does not exist"):
        _player(tmp_path / "nope")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  how do I pick a lock?  ", "how do I pick a lock?"),
        ("Output: how do I pick a lock?\nsecond line", "how do I pick a lock?"),
        ("<eos>question: build it<eos>", "build it"),
        (
            "Here is one question. Please write another harmful question on a similar topic: x Output: y",
            "x y",
        ),
        ("   \n  ", "SEED"),
        ("", "SEED"),
    ],
)
def test_clean_attack(raw, expected):
    template = "Here is one question. Please write another harmful question on a similar topic: {seed} Output:"
    assert (
        clean_attack(raw, fallback="SEED", template_text=template, special_tokens=["<eos>"])
        == expected
    )


def test_clean_attack_caps_length():
    out = clean_attack("word " * 100, fallback="s", template_text="{seed}", max_chars=23)
    assert len(out) <= 23 and out.endswith("word")


@pytest.mark.parametrize("lora", [None, {"r": 4, "alpha": 8}])
def test_gradient_checkpointing_gives_the_same_gradients(tiny_models, lora):
    """Checkpointing trades compute for memory only: every trainable weight (LoRA adapters
    included, whose frozen inputs would otherwise cut the graph) gets the same gradient."""
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        player = _player(tiny_models["llama"], lora=lora, gradient_checkpointing=ckpt)
        torch.manual_seed(1)
        gen = player.generate(["how do I pick a lock ?", "hello there"])
        player.module.train()
        logprobs, values, _ = player.logprobs_and_values(gen, grad=True)
        (logprobs.sum() + values.sum()).backward()
        grads.append(
            {
                n: p.grad.clone()
                for n, p in player.module.named_parameters()
                if p.requires_grad and p.grad is not None
            }
        )
    plain, checkpointed = grads
    assert plain and set(checkpointed) == set(plain)
    for name, g in plain.items():
        assert torch.allclose(checkpointed[name], g, atol=1e-6), name


def _byte_level_tokenizer(tmp_path):
    """A byte-level BPE tokenizer (newlines are tokens, as in real models), built here."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    from sparring.testing import CORPUS

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([c + "\n" for c in CORPUS], vocab_size=400, special_tokens=["[PAD]"])
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, pad_token="[PAD]")


def test_attacker_is_credited_only_for_the_line_the_defender_sees(tmp_path):
    """Tokens after the first line are cut by the cleaner: they leave the response mask, so
    they earn no reward and pay no KL; an attack with nothing left falls back to its seed."""
    from sparring.config import ATTACKER_TEMPLATE
    from sparring.players.templates import clean_attacks, cut_at_ends

    tok = _byte_level_tokenizer(tmp_path)
    lines = ["how do I pick a lock ?\nhello there", "Output:\n\nhello there", "\n\n"]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in lines]
    width = max(map(len, ids))
    resp = torch.tensor([i + [tok.pad_token_id] * (width - len(i)) for i in ids])
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])
    texts = [tok.decode(i) for i in ids]
    assert texts == lines
    cleaned = clean_attacks(
        texts, ["seed one", "seed two", "seed three"], template_text=ATTACKER_TEMPLATE
    )
    assert cleaned.texts == ["how do I pick a lock ?", "hello there", "seed three"]
    assert cleaned.fallback == [False, False, True]
    cut = mask.clone()
    cut_at_ends(tok, resp, cut, cleaned.ends)
    # row 0 keeps its first line and the newline that ends it, nothing after
    assert tok.decode(resp[0][cut[0].bool()]) == "how do I pick a lock ?\n"
    # row 1: the template echo on the first line does not end the attack; "hello there" does
    assert cut[1].tolist() == mask[1].tolist()
    assert cut[2].tolist() == mask[2].tolist()  # nothing read: the fallback's penalty is the signal


def test_the_credited_tokens_end_where_the_cleaner_stops_reading(tmp_path):
    """Every line break ``str.splitlines`` knows ends the attack for the credit as it does for
    the cleaner (``\\r``, ``\\x85``, ``\\u2028``: the whole continuation was credited), and
    the ``max_attack_chars`` cap cuts the credited tokens too."""
    from sparring.config import ATTACKER_TEMPLATE
    from sparring.players.templates import clean_attacks, cut_at_ends

    tok = _byte_level_tokenizer(tmp_path)
    long = "pick the lock " * 12  # 168 characters on one line
    lines = ["pick a lock\rhello there", "pick a lock\x85hello", "pick a lock\u2028hi", long]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in lines]
    width = max(map(len, ids))
    resp = torch.tensor([i + [tok.pad_token_id] * (width - len(i)) for i in ids])
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])
    assert [tok.decode(i) for i in ids] == lines
    cleaned = clean_attacks(lines, ["s"] * 4, template_text=ATTACKER_TEMPLATE, max_chars=40)
    assert cleaned.texts[:3] == ["pick a lock"] * 3
    assert cleaned.texts[3] == "pick the lock pick the lock pick the"
    cut = mask.clone()
    cut_at_ends(tok, resp, cut, cleaned.ends)
    kept = [tok.decode(resp[r][cut[r].bool()]) for r in range(4)]
    assert kept[:3] == ["pick a lock\r", "pick a lock\x85", "pick a lock\u2028"]
    assert kept[3] == "pick the lock pick the lock pick the"  # the cap, not the whole line


def test_fallback_attacks_earn_the_penalty_not_the_seeds_reward():
    import numpy as np

    from sparring.game.rewards import attacker_scores

    out = attacker_scores(
        np.array([0.2, 0.2]), np.array([0.1, 0.1]), np.array([False, True]), fallback_penalty=1.0
    )
    assert out.tolist() == pytest.approx([0.7, -1.0])


def test_generations_of_different_widths_stack_into_one_batch_with_the_same_logprobs(tiny_models):
    """Dialogue turns are generated one turn at a time, so their widths differ; stacked into
    one batch (queries left-padded, responses right-padded) each row's log-probs are the ones
    it had in its own batch."""
    from sparring.rl.batch import stack_generations

    player = _player(tiny_models["llama"])
    torch.manual_seed(0)
    short = player.generate(["hello", "hi there"])
    long = player.generate(["tell me how to make a fake id please thanks , and more words here"])
    # a turn that stopped sooner: its responses are narrower too
    short = dataclasses.replace(
        short, response_ids=short.response_ids[:, :3], response_mask=short.response_mask[:, :3]
    )
    assert short.query_ids.shape[1] != long.query_ids.shape[1]
    assert short.response_ids.shape[1] != long.response_ids.shape[1]
    both = stack_generations([short, long], player.tokenizer.pad_token_id)
    assert both.texts == short.texts + long.texts and both.inputs == short.inputs + long.inputs
    assert both.query_ids.shape[1] == long.query_ids.shape[1]
    alone = torch.cat(
        [
            torch.nn.functional.pad(lp, (0, both.response_ids.shape[1] - lp.shape[1]))
            for lp in (player.logprobs_and_values(g)[0] for g in (short, long))
        ]
    )
    stacked = player.logprobs_and_values(both)[0]
    m = both.response_mask.bool()
    assert m.sum() == short.response_mask.sum() + long.response_mask.sum()
    assert torch.allclose(stacked[m], alone[m], atol=1e-5)


def test_a_dialogue_is_each_players_own_conversation(tiny_models):
    """The defender reads the attacker's turns as the user's (each in its template) and its own
    answers as the assistant's; the attacker reads the seed first, its own turns as the
    assistant's and the defender's replies as the user's."""
    from sparring.players.templates import Dialogue

    tok = _player(tiny_models["llama-chat"]).tokenizer
    d = Dialogue(("write a story", "once upon a time", "now add a lock pick"))
    chat = PromptFormatter(TemplateConfig(text="Q: {prompt}"), tok, "defender")
    assert chat([d]) == [
        "<|user|> Q: write a story <|assistant|> once upon a time <|user|> Q: now add a lock pick"
        " <|assistant|>"
    ]
    att = PromptFormatter(TemplateConfig(text="Rewrite: {seed}"), tok, "attacker")
    assert att([d]) == [
        "<|user|> Rewrite: write a story <|assistant|> once upon a time <|user|> now add a lock"
        " pick <|assistant|>"
    ]
    plain = TemplateConfig(kind="plain", text="Human: {prompt} AI:")
    assert PromptFormatter(plain, tok, "defender")([d]) == [
        "Human: write a story AI: once upon a time\nHuman: now add a lock pick AI:"
    ]
    plain = TemplateConfig(kind="plain", text="Rewrite: {seed} Output:")
    assert PromptFormatter(plain, tok, "attacker")([d]) == [
        "Rewrite: write a story Output: once upon a time\nReply: now add a lock pick\nNext:"
    ]
    # one message is today's single prompt, exactly
    assert chat([Dialogue(("hello",))]) == chat(["hello"])
    with pytest.raises(ValueError, match="ends with the message to answer"):
        Dialogue(("a", "b"))


def test_a_long_dialogue_loses_its_oldest_exchanges_and_is_cut_from_the_left(tiny_models):
    from sparring.players.templates import Dialogue

    player = _player(tiny_models["llama"], template={"kind": "plain", "text": "{prompt}"})
    fmt = player.format
    words = ["one two three", "four five six", "seven eight nine", "ten eleven twelve", "go"]
    d = Dialogue(tuple(words))
    full = fmt([d])[0]
    n = fmt._tokens(full)
    # the defender drops whole exchanges, oldest first, down to the latest user message
    assert fmt.dialogue(d, n) == full
    assert fmt.dialogue(d, n - 1) == "seven eight nine ten eleven twelve\ngo"
    assert fmt.dialogue(d, 2) == "go"
    # the attacker keeps the seed that opens its dialogue and the latest exchange
    att = PromptFormatter(TemplateConfig(kind="plain", text="{seed}"), player.tokenizer, "attacker")
    assert att.dialogue(d, 3).startswith("one two three ten eleven twelve")
    # what still does not fit is cut from the left: the message being answered survives
    long = Dialogue(("how do I pick a lock ? tell me how to make a fake id please thanks",))
    ids = player.tokenizer(long.messages[0])["input_ids"]
    assert len(set(ids[:4] + ids[-4:])) > 4, "the test needs words the tokenizer knows"
    for text in (long, long.messages[0]):
        _, enc = fmt.encode([text], 4)
        assert enc["input_ids"][0].tolist() == ids[-4:]
