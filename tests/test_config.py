"""Configuration: YAML, dotted overrides, and errors that name the key, its line and a suggestion."""

import pytest
import yaml

from sparring.config import DEFAULT_TEMPLATE_TEXT, apply_overrides, dump_config, load_config
from sparring.errors import ConfigError

BASE = """\
attacker:
  model: /models/a
defender:
  model: /models/d
  lora:
    r: 4
judge:
  type: callable
  target: mymod:judge
game:
  seeds:
    path: seeds.txt
"""


def _write(tmp_path, text):
    p = tmp_path / "run.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_and_overrides(tmp_path):
    cfg = load_config(
        _write(tmp_path, BASE),
        [
            "attacker.lr=3e-6",
            "game.rounds=5",
            "defender.lora.r=16",
            "game.schedule.0.steps=4",
            "novelty.bleu_weight=5",
        ],
    )
    assert cfg.attacker.lr == 3e-6 and isinstance(cfg.attacker.lr, float)
    assert cfg.game.rounds == 5 and cfg.defender.lora.r == 16
    assert cfg.game.schedule[0].stage == "defend" and cfg.game.schedule[0].steps == 4
    assert cfg.novelty.bleu_weight == 5
    # unset template texts take the role's default, for plain text or inside a chat template
    assert cfg.attacker.template.text is None and cfg.defender.template.text is None
    assert "Here is one question" in DEFAULT_TEMPLATE_TEXT["attacker"][0]
    assert DEFAULT_TEMPLATE_TEXT["defender"] == ("Human: {prompt} AI:", "{prompt}")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(_write(tmp_path, BASE))
    again = load_config(data=yaml.safe_load(dump_config(cfg)))
    assert again == cfg


def test_unknown_key_names_path_line_and_nearest(tmp_path):
    text = BASE.replace("  lora:\n    r: 4", "  lora:\n    rank: 4")
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    msg = str(err.value)
    assert "defender.lora.rank (line 6): unknown key; did you mean 'defender.lora.r'?" in msg


def test_mistyped_override_suggests(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"attacker\.learning_rate \(set on the command line\): unknown key.*\blr\b",
    ):
        load_config(_write(tmp_path, BASE), ["attacker.learning_rate=1e-5"])
    with pytest.raises(
        ConfigError, match=r"game\.rnds .*: unknown key; did you mean 'game\.rounds'"
    ):
        load_config(_write(tmp_path, BASE), ["game.rnds=3"])
    with pytest.raises(
        ConfigError, match=r"judge\.targte .*: unknown key; did you mean 'judge\.target'"
    ):
        load_config(_write(tmp_path, BASE), ["judge.targte=x:y"])


def test_unknown_key_lists_the_keys_of_the_chosen_judge_type(tmp_path):
    text = BASE.replace("type: callable\n  target: mymod:judge", "type: embedding\n  path: j")
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text), ["judge.kwargs.path=x"])
    msg = str(err.value)
    # 'kwargs' belongs to the callable judge, not to this one: no suggestion of itself
    assert "judge.kwargs (set on the command line): unknown key (valid here: " in msg
    valid = msg.split("valid here: ")[1].rstrip(")").split(", ")
    assert "path" in valid and "device" in valid
    assert "kwargs" not in valid and "url" not in valid


def test_wrong_types_and_missing(tmp_path):
    with pytest.raises(ConfigError, match=r"game\.rounds.*greater than or equal to 1"):
        load_config(_write(tmp_path, BASE), ["game.rounds=0"])
    with pytest.raises(ConfigError, match=r"  attacker: required field is missing"):
        load_config(
            data={
                "defender": {"model": "x"},
                "judge": {"type": "callable", "target": "a:b"},
                "game": {"seeds": {"path": "s"}},
            }
        )
    with pytest.raises(ConfigError, match="needs samples_per_prompt >= 2"):
        load_config(_write(tmp_path, BASE), ["defender.rl.algorithm=rloo"])
    with pytest.raises(ConfigError, match="exactly one of 'path' or 'source'"):
        load_config(_write(tmp_path, BASE), ["game.seeds.source=harmbench"])


def test_bad_files_and_override_syntax(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "a: [1, 2"))
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(_write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="must look like 'section.key=value'"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(ConfigError, match="needs an index below 2"):
        load_config(_write(tmp_path, BASE), ["game.schedule.5.steps=1"])


def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path):
    text = BASE.replace("  lora:\n", "  lr: 1.0e-5\n  lr: 2.0e-5\n  lora:\n")
    with pytest.raises(ConfigError, match=r"'lr' appears twice in one mapping \(lines 5 and 6\)"):
        load_config(_write(tmp_path, text))
    # the same key in different mappings is fine
    load_config(_write(tmp_path, BASE.replace("  lora:\n", "  lr: 1.0e-5\n  lora:\n")))


def test_a_judge_can_be_named_by_its_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths in a config are read from the working directory
    (tmp_path / "judges").mkdir()
    (tmp_path / "judges" / "rule.yaml").write_text("type: refusal\nname: rule\n")
    # a run config's path: its judge is taken
    (tmp_path / "other.yaml").write_text("judge: {type: refusal, p_safe: refused}\n")
    text = BASE + "eval_judge: judges/rule.yaml\nevaluation:\n  quality: {judge: other.yaml}\n"
    cfg = load_config(_write(tmp_path, text))
    assert cfg.eval_judge.type == "refusal" and cfg.eval_judge.name == "rule"
    assert cfg.evaluation.quality.judge.p_safe == "refused"
    # the run folder's config holds the judge written out, not the path
    saved = yaml.safe_load(dump_config(cfg))
    assert saved["eval_judge"]["type"] == "refusal" and saved["eval_judge"]["name"] == "rule"
    assert load_config(data=saved) == cfg
    # a file that is missing or holds no judge: the key, its line and the file are named
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, BASE + "eval_judge: judges/gone.yaml\n"))
    assert "eval_judge" in str(err.value) and "line 13" in str(err.value)
    assert "judges/gone.yaml: cannot read it" in str(err.value)
    (tmp_path / "judges" / "list.yaml").write_text("- type: refusal\n")
    with pytest.raises(ConfigError, match=r"judges/list.yaml: expected a judge spec"):
        load_config(_write(tmp_path, BASE + "eval_judge: judges/list.yaml\n"))
