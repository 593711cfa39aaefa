#!/bin/sh
# Reruns the streaming-perplexity comparison of README.md ("Past the context window") in one
# command: builds the release quill, makes a venv with numpy, sentencepiece and matplotlib (not
# the test venv's requirements), writes docs/streaming-perplexity.json and .png.
#   VENV=/path/to/venv scripts/streaming_report.sh      (default venv: .venv-plot in the repository)
set -eu
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-plot}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import numpy, sentencepiece, matplotlib" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q numpy sentencepiece matplotlib
fi
swift build -c release --product quill
"$VENV/bin/python" scripts/streaming_perplexity.py --quill .build/release/quill "$@"
"$VENV/bin/python" scripts/plot_streaming.py
