"""The GPU check script's CPU-only dry run: every CUDA part is skipped with a reason, exit status 0."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402


def test_dry_run_skips_cuda_parts_and_exits_0(tmp_path, capsys):
    out = tmp_path / "gpu_check.md"
    status = gpu_check.main(["--dry-run", "--size", "32", "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "CPU-only dry run" in printed
    assert "FAIL" not in printed
    text = out.read_text()
    assert "| equal to CPU | SKIP | needs CUDA" in text  # skipped with its reason
    assert "| network | fp32 NCHW (32² -> x2) |" in text  # the CPU parts ran
    assert "steps/s" in text
