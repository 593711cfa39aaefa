"""The committed GGUF fixtures (Tests/QuillTests/Fixtures/gguf) are what
scripts/make_gguf_fixtures.py writes: regenerated in a temporary folder, byte for byte."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("gguf")

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "Tests" / "QuillTests" / "Fixtures" / "gguf"
SEEDS = REPO / "Tests" / "Fuzz" / "corpus" / "gguf"


def test_fixtures_are_reproducible(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "make_gguf_fixtures.py"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted(p.name for p in FIXTURES.iterdir())
    for name in made:
        assert (tmp_path / name).read_bytes() == (FIXTURES / name).read_bytes(), name
    # The fuzz seeds are copies of the fixtures, but for the model seed, which
    # scripts/llama2c_to_gguf.py makes (see scripts/make_fuzz_seeds.py).
    for seed in (s for s in SEEDS.iterdir() if s.name != "tiny-llama.gguf"):
        assert seed.read_bytes() == (FIXTURES / seed.name).read_bytes(), seed.name
