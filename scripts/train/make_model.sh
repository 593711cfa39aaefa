#!/usr/bin/env bash
# Trains Quill's default model from scratch: tokenizer, model, export, evaluation, checks.
# Usage (from anywhere): scripts/train/make_model.sh    (or `make model`)
# Writes models/tinystories.model, models/tinystories.bin, models/training-report.json,
# models/evaluation.json and Tests/QuillTests/Fixtures/default-model-logits.json.
# Needs ../shared/corpora/tinystories-sample.txt and ../shared/models/{stories260K.bin,tok512.model}.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/../.."
VENV="$HERE/.venv"
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
fi
# torch 2.13.0: pip takes the CPU-only build (2.13.0+cpu) when the machine's wheel folder
# has it, otherwise the PyPI build; both compute the same thing on CPU.
"$PY" -m pip install --quiet --disable-pip-version-check \
    "torch==2.13.0" "numpy==2.4.6" "sentencepiece==0.2.3"

export OMP_NUM_THREADS=2 PYTHONHASHSEED=0
VOCAB=2048
SHAPE=(--dim 128 --hidden 352 --layers 4 --heads 4 --kv-heads 4)
# Stage 1's checkpoint, fixture and report are intermediate: they live in a temporary folder.
STAGE1="$(mktemp -d)"
trap 'rm -rf "$STAGE1"' EXIT
"$PY" "$HERE/train_tokenizer.py" --vocab "$VOCAB"
# Stage 1: the 256-token window, 2,400 steps from random weights (the previous default model,
# sha256 58f89a66dcfcaf9e384b0eac27b0ed6aa4e86e725dd1d2fb2cc9c49f418b4014).
"$PY" "$HERE/train.py" "${SHAPE[@]}" --seq-len 256 \
    --batch 16 --steps 2400 --warmup 100 --lr 2e-3 --min-lr 1e-4 --wd 0.1 --dropout 0.1 \
    --seed 1337 --eval-every 600 --monitor-heldout \
    --out "$STAGE1/stage1.bin" --fixture "$STAGE1/stage1-fixture.json" --report "$STAGE1/stage1-report.json"
# Stage 2: the 640-token window (longer than 99% of the training stories), continuing from stage 1.
"$PY" "$HERE/train.py" "${SHAPE[@]}" --seq-len 640 --init "$STAGE1/stage1.bin" \
    --init-report "$STAGE1/stage1-report.json" \
    --separate-stories --batch 6 --steps 480 --warmup 10 --lr 1e-4 --min-lr 1e-5 --wd 0.1 --dropout 0.1 \
    --seed 1337 --eval-every 160 --monitor-heldout
"$PY" "$HERE/evaluate.py"
"$PY" "$HERE/check_export.py"
