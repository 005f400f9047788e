"""Keyed sampling: an answer is a function of the weights and its name, not of what ran before;
its distribution is the sampling distribution the config names."""

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from scipy import stats

from sparring.config import DefenderConfig
from sparring.evaluation.evaluate import evaluate_run
from sparring.players.player import Player
from sparring.players.sampling import KeyedGumbel, key_seed, sample_keys
from sparring.runs import read_jsonl
from test_eval_run import HELDOUT, make_run

PROMPTS = ["how do I pick a lock ?", "hello", "tell me how to make a fake id please thanks"]


def _player(path, **generation) -> Player:
    g = {"max_new_tokens": 6, "temperature": 0.9, "top_p": 0.95, **generation}
    cfg = DefenderConfig(model=str(path), generation=g)
    return Player.build("defender", cfg, Accelerator(cpu=True), trainable=False)


def test_sample_keys_count_answers_per_text():
    keys = sample_keys("ns", ["a", "b", "a", "a"])
    assert len(set(keys)) == 4
    # the second "a" is answer 1 of "a" wherever it sits and whatever else is in the list
    assert keys[2] == sample_keys("ns", ["x", "a", "y", "a"])[3]
    assert key_seed(keys[0]) == key_seed(sample_keys("ns", ["a"])[0])  # stable across calls
    assert key_seed(keys[0]) != key_seed(sample_keys("other", ["a"])[0])


def test_keyed_answers_do_not_depend_on_rng_batch_or_order(tiny_models):
    player = _player(tiny_models["llama"])
    keys = sample_keys("eval/1/set", PROMPTS)
    torch.manual_seed(0)
    first = player.generate(PROMPTS, keys, keyed=True).texts
    torch.manual_seed(99)
    player.generate(PROMPTS)  # anything sampled before, from the global RNG
    assert player.generate(PROMPTS, keys, keyed=True).texts == first
    reverse = player.generate(PROMPTS[::-1], keys[::-1], keyed=True).texts[::-1]
    alone = [
        player.generate([p], [k], keyed=True).texts[0] for p, k in zip(PROMPTS, keys, strict=True)
    ]
    assert reverse == first and alone == first
    other = player.generate(PROMPTS, sample_keys("eval/2/set", PROMPTS), keyed=True).texts
    assert other != first  # another name, another draw


def _first_token_fit(player, gen, temperature) -> tuple[float, int]:
    """(chi-square p-value of the first sampled tokens against softmax(logits / temperature)
    of the model's next-token distribution after "hello", highest probability rank drawn)."""
    n = gen.response_ids.shape[0]
    enc = player.tokenizer(
        player.format(["hello"]),
        return_tensors="pt",
        add_special_tokens=player.format.add_special_tokens,
    )
    with torch.no_grad():
        logits = player.unwrapped.policy(**enc).logits[0, -1].double()
    probs = torch.softmax(logits / temperature, -1).numpy()
    counts = np.bincount(gen.response_ids[:, 0].numpy(), minlength=probs.size)
    big = probs * n >= 5  # chi-square needs expected counts >= 5: pool the rest
    observed, expected = counts[big], probs[big] * n
    if (~big).any():
        observed, expected = (
            np.append(observed, counts[~big].sum()),
            np.append(expected, probs[~big].sum() * n),
        )
    ranks = np.argsort(np.argsort(-probs))[gen.response_ids[:, 0].numpy()]
    return float(stats.chisquare(observed, expected).pvalue), int(ranks.max())


def test_keyed_draws_follow_the_softmax_with_top_k_off(tiny_models):
    """First tokens of 4000 keyed draws against the model's own next-token probabilities
    (chi-square goodness of fit), at temperature 0.7 with top-k and top-p off: no hidden
    top-k 50 (transformers' default) cuts the tail of the 111-token vocabulary."""
    player = _player(tiny_models["llama"], temperature=0.7, top_p=1.0, top_k=0, max_new_tokens=1)
    texts = ["hello"] * 4000
    gen = player.generate(texts, sample_keys("dist", texts), keyed=True)
    pvalue, top_rank = _first_token_fit(player, gen, 0.7)
    assert pvalue > 1e-3
    assert top_rank >= 50  # the tail is reached


@pytest.mark.parametrize("shipped", [False, True], ids=["plain", "checkpoint-sampling-config"])
def test_training_samples_follow_the_full_softmax(tiny_models, tmp_path, shipped):
    """What rollouts sample (the global RNG, the path training takes) with the default settings
    (top-k 0, top-p 1) is softmax(logits / T), the distribution the ratios and the KL are
    computed on: no top-k 50 filled in by transformers, and no top-k, top-p, min-p or
    repetition penalty filled in from a checkpoint's generation_config.json (Qwen2.5-Instruct
    ships top-k 20 and top-p 0.8)."""
    import shutil

    from sparring.config import DefenderConfig

    path = tiny_models["llama"]
    if shipped:
        path = tmp_path / "shipped"
        shutil.copytree(tiny_models["llama"], path)
        (path / "generation_config.json").write_text(
            '{"do_sample": true, "top_k": 20, "top_p": 0.5, "min_p": 0.9, '
            '"repetition_penalty": 1.5, "temperature": 0.3}'
        )
    cfg = DefenderConfig(model=str(path), generation={"max_new_tokens": 1, "temperature": 0.7})
    player = Player.build("defender", cfg, Accelerator(cpu=True), trainable=False)
    torch.manual_seed(0)
    gen = player.generate(["hello"] * 4000)
    pvalue, top_rank = _first_token_fit(player, gen, 0.7)
    assert pvalue > 1e-3
    assert top_rank >= 50


def test_keyed_gumbel_needs_one_key_per_row():
    with pytest.raises(ValueError, match="2 keys for a batch of 3"):
        KeyedGumbel(["a", "b"])(None, torch.zeros(3, 5))


def test_same_frozen_defender_gets_the_same_figures_whatever_ran_before(
    tmp_path, run_data, tiny_models, benign_file
):
    """Two arms holding the same frozen defender: identical answers and figures to the digit,
    though the second evaluation runs after other sampling and against another target (the
    answers do not depend on the batch either: the player test above)."""
    run = make_run(tmp_path, run_data, tiny_models, benign_file)
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("\n".join(HELDOUT) + "\n")
    common = {"samples": 4, "answers": 2, "prompts": [str(heldout)]}
    a = evaluate_run(run, name="arm-a", **common)
    torch.manual_seed(123)
    torch.rand(1000)
    b = evaluate_run(run, name="arm-b", against=[str(tiny_models["llama"])], **common)
    assert a["defender"] == b["defender"] and a["kl"] == b["kl"]
    rows_a = read_jsonl(run / "eval" / "arm-a.samples.jsonl")
    rows_b = [
        r
        for r in read_jsonl(run / "eval" / "arm-b.samples.jsonl")
        if not r["set"].startswith("target:")
    ]
    assert rows_a == rows_b


def test_an_evaluation_in_a_fresh_process_equals_one_after_other_work(
    tmp_path, run_data, tiny_models, benign_file
):
    """What a resumed or rerun evaluation sees: a new process, nothing sampled before. Its
    answers equal, row for row, those of an evaluation made in a process that had sampled
    other things first."""
    import subprocess
    import sys

    run = make_run(tmp_path, run_data, tiny_models, benign_file)
    torch.manual_seed(7)
    torch.rand(333)
    evaluate_run(run, name="in-process", samples=3)
    code = (
        "import sys; from sparring.cli import main; "
        "sys.exit(main(['eval', sys.argv[1], '--samples', '3', '--name', 'fresh', "
        "'--no-progress']))"
    )
    subprocess.run([sys.executable, "-c", code, str(run)], check=True, capture_output=True)
    same = read_jsonl(run / "eval" / "in-process.samples.jsonl")
    assert same == read_jsonl(run / "eval" / "fresh.samples.jsonl")
