#!/usr/bin/env bash
# The GPU paths in one run, on a lent GPU (the `device` tool; docs/results.md "On a GPU" has what it printed).
#
#   bash benchmarks/gpu_check.sh DATA        (wheels of the packages the machine lacks in .gpu/*.whl, if any)
#
# Each step is timed and independent (one failing does not stop the rest): the CPU-fallback tests of the GPU path,
# compare of finetune / extract / two-stage under precision auto (bf16 autocast on a GPU that has it, channels-last),
# finetune under fp16 (gradient scaler) and float32, under torch.compile, and under torchrun (DistributedDataParallel,
# NCCL), then benchmarks/speed.py (the reference recipe the tutorial way against transferlab, 25 epochs).
set -u
export PYTHONUNBUFFERED=1 TRANSFERLAB_CACHE=/tmp/transferlab-cache
DATA=${1:?photo folder}
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
if ls .gpu/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
nvidia-smi -L
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, torch.cuda.get_device_name())"
step() {
  local name=$1; shift
  echo "== $name: $*"
  local start=$SECONDS
  "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 12 "$OUT/$name.log"
  echo "== $name: exit $rc after $((SECONDS - start)) s"
}
TL=(python3 -m transferlab)
COMMON=(--backbone efficientnet_lite0 --device cuda --out /tmp/gpu-runs -q)
step tests python3 -m pytest -q -x -p no:cacheprovider tests/test_gpu_path.py
step strategies "${TL[@]}" compare "$DATA" --strategies finetune,extract,two-stage "${COMMON[@]}" --name strategies
step fp16 "${TL[@]}" train "$DATA" --strategy finetune --precision fp16 "${COMMON[@]}" --name fp16
step fp32 "${TL[@]}" train "$DATA" --strategy finetune --precision off "${COMMON[@]}" --name fp32
step compile "${TL[@]}" train "$DATA" --strategy finetune --compile "${COMMON[@]}" --name compiled
step ddp torchrun --standalone --nproc_per_node 1 -m transferlab train "$DATA" --strategy finetune "${COMMON[@]}" --name ddp
for run in /tmp/gpu-runs/*/; do
  python3 - "$run" <<'PY'
import json, sys, pathlib
run = pathlib.Path(sys.argv[1])
for summary in sorted(run.rglob("summary.json")):
    s = json.loads(summary.read_text())
    if "strategy" in s:
        print(f"{summary.parent.relative_to(run.parent)}: {s['strategy']} precision={s.get('precision')} "
              f"best_val_acc={s.get('best_val_acc')} total={s.get('total_seconds'):.1f}s "
              f"per_epoch={s.get('seconds_per_epoch') or 0:.2f}s data={s.get('data_seconds', 0):.1f}s "
              f"compute={s.get('compute_seconds', 0):.1f}s epochs={s.get('epochs_completed')}")
PY
done | tee "$OUT/summaries.txt"
step speed timeout "${SPEED_SECONDS:-300}" python3 benchmarks/speed.py "$DATA" --only a,b --epochs 25
