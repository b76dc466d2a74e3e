#!/usr/bin/env bash
# First thing to run on a GPU machine, before paying for the paper profile (estimated 10 minutes on one GPU; so far
# only dry-run on a CPU):
#  1. `lib bench` at the paper's batch (ResNet-18, 128): kit vs reference speed, the numerical check, the speed
#     features, projected hours of a full paper run, and notebook 07's per-method cost table for the paper profile,
#     on a full-size synthetic CIFAR-10 look-alike when `data/cifar-10-batches-py` is absent (timing only);
#  2. every method's training and evaluation path on that device at `--tiny` size (paper profile);
#  3. the bf16 check (fp32 vs bf16 TAET over 3 seeds as a paired difference; the demo profile unless CIFAR-10 is there).
# Everything goes to $OUT (default outputs/gpu_check/). Usage: bash benchmarks/gpu_check.sh [cuda|cpu]
# Timeouts per step: T_BENCH, T_TINY (per method), T_BF16 seconds; METHODS limits step 2. SMALL=1 shrinks every
# step (a CPU dry run: SMALL=1 METHODS="ce taet" bash benchmarks/gpu_check.sh cpu, about 4 minutes on 2 cores).
set -u
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
DEV=${1:-cuda}; OUT=${OUT:-outputs/gpu_check}; SMALL=${SMALL:-0}
mkdir -p "$OUT"
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY -c "import torch,sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', sys.version.split()[0])"
  echo "cpus $(nproc)"; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

SYNTH=""
if [ ! -d data/cifar-10-batches-py ]; then
  SYNTH=$(mktemp -d)
  stamp "no CIFAR-10 in data/: a synthetic look-alike at full size in $SYNTH (timings only; its accuracies mean nothing)"
  $PY - "$SYNTH" "$SMALL" <<'PY'
import sys
from lib.core.synthetic import write_synthetic_cifar
# CIFAR-10's own 5,000 train images per class, so an epoch has its real length
write_synthetic_cifar(sys.argv[1], train_per_class=100 if sys.argv[2] == "1" else 5000, test_per_class=100)
PY
  mkdir -p data && ln -sfn "$SYNTH/cifar-10-batches-py" data/cifar-10-batches-py
fi

stamp "1. bench"
if [ "$SMALL" = 1 ]; then BARGS=(--models resnet18:3x32:b8 --rounds 1 --cost-methods ce --no-variants)
else BARGS=(--models resnet18:3x32:b128 --rounds 3); fi
timeout "${T_BENCH:-300}" $PY -m lib bench --device "$DEV" "${BARGS[@]}" --cost-profile paper --out-dir "$OUT" \
  > "$OUT/bench.log" 2>&1; echo "bench exit status $?" >> "$OUT/bench.log"
tail -40 "$OUT/bench.log"
if [ -n "$SYNTH" ]; then rm -f data/cifar-10-batches-py; rm -rf "$SYNTH"; fi

stamp "2. every method, paper profile at --tiny size, on $DEV"
ALL=$($PY -c "from lib.profiles import table_methods; print(' '.join(table_methods(include_reference=True)))")
for m in ${METHODS:-$ALL}; do echo $m; done |
  xargs -P 4 -I{} sh -c "timeout ${T_TINY:-150} $PY -m lib train --method {} --profile paper --tiny --device $DEV \
    --out-dir $OUT/tiny --no-progress --evaluate --attacks clean,fgsm,pgd20,pgd100,cw_l2,cw_linf \
    > $OUT/tiny-{}.log 2>&1; echo {} exit status \$?" | sort | tee "$OUT/tiny_status.txt"

stamp "3. bf16 check on $DEV"
if [ "$SMALL" = 1 ]; then FARGS=(--bf16-check-profile smoke --bf16-check-seeds 0,1); else FARGS=(); fi
timeout "${T_BF16:-300}" $PY -m lib bench --bf16-check --device "$DEV" "${FARGS[@]}" --out-dir "$OUT" \
  > "$OUT/bf16.log" 2>&1; echo "bf16 exit status $? (1: the check did not pass)" >> "$OUT/bf16.log"
tail -10 "$OUT/bf16.log"
stamp "done; logs and JSON in $OUT"
