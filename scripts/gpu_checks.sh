#!/usr/bin/env bash
# GPU checks of kdseg on a CUDA machine (no ROS, no cargo needed): parity of the CUDA paths with the
# reference fixtures, and the GPU benchmarks (records written to benchmarks/<gpu>/).
#   KDSEG=path/to/kdseg FIXTURES=path/to/fixtures/public scripts/gpu_checks.sh [WEIGHTS]
# WEIGHTS (trained weights) enables the reduced-precision agreement check.
set -euo pipefail
cd "$(dirname "$0")/.."
KDSEG=${KDSEG:-target/release/kdseg}
FIX=${FIXTURES:-../shared/fixtures/public}
PY=${PYTHON:-python3}
WORK=${WORK:-$(mktemp -d)}
BENCH=${BENCH_OUT:-benchmarks/h100}
WEIGHTS=${1:-}
log() { echo "[gpu-checks $(date +%H:%M:%S)] $*"; }

log "CUDA logits against the reference (fp32 and bf16)"
for precision in fp32 bf16; do
  "$KDSEG" mos forward --device cuda --precision $precision --weights "$FIX/kdmos_net/kdmos_state_dict.safetensors" \
    --points "$FIX/kdmos_net/points.bin" --residuals "$FIX/kdmos_net/residuals.npy" --out "$WORK/logits_$precision.npy"
done
"$PY" - "$FIX" "$WORK" <<'PY'
import sys, numpy as np
fix, work = sys.argv[1], sys.argv[2]
ref = np.load(f"{fix}/kdmos_net/point_logits.npy")
top = np.sort(ref, 1)
decisive = (top[:, -1] - top[:, -2]) > 1e-3
for p in ("fp32", "bf16"):
    ours = np.load(f"{work}/logits_{p}.npy")
    diff = np.abs(ours - ref)
    flips = np.sum((ours.argmax(1) != ref.argmax(1)) & decisive)
    print(f"{p}: max abs logit difference {diff.max():.3e}, mean {diff.mean():.3e}, decisive label flips {flips} of {len(ref)} ({100*flips/len(ref):.4f} %)")
PY

log "CUDA motion features against MotionBEV's generator"
mkdir -p "$WORK/seq" && tar -xzf "$FIX/motionbev_residual/sequence.tar.gz" -C "$WORK/seq"
"$KDSEG" mos residuals --device cuda --dataset "$WORK/seq" --sequence 00 --mode reference --out "$WORK/residuals"
"$PY" - "$WORK" <<'PY'
import sys, numpy as np
w = sys.argv[1]
total = close = 0
for i in range(20):
    a = np.load(f"{w}/residuals/{i:06d}.npy"); b = np.load(f"{w}/seq/residual_images/00/residual_images/{i:06d}.npy")
    total += a.size; close += np.sum(np.abs(a - b) <= 1e-4)
print(f"reference motion features on CUDA: {close}/{total} = {close/total:.6f} within 1e-4")
PY

log "benchmarks → $BENCH"
mkdir -p "$BENCH"
W=${WEIGHTS:-$FIX/kdmos_net/kdmos_state_dict.safetensors}
"$KDSEG" bench run mos --device cuda --precision fp32 --weights "$W" --out "$BENCH" --name mos-fp32
"$KDSEG" bench run mos --device cuda --precision bf16 --weights "$W" --out "$BENCH" --name mos-bf16
"$KDSEG" bench run mos --device cuda --precision fp16 --weights "$W" --out "$BENCH" --name mos-fp16
"$KDSEG" bench run train --device cuda --out "$BENCH" --name train-bf16
"$KDSEG" bench run train --device cuda --fp32 --out "$BENCH" --name train-fp32
if [ -n "$WEIGHTS" ]; then
  "$KDSEG" bench run precision --device cuda --weights "$WEIGHTS" --out "$BENCH" --name precision
fi
log "done"
