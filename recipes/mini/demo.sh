#!/usr/bin/env bash
# `make demo`: synthetic corpus → short SSL pretraining → recipes/mini (every stage) → `atst-sed detect`
# on a test clip, beside its ground truth → the test PSDS table (as in README.md). Runs from the
# repository root with atst-sed on PATH (the Makefile puts the venv's bin there). Needs nothing
# outside the repository and downloads nothing.
#   bash recipes/mini/demo.sh [STEP ...]   steps: corpus pretrain train detect table (default: all, in order)
#   DEMO_DIR=demo_out    where the corpus, runs and detections go
#   DEMO_PRETRAIN=0      skip the pretraining (configs/pretrain/mini.yaml); ATST-Frame then starts
#                        from random weights (default 1: pretrain)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
DEMO="${DEMO_DIR:-demo_out}"
CORPUS="$DEMO/corpus"
RUNS="$DEMO/runs"
HELPER="$REPO/recipes/mini/demo_steps.py"   # standard library only: any python3 runs it

step_corpus() {
  echo "== 1/5 synthetic corpus ($CORPUS; every sound, speech included, made by atst_sed/data/sources.py)"
  if [ ! -f "$CORPUS/fingerprint.json" ]; then
    atst-sed prepare synth --root "$CORPUS" --size small
  else
    echo "   (already there)"
  fi
}

step_pretrain() {
  if [ "${DEMO_PRETRAIN:-1}" = "1" ]; then
    echo "== 2/5 short SSL pretraining of ATST-Frame on the unlabelled split (configs/pretrain/mini.yaml)"
    rm -rf "$DEMO/pretrain"
    atst-sed pretrain configs/pretrain/mini.yaml "data.source=$CORPUS/audio/train/unlabel_in_domain_16k" -o "$DEMO/pretrain"
  else
    echo "== 2/5 (DEMO_PRETRAIN=0: no pretraining, ATST-Frame starts from random weights)"
  fi
}

step_train() {
  echo "== 3/5 train recipes/mini: untrained reference → finetune_clip → finetune_frame → distill_c2f → test"
  local encoder=()
  if [ "${DEMO_PRETRAIN:-1}" = "1" ]; then
    encoder=("models.frame.encoder=$DEMO/pretrain/teacher_encoder.ckpt")
  fi
  rm -rf "$RUNS/mini"
  atst-sed train recipes/mini "data.root=$CORPUS" --root-dir "$RUNS" ${encoder[@]+"${encoder[@]}"}
}

step_detect() {
  local checkpoint="$RUNS/mini/distill_c2f/checkpoints/best.ckpt" clip
  if [ ! -f "$checkpoint" ]; then
    echo "demo: $checkpoint: no trained model; run the train step first (demo.sh train)" >&2
    return 1
  fi
  clip="$(python3 "$HELPER" pick "$CORPUS")"   # no `ls | head`: nothing in a pipeline can die of SIGPIPE
  echo "== 4/5 atst-sed detect $clip --checkpoint $checkpoint (ATST-C2F)"
  atst-sed detect "$clip" --checkpoint "$checkpoint" -o "$DEMO/detections.csv"
  echo "   $DEMO/detections.csv beside the clip's labels in $CORPUS/metadata/validation/validation.tsv:"
  python3 "$HELPER" compare "$CORPUS" "$clip" "$DEMO/detections.csv"
}

step_table() {
  echo "== 5/5 test PSDS of $RUNS/mini (100-clip test split; PSDS1/PSDS2 from psds_eval, 50 operating points)"
  python3 "$HELPER" table "$RUNS/mini"
}

steps=("$@")
if [ ${#steps[@]} -eq 0 ]; then
  steps=(corpus pretrain train detect table)
fi
for step in "${steps[@]}"; do
  case "$step" in
    corpus | pretrain | train | detect | table) ;;
    *) echo "demo: unknown step '$step' (steps: corpus pretrain train detect table)" >&2; exit 2 ;;
  esac
done
start=$SECONDS
for step in "${steps[@]}"; do
  "step_$step"
done
echo "== done in $((SECONDS - start)) s: run folder $RUNS/mini, detections $DEMO/detections.csv"
