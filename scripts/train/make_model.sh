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
"$PY" "$HERE/train_tokenizer.py" --vocab "$VOCAB"
"$PY" "$HERE/train.py" \
    --dim 128 --hidden 352 --layers 4 --heads 4 --kv-heads 4 --seq-len 256 \
    --batch 16 --steps 2400 --warmup 100 --lr 2e-3 --min-lr 1e-4 --wd 0.1 --dropout 0.1 \
    --seed 1337 --eval-every 600 --monitor-heldout
"$PY" "$HERE/evaluate.py"
"$PY" "$HERE/check_export.py"
