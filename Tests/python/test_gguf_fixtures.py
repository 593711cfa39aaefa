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
    # Fixtures/gguf also holds the tokenizer fixture of make_gguf_tokenizer_fixture.py.
    assert set(made) <= {p.name for p in FIXTURES.iterdir()} and "expected.json" in made
    for name in made:
        assert (tmp_path / name).read_bytes() == (FIXTURES / name).read_bytes(), name
    # The fuzz seeds that this script's fixtures seed are copies of them (the model seed comes
    # from llama2c_to_gguf.py, the vocabulary seed from make_gguf_tokenizer_fixture.py).
    seeds = [s for s in SEEDS.iterdir() if s.name in made]
    assert seeds
    for seed in seeds:
        assert seed.read_bytes() == (FIXTURES / seed.name).read_bytes(), seed.name
