#!/usr/bin/env bash
# GPU checks, one line each (a few minutes on one GPU; uses only what the repo builds itself):
#   bf16 autocast   a smoke run with train.precision=bf16 on the GPU
#   chunked loss    the loss at V = 151,936 (Qwen2.5's width) from hidden states, against the materialised one
#   fsdp2           a 2-step FSDP2 run under torchrun (needs 2 or more GPUs; skipped otherwise)
# Usage: bash benchmarks/gpu_check.sh   (not run in CI: CI has no GPU)
set -u
cd "$(dirname "$0")/.."
export WANDB_MODE=disabled HF_HUB_OFFLINE=1 DISTILL_CACHE="${DISTILL_CACHE:-$(mktemp -d)}"
out=$(mktemp -d)
if python train.py experiment=smoke logger=none train.progress=false train.precision=bf16 train.device=cuda \
    hydra.run.dir="$out/bf16" > "$out/bf16.log" 2>&1; then
  echo "bf16 autocast: ok ($(grep -o 'student/test_loss *[0-9.]*' "$out/bf16.log"))"
else
  echo "bf16 autocast: FAILED (see $out/bf16.log)"
fi
python - <<'PY'
import torch

from distill.losses import Head, Hidden, Objective, objective_loss

torch.manual_seed(0)
n, h, v = 2048, 896, 151_936
dev = torch.device("cuda")
student = Hidden(torch.randn(n, h, device=dev, requires_grad=True), Head(torch.randn(v, h, device=dev) * 0.02))
teacher = Hidden(torch.randn(n, h, device=dev), Head(torch.randn(v, h, device=dev) * 0.02))
targets = torch.randint(0, v, (n,), device=dev)
objective = Objective(0.5, 0.5, "forward_kl", 2.0)
torch.cuda.reset_peak_memory_stats()
base = torch.cuda.memory_allocated()
chunked = objective_loss(student, teacher, targets, objective, chunk_size="auto")["loss"]
chunked.backward()
peak = (torch.cuda.max_memory_allocated() - base) / 2**30
with torch.no_grad():
    full = objective_loss(student.logits(), teacher.logits(), targets, objective)["loss"]
ok = torch.allclose(chunked, full, rtol=1e-4)
print(f"chunked loss V={v}: {'ok' if ok else 'MISMATCH'} ({chunked.item():.5f} vs {full.item():.5f}; extra peak {peak:.2f} GiB)")
PY
gpus=$(python -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -ge 2 ]; then
  if torchrun --standalone --nproc_per_node=2 train.py experiment=smoke logger=none train.progress=false \
      train.strategy=fsdp train.max_steps=2 hydra.run.dir="$out/fsdp" > "$out/fsdp.log" 2>&1; then
    echo "fsdp2: ok (2 steps on 2 GPUs)"
  else
    echo "fsdp2: FAILED (see $out/fsdp.log)"
  fi
else
  echo "fsdp2: skipped ($gpus GPU; it needs 2)"
fi
