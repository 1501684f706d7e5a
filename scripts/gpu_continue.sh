#!/bin/bash
# Continue the shipped demo UNet on a lent GPU inside a fixed wall-clock budget, with the public command line:
#   1. `xdigiskull phantom` exports of HEADS (one process per head, all at once), VIEWS poses each;
#   2. one `xdigiskull build` of them all (780 px, every DICOM frame, split seed 0);
#   3. a 100-step timing run of `medshift train` (it also writes the latent cache), whose steps/s sets
#   4. the real run's --max-steps, so that its cosine schedule ends inside the budget: the shipped UNet
#      (--init-unet) continued at BATCH and LR with 75 % of the training times on [0.25, 1], bf16, EMA 0.999.
# The shipped VAE is reused unchanged (the UNet's latents stay the same). The pipeline lands in $WORK/model;
# its UNet, training log and config are copied to $OUT (safetensors split into 9 MB parts when SPLIT=1,
# for transfers that cap the file size; join them with `cat unet.part* > diffusion_pytorch_model.safetensors`).
#
# Usage, from the repository root, with the project installed (or WHEELS=dir of wheels to install first):
#   OUT=/path/to/results bash scripts/gpu_continue.sh 540        # the whole script in about 540 s
# Stages 6 and 7 of the shipped weights were made with it: their heads, steps, hardware and time are in
# checkpoints/medshift-xdigiskull-demo/lineage.json (the one record of the weights' lineage).
set -u
T0=$(date +%s)
BUDGET=${1:-540}
REPO=$(pwd)
OUT=${OUT:-$REPO/gpu_out}
W=${WORK:-/tmp/medshift-gpu-work}
HEADS=${HEADS:-"1 3 4 5 6 8 9 10 12 13 14 15 16 17 18 19"}   # never a held-out head: checked below
VIEWS=${VIEWS:-12}
BATCH=${BATCH:-64}
LR=${LR:-2e-4}
INIT=${INIT:-$REPO/checkpoints/medshift-xdigiskull-demo}
GUIDANCE=${GUIDANCE:-2}   # the saved pipeline's default generation guidance (the shipped weights' since step 7)
mkdir -p "$OUT"
LOG="$OUT/log.txt"
elapsed() { echo $(( $(date +%s) - T0 )); }
log() { echo "[$(elapsed)s] $*" | tee -a "$LOG"; }
fail() { log "$1 failed"; tail -30 "$2" | tee -a "$LOG"; exit 1; }

if [ -n "${WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/medshift-site "$WHEELS"/*.whl >>"$LOG" 2>&1 || fail "pip install" "$LOG"
  export PYTHONPATH=/tmp/medshift-site
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
rm -rf "$W"; mkdir -p "$W/raw"; cd "$W"   # not the repo root: the installed package, not the source tree, is imported
python3 -c "import torch, medshift.cli, xdigiskull.cli; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')" >>"$LOG" 2>&1 || fail "imports" "$LOG"
log "imports ok"
# the validation and evaluation heads the shipped lineage holds out (checkpoints/.../lineage.json) stay unseen
python3 -c "import sys; from medshift.lineage import held_out_seeds, load_lineage; \
bad = sorted(set(map(int, sys.argv[2:])) & set(held_out_seeds(load_lineage(sys.argv[1])))); \
sys.exit(f'HEADS {bad} are held out in {sys.argv[1]}/lineage.json' if bad else 0)" \
"$REPO/checkpoints/medshift-xdigiskull-demo" $HEADS >>"$LOG" 2>&1 || fail "held-out heads check" "$LOG"

for head in $HEADS; do
  # phantom v1, as the shipped weights were trained on (v2 comes with the retraining)
  OMP_NUM_THREADS=1 python3 -m xdigiskull.cli phantom "$W/raw/head-$head" --views "$VIEWS" --seed "$head" --workers 1 \
    --phantom-version 1 >"$W/phantom-$head.log" 2>&1 &
done
wait
for head in $HEADS; do [ -f "$W/raw/head-$head/manifest.csv" ] || fail "phantom head $head" "$W/phantom-$head.log"; done
log "phantom: heads $HEADS, $VIEWS views each"

# one manifest for all heads, paths prefixed with their head-<seed>/ folder: scripts/train_demo.py's own merge
PYTHONPATH="$REPO/scripts${PYTHONPATH:+:$PYTHONPATH}" python3 -c "import sys; from pathlib import Path; \
from train_demo import merge_manifests; merge_manifests(Path(sys.argv[1]), [int(seed) for seed in sys.argv[2:]])" \
"$W/raw" $HEADS || fail "manifest merge" "$LOG"
python3 -m xdigiskull.cli build "$W/raw" --out "$W/x-digiskull" --labels "$W/raw/manifest.csv" --frames all --size 780 --seed 0 \
  --num-proc "$(nproc)" >"$W/build.log" 2>&1 || fail "build" "$W/build.log"
log "build done"

COMMON=(--dataset "$W/x-digiskull" --vae "$INIT/vae" --init-unet "$INIT" --resolution 512 --batch-size "$BATCH"
  --learning-rate "$LR" --weight-decay 0.01 --ema-decay 0.999 --noise-offset 1.5 --coarse-noise 0,0,0.25,0.5,0.5
  --focus-time-min 0.25 --focus-time-fraction 0.75 --label-dropout 0.15 --default-tau 0.45 --default-guidance-scale "$GUIDANCE"
  --cache-dir "$W/cache" --sample-every 0 --log-every 10 --checkpoint-every 1000000 --seed 0)
python3 -m medshift.cli train "${COMMON[@]}" --output-dir "$W/timing" --max-steps 100 --warmup-steps 10 \
  --lr-schedule constant_with_warmup >"$W/timing.log" 2>&1 || fail "timing run" "$W/timing.log"
RATE=$(python3 -c "
import csv
rows = list(csv.DictReader(open('$W/timing/train_log.csv')))
first, last = rows[4], rows[-1]   # past the first steps' warm-up
print((int(last['step']) - int(first['step'])) / (float(last['seconds']) - float(first['seconds'])))")
LEFT=$(( BUDGET - $(elapsed) - 45 ))   # 45 s: the run's start-up and final save
# 0.85: the 2026-12-04 run trained at 7.4 steps/s against the timing run's 8.8, so --max-minutes cut its cosine at 87 %
STEPS=$(python3 -c "print(int($RATE * ($LEFT - 25) * 0.85))")
MINUTES=$(python3 -c "print(round(($LEFT - 20) / 60, 2))")
log "timing: $RATE steps/s at batch $BATCH; main run: $STEPS steps, --max-minutes $MINUTES"

python3 -m medshift.cli train "${COMMON[@]}" --output-dir "$W/model" --max-steps "$STEPS" --max-minutes "$MINUTES" \
  --warmup-steps 200 --lr-schedule cosine >"$W/train.log" 2>&1 || fail "main run" "$W/train.log"
mkdir -p "$OUT/unet"
cp "$W/model/unet/config.json" "$OUT/unet/"
cp "$W/model/train_log.csv" "$W/model/training_config.json" "$OUT/"
if [ "${SPLIT:-0}" = 1 ]; then
  split -b 9000000 -d "$W/model/unet/diffusion_pytorch_model.safetensors" "$OUT/unet.part"
else
  cp "$W/model/unet/diffusion_pytorch_model.safetensors" "$OUT/unet/"
fi
log "done: $(tail -1 "$W/model/train_log.csv") (step, loss, lr, seconds)"
