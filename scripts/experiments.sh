#!/usr/bin/env bash
# The knowledge-distillation experiment behind RESULTS.md, on simulated data:
#   1. a train/valid/test split of simulated sequences (disjoint seeds, ≥ 2,000 training scans; the
#      presets cycle, so each split has urban, highway and parking sequences),
#   2. the teacher: a wider network (width 48) that sees causal and reference motion features,
#   3. its logits for the training scans, in the KDMOS on-disk format,
#   4. students (KDMOS, width 32) without and with distillation, in causal and reference mode,
#   5. every network scored on the test sequences; the report rendered by `kdseg results`.
# Every run has the same budget (STEPS steps at batch 8). The script is resumable: finished stages are
# skipped and an interrupted training run continues from its last checkpoint. With DEADLINE (seconds
# since the epoch) it stops in time and exits 75, so that it can be called again; SKIP="name ..."
# leaves runs out for now.
set -euo pipefail
cd "$(dirname "$0")/.."
KDSEG=${KDSEG:-target/release/kdseg}
RUNS=${RUNS:-runs/experiments}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-1200}
SCANS=${SCANS:-225}
TRAIN=${TRAIN:-9}
VALID=${VALID:-3}
TEST=${TEST:-9}
SEED=${SEED:-1000}
VALIDATE_EVERY=${VALIDATE_EVERY:-300}
DEADLINE=${DEADLINE:-0}
DATA=$RUNS/data
mkdir -p "$RUNS"
log() { echo "[experiments $(date +%H:%M:%S)] $*"; }

# runs a command, interrupting it (SIGINT: training checkpoints) before the deadline
run() {
  if [ "$DEADLINE" -gt 0 ]; then
    local left=$((DEADLINE - $(date +%s)))
    if [ "$left" -lt 30 ]; then log "deadline reached"; exit 75; fi
    set +e
    timeout --foreground -s INT -k 60 "$left" "$@"
    local rc=$?
    set -e
    if [ $rc -eq 124 ] || [ $rc -eq 130 ]; then log "stopped at the deadline: $*"; exit 75; fi
    return $rc
  fi
  "$@"
}

if [ ! -f "$DATA/split.yaml" ]; then
  log "simulating $TRAIN + $VALID + $TEST sequences of $SCANS scans"
  rm -rf "$DATA"
  run "$KDSEG" simulate --split --out "$DATA" --train "$TRAIN" --valid "$VALID" --test "$TEST" --scans "$SCANS" --seed "$SEED" --preset urban,highway,parking
fi
cp "$DATA/split.yaml" "$RUNS/split.yaml"

row() {
  local name=$1; shift
  if [ -f "$RUNS/$name/test.json" ]; then return; fi
  case " ${SKIP:-} " in *" $name "*) log "skipping $name (SKIP)"; return ;; esac
  log "training $name"
  run "$KDSEG" train --dataset "$DATA" --out "$RUNS/$name" --max-steps "$STEPS" --validate-every "$VALIDATE_EVERY" --device "$DEVICE" "$@"
  log "testing $name"
  run "$KDSEG" eval --weights "$RUNS/$name/best.safetensors" --dataset "$DATA" --split test --device "$DEVICE" --json "$RUNS/$name/test.json"
}

row teacher --width 48 --motion both --kd-weight 0
if [ ! -f "$RUNS/teacher_logits/.complete" ]; then
  log "teacher logits"
  run "$KDSEG" teacher logits --weights "$RUNS/teacher/best.safetensors" --dataset "$DATA" --split train --out "$RUNS/teacher_logits" --device "$DEVICE"
  touch "$RUNS/teacher_logits/.complete"
fi
row student_causal --motion causal --kd-weight 0
row student_causal_kd --motion causal --kd-weight 0.3 --teacher-logits "$RUNS/teacher_logits"
row student_reference --motion reference --kd-weight 0
row student_reference_kd --motion reference --kd-weight 0.3 --teacher-logits "$RUNS/teacher_logits"
# a fix attempt for the causal student: a sharper teacher distribution (T = 2)
row student_causal_kd_t2 --motion causal --kd-weight 0.3 --temperature 2 --teacher-logits "$RUNS/teacher_logits"
# a second fix attempt: a lighter distillation weight (0.1 instead of 0.3), T = 4. (This row and the
# two below were run in a later session from the teacher's weights rounded to bfloat16 — the GPU
# machine's upload limit — so their teacher logits differ from the first rows' in the last bits.)
row student_causal_kd_w01 --motion causal --kd-weight 0.1 --teacher-logits "$RUNS/teacher_logits"
# the same two causal students with another seed: how far apart runs differing only in their seed land
row student_causal_s2 --motion causal --kd-weight 0 --seed 2
row student_causal_kd_w01_s2 --motion causal --kd-weight 0.1 --seed 2 --teacher-logits "$RUNS/teacher_logits"
"$KDSEG" results --runs "$RUNS" --out "$RUNS/RESULTS.md"
log "done: $RUNS/RESULTS.md"
