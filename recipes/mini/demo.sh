#!/usr/bin/env bash
# `make demo`: synthetic corpus → recipes/mini (every stage) → PSDS table → `atst-sed detect` on a
# real recording. Runs from the repository root with the venv's bin on PATH (the Makefile does that).
#   DEMO_DIR=demo_out    where the corpus, runs and detections go
#   DEMO_PRETRAIN=0      skip the short SSL pretraining (configs/pretrain/mini.yaml) of the frame
#                        encoder; ATST-Frame then starts from random weights (default 1: pretrain)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
DEMO="${DEMO_DIR:-demo_out}"
CORPUS="$DEMO/corpus"
RUNS="$DEMO/runs"
start=$SECONDS

echo "== 1/4 synthetic corpus ($CORPUS)"
if [ ! -f "$CORPUS/fingerprint.json" ]; then
  atst-sed prepare synth --root "$CORPUS" --size small
else
  echo "   (already there)"
fi

ENCODER=()
if [ "${DEMO_PRETRAIN:-1}" = "1" ]; then
  echo "== 1b short SSL pretraining of ATST-Frame on the unlabelled split (configs/pretrain/mini.yaml)"
  rm -rf "$DEMO/pretrain"
  atst-sed pretrain configs/pretrain/mini.yaml "data.source=$CORPUS/audio/train/unlabel_in_domain_16k" -o "$DEMO/pretrain"
  ENCODER=("models.frame.encoder=$DEMO/pretrain/teacher_encoder.ckpt")
else
  echo "== 1b (DEMO_PRETRAIN=0: ATST-Frame starts from random weights)"
fi

echo "== 2/4 train recipes/mini: untrained reference → finetune_clip → finetune_frame → distill_c2f → test"
rm -rf "$RUNS/mini"
atst-sed train recipes/mini "data.root=$CORPUS" --root-dir "$RUNS" ${ENCODER[@]+"${ENCODER[@]}"}

CKPT="$RUNS/mini/distill_c2f/checkpoints/best.ckpt"
AUDIO="$REPO/../shared/audio/speech_en_10s.wav"
if [ ! -f "$AUDIO" ]; then
  AUDIO="$(ls "$CORPUS"/audio/validation/validation_16k/*.wav | head -n 1)"
  echo "   (../shared/audio is absent: detecting on a corpus clip instead)"
fi
echo "== 3/4 atst-sed detect $AUDIO"
atst-sed detect "$AUDIO" --checkpoint "$CKPT" -o "$DEMO/detections.csv"
cat "$DEMO/detections.csv"

echo "== 4/4 done in $((SECONDS - start)) s: run folder $RUNS/mini, detections $DEMO/detections.csv"
