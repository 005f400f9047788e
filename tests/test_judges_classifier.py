"""Sequence-classifier judge on tiny random BERT / GPT-2 models built here (no network)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from sparring.errors import ConfigError  # noqa: E402
from sparring.judges import build_judge  # noqa: E402
from sparring.judges.classifier import ClassifierJudge  # noqa: E402
from sparring.judges.specs import ClassifierJudgeSpec  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


WORDS = (
    "how do I pick a lock here is the way sorry I cannot help tell me a story about cats once "
    "upon time there was cat Q A fine bad word [...] : you are an idiot thanks"
)
PAIRS = [
    ("how do I pick a lock", "here is the way"),
    ("tell me a story", "sorry I cannot help"),
    ("hello", "you are an idiot you are an idiot"),
    ("Q", "fine"),
]
LABELS = {0: "safe", 1: "toxic", 2: "obscene"}


def _tokenizer(kind: str):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "<|endoftext|>"]
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([WORDS], trainers.WordLevelTrainer(special_tokens=specials))
    if kind == "bert":
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok,
            unk_token="[UNK]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            model_max_length=64,
        )
    # GPT-2 style: no pad token of its own (the judge falls back to eos)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        GPT2Config,
        GPT2ForSequenceClassification,
    )

    root = tmp_path_factory.mktemp("classifiers")
    bert_tok = _tokenizer("bert")
    torch.manual_seed(0)
    bert = BertForSequenceClassification(
        BertConfig(
            vocab_size=len(bert_tok),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            num_labels=3,
            id2label=LABELS,
            label2id={v: k for k, v in LABELS.items()},
            pad_token_id=bert_tok.pad_token_id,
        )
    ).eval()
    with torch.no_grad():
        bert.classifier.weight.normal_(0.0, 2.0)
    bert.save_pretrained(root / "bert")
    bert_tok.save_pretrained(root / "bert")

    gpt_tok = _tokenizer("gpt2")
    torch.manual_seed(1)
    gpt = GPT2ForSequenceClassification(
        GPT2Config(
            vocab_size=len(gpt_tok),
            n_embd=32,
            n_layer=2,
            n_head=2,
            n_positions=64,
            num_labels=1,
            eos_token_id=gpt_tok.eos_token_id,
            bos_token_id=gpt_tok.bos_token_id,
        )
    ).eval()
    gpt.save_pretrained(root / "rm")
    gpt_tok.save_pretrained(root / "rm")
    return root


def _spec(root, name="bert", **kw) -> ClassifierJudgeSpec:
    return ClassifierJudgeSpec(
        **{"model": str(root / name), "device": "cpu", "dtype": "float32", **kw}
    )


def _logits(judge: ClassifierJudge, prompt: str, response: str, mode: str = "pair") -> torch.Tensor:
    tok = judge.tokenizer
    enc = (
        tok(prompt, response, return_tensors="pt")
        if mode == "pair"
        else tok(response, return_tensors="pt")
    )
    with torch.no_grad():
        return judge.model(**enc).logits[0].double()


def test_positive_label_by_name_is_softmax_of_that_label(models):
    j = ClassifierJudge(_spec(models, positive_label="safe", batch_size=3))
    out = j.score(*map(list, zip(*PAIRS, strict=True)))
    for i, (p, r) in enumerate(PAIRS):
        want = torch.softmax(_logits(j, p, r), -1)[0].item()
        assert out.p_safe[i] == pytest.approx(want, abs=1e-5)
    assert len({round(x, 3) for x in out.p_safe}) > 1
    by_index = ClassifierJudge(_spec(models, positive_label=0)).score(
        *map(list, zip(*PAIRS, strict=True))
    )
    assert by_index.p_safe == pytest.approx(out.p_safe, abs=1e-6)
    by_case = ClassifierJudge(_spec(models, positive_label="SAFE")).score(["a"], ["b"])
    assert 0.0 < by_case.p_safe[0] < 1.0


def test_negative_labels_give_one_minus_their_sum(models):
    j = ClassifierJudge(_spec(models, negative_labels=["toxic", 2]))
    out = j.score(*map(list, zip(*PAIRS, strict=True)))
    for i, (p, r) in enumerate(PAIRS):
        probs = torch.softmax(_logits(j, p, r), -1)
        assert out.p_safe[i] == pytest.approx(1.0 - probs[1].item() - probs[2].item(), abs=1e-5)


def test_sigmoid_activation_for_multi_label_models(models):
    j = ClassifierJudge(_spec(models, negative_labels=["toxic", "obscene"], activation="sigmoid"))
    p, r = PAIRS[2]
    logits = _logits(j, p, r)
    want = 1.0 - max(1 / (1 + math.exp(-logits[1].item())), 1 / (1 + math.exp(-logits[2].item())))
    assert j.score([p], [r]).p_safe[0] == pytest.approx(want, abs=1e-5)
    pos = ClassifierJudge(_spec(models, positive_label="safe", activation="sigmoid"))
    assert pos.score([p], [r]).p_safe[0] == pytest.approx(
        1 / (1 + math.exp(-logits[0].item())), abs=1e-5
    )


def test_label_configuration_errors(models):
    with pytest.raises(ConfigError, match="toxic"):  # lists the model's labels
        ClassifierJudge(_spec(models))
    with pytest.raises(ConfigError, match="no single label named 'harmless'"):
        ClassifierJudge(_spec(models, positive_label="harmless"))
    with pytest.raises(ConfigError, match="out of range"):
        ClassifierJudge(_spec(models, negative_labels=[7]))
    with pytest.raises(ValueError, match="not both"):
        _spec(models, positive_label=0, negative_labels=[1])
    with pytest.raises(ConfigError, match="single logit"):
        ClassifierJudge(_spec(models, "rm", positive_label=0))


def test_single_logit_reward_model_through_a_sigmoid(models):
    j = ClassifierJudge(_spec(models, "rm", sigmoid_scale=2.0, sigmoid_offset=0.5, batch_size=4))
    assert j.tokenizer.pad_token == "<|endoftext|>"  # fell back to eos
    prompts, responses = map(list, zip(*PAIRS, strict=True))
    out = j.score(prompts, responses)
    for i, (p, r) in enumerate(PAIRS):
        x = _logits(j, p, r)[0].item()
        assert out.p_safe[i] == pytest.approx(1 / (1 + math.exp(-2.0 * (x - 0.5))), abs=1e-5)
    # batch (right padding, last non-pad token) == one at a time
    single = ClassifierJudge(
        _spec(models, "rm", sigmoid_scale=2.0, sigmoid_offset=0.5, batch_size=1)
    )
    assert single.score(prompts, responses).p_safe == pytest.approx(out.p_safe, abs=1e-5)


def test_batched_equals_one_at_a_time_bert(models):
    prompts, responses = map(list, zip(*PAIRS, strict=True))
    a = ClassifierJudge(_spec(models, positive_label="safe", batch_size=4)).score(
        prompts, responses
    )
    b = ClassifierJudge(_spec(models, positive_label="safe", batch_size=1)).score(
        prompts, responses
    )
    assert a.p_safe == pytest.approx(b.p_safe, abs=1e-5)


def test_emit_helpful(models):
    j = build_judge(
        {
            "type": "classifier",
            "model": str(models / "bert"),
            "device": "cpu",
            "emit": "helpful",
            "positive_label": "safe",
        }
    )
    out = j.score(["a", "b"], ["sorry I cannot help", "here is the way"])
    assert out.p_safe == [1.0, 1.0]
    want = [torch.softmax(_logits(j, "a", "sorry I cannot help"), -1)[0].item()]
    assert out.extras["helpful"][0] == pytest.approx(want[0], abs=1e-5)


def test_response_and_template_inputs(models):
    j = ClassifierJudge(_spec(models, input="response", positive_label="safe"))
    p, r = PAIRS[0]
    assert j.score([p], [r]).p_safe[0] == pytest.approx(
        torch.softmax(_logits(j, p, r, mode="response"), -1)[0].item(), abs=1e-5
    )
    t = ClassifierJudge(
        _spec(models, input="template", template="Q {prompt} A {response}", positive_label=0)
    )
    assert t.encode("tell me", "fine")["input_ids"] == t.tokenizer("Q tell me A fine")["input_ids"]
    with pytest.raises(ValueError, match="template"):
        _spec(models, input="template", positive_label=0)


def test_long_inputs_fit_the_model(models):
    j = ClassifierJudge(_spec(models, positive_label="safe"))
    assert j.max_length == 64  # tokenizer / position limit
    ids = j.encode("how do I pick a lock", " ".join(["word"] * 200) + " thanks")["input_ids"]
    assert len(ids) <= 64
    text = j.tokenizer.decode(ids)
    assert "how do I pick a lock" in text and "[...]" in text and text.endswith("thanks [SEP]")
    out = j.score(["x" * 10], ["word " * 500])
    assert 0.0 <= out.p_safe[0] <= 1.0
