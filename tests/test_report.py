"""The HTML report and the exported attack dataset, on a run folder with logged steps."""

import json

import numpy as np
import pytest

from sparring.cli import main
from sparring.evaluation.export import attack_records, read_jsonl, write_hf_dataset, write_jsonl
from sparring.evaluation.report import build_report, top_attacks

EVIL = "<script>alert('x')</script> & how to pick a lock"


def _logged_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: tiny\n")
    metrics, samples = [], []
    for step in range(1, 7):
        stage = "defend" if step % 2 else "attack"
        metrics.append(
            {
                "step": step,
                "round": (step + 1) // 2,
                "stage": stage,
                "reward": 0.1 * step,
                "p_safe": 1 - 0.1 * step,
                "asr": 0.05 * step,
                "kl": 0.01 * step,
                "novelty/selfbleu": 0.5 / step,
                "novelty/cosine": 0.3 / step,
            }
        )
        for i in range(3):
            samples.append(
                {
                    "step": step,
                    "round": 1,
                    "stage": stage,
                    "benign": False,
                    "seed": f"seed {i}",
                    "attack_raw": f"raw {step} {i}",
                    "attack": EVIL if (step, i) == (4, 1) else f"attack {step} {i}",
                    "selfbleu": 0.1 * i,
                    "cosine": 0.05 * step,
                    "response": "Sure <b>step</b> one",
                    "p_safe": 0.05 if (step, i) == (4, 1) else 0.9 - 0.1 * i,
                    "reward": 0.5,
                    "helpful": 1.0,
                }
            )
        samples.append(
            {
                "step": step,
                "round": 1,
                "stage": stage,
                "benign": True,
                "prompt": "bake a cake",
                "response": "ok",
                "p_safe": 1.0,
                "helpful": 1.0,
            }
        )
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    (run / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (run / "summary.json").write_text(json.dumps({"mode": "gpo", "steps": 6}))
    return run


def _check_png(path):
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert float(np.std(img[..., :3])) > 0.01  # not a blank single-colour image


def test_report_renders_plots_and_escapes(tmp_path):
    run = _logged_run(tmp_path)
    index = build_report(run)
    html = index.read_text()
    assert index == run / "report" / "index.html"
    for name in ("rewards.png", "p_safe.png", "asr.png", "kl.png", "novelty.png"):
        _check_png(run / "report" / name)
    assert html.count("data:image/png;base64,") == 5
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; how" in html
    assert "Sure &lt;b&gt;step&lt;/b&gt; one" in html


def test_report_plots_the_pool_and_the_probe(tmp_path):
    run = _logged_run(tmp_path)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.update({"pool/value": 0.3, "pool/gap": 0.6 / r["step"], "pool/defender_exploit": 0.5})
        if r["stage"] == "attack":  # the last step of each round
            r.update({"probe/asr": 0.4, "probe/asr/roleplay": r["step"] % 4 / 3})
            r.update({"probe/asr/override": 0.1, "probe/reopened": float(r["step"] > 4)})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    html = build_report(run).read_text()
    for name in ("pool.png", "probe.png", "reopened.png"):
        _check_png(run / "report" / name)
    assert html.count("data:image/png;base64,") == 8
    assert "round probe" in html and "Nash gap" in html


def test_top_attacks_orders_by_success_and_novelty(tmp_path):
    from sparring.runs import read_jsonl as rj

    samples = rj(_logged_run(tmp_path) / "samples.jsonl")
    successful, diverse = top_attacks(samples, k=3)
    assert successful[0]["attack"] == EVIL
    assert len({s["attack"] for s in successful}) == 3
    assert all(s["step"] > 1 for s in diverse)  # the first batch has no history to be novel against
    sim = [s["selfbleu"] + s["cosine"] for s in diverse]
    assert sim == sorted(sim)


def test_report_includes_eval_and_crossplay(tmp_path):
    from sparring.evaluation.crossplay import SCHEMA

    run = _logged_run(tmp_path)
    (run / "eval").mkdir()
    cross = {
        "schema": SCHEMA,
        "attackers": ["step-0", "step-2"],
        "defenders": ["step-0", "step-2", "step-4"],
        "asr": [[0.5, 0.25, 0.0], [1.0, 0.5, 0.25]],
        "asr_eval": None,
        "p_safe": None,
        "judges": {"judge": "keyword", "eval_judge": None},
    }
    (run / "eval" / "crossplay.json").write_text(json.dumps(cross))
    html = build_report(run).read_text()
    _check_png(run / "report" / "crossplay.png")
    assert "Cross-play matrix" in html and html.count("data:image/png;base64,") == 6


def test_export_round_trips(tmp_path):
    run = _logged_run(tmp_path)
    records = attack_records(run)
    assert len(records) == 18  # benign rows are not attacks
    r = next(x for x in records if x["attack"] == EVIL)
    assert r["success"] == pytest.approx(0.95) and r["step"] == 4 and r["stage"] == "attack"
    assert r["judge"] == {"helpful": 1.0}
    out = write_jsonl(records, tmp_path / "attacks.jsonl")
    assert read_jsonl(out) == records
    strong = attack_records(run, min_success=0.5)
    assert [x["attack"] for x in strong] == [EVIL]
    hf = write_hf_dataset(records, tmp_path / "attacks_hf")
    if hf is not None:
        import datasets

        ds = datasets.load_from_disk(str(hf))
        assert ds["attack"] == [x["attack"] for x in records]
        assert ds["p_safe"] == [x["p_safe"] for x in records]


def test_cli_report_and_export(tmp_path, capsys):
    run = _logged_run(tmp_path)
    out = tmp_path / "a.jsonl"
    assert (
        main(["export-attacks", str(run), "--out", str(out), "--min-success", "0.2", "--unique"])
        == 0
    )
    rows = read_jsonl(out)
    assert rows and all(x["success"] >= 0.2 for x in rows)
    assert len({x["attack"] for x in rows}) == len(rows)
    assert main(["report", str(run)]) == 0
    assert (run / "report" / "index.html").is_file()
    assert main(["report", str(tmp_path / "nowhere")]) == 2
