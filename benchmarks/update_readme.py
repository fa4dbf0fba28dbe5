"""Copy the benchmark tables from ``benchmarks/results/*.md`` into the docs (between marker comments).

    python benchmarks/update_readme.py [--machine cpu-2core]

Blocks in ``docs/models.md``: ``<!-- quality:start -->``…``<!-- quality:end -->`` gets
``results/quality.md`` (from its first table heading on); ``<!-- your-data:start -->``…
``<!-- your-data:end -->`` gets ``results/your_data.md`` (``quality.py --your-data``), ``your-data-fp32`` gets
``results/your_data_fp32.md`` (the same on a CPU without native bf16), ``your-data-headroom`` gets
``results/your_data_headroom.md`` (fluorescence with the own-pair columns).
Block in ``docs/performance.md``: ``<!-- performance:start -->``…``<!-- performance:end -->`` gets the body
of ``results/<machine>.md`` for every machine file given (headings demoted one level), followed by
``results/candidates-<machine>.md`` where present (``benchmarks/candidates.py``).
(The name is historical: the tables lived in README.md until the README became a short user's guide.)
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MODELS_DOC = ROOT / "docs" / "models.md"
PERFORMANCE_DOC = ROOT / "docs" / "performance.md"
#: ``docs/models.md`` blocks and the your-data tables they get: the run on a CPU with native bf16 (adapt fine-tunes
#: in bf16) and the run on one without (float32).
YOUR_DATA_BLOCKS = (
    ("your-data", "your_data.md"),
    ("your-data-fp32", "your_data_fp32.md"),
    ("your-data-headroom", "your_data_headroom.md"),
)


def _replace_block(text: str, name: str, body: str, where: Path) -> str:
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{where.relative_to(ROOT)} has no <!-- {name}:start --> / <!-- {name}:end --> block")
    return pattern.sub(lambda m: m.group(1) + body.strip() + "\n" + m.group(2), text)


def quality_block() -> str:
    text = (RESULTS / "quality.md").read_text()
    start = text.find("**x")
    return text[start:] if start >= 0 else text


def performance_block(machines: list[str]) -> str:
    parts = []
    for machine in machines:
        text = (RESULTS / f"{machine}.md").read_text()
        text = re.sub(r"<!-- \w+:(start|end) -->\n?", "", text)
        text = re.sub(r"^# .*\n", f"#### Machine `{machine}`\n", text, count=1)
        text = re.sub(r"^## ", "##### ", text, flags=re.M)
        parts.append(text.strip())
        candidates = RESULTS / f"candidates-{machine}.md"
        if candidates.is_file():  # benchmarks/candidates.py: the CPU runtimes measured before choosing one
            text = re.sub(
                r"^# .*\n",
                "##### CPU inference candidates (benchmarks/candidates.py)\n",
                candidates.read_text(),
                count=1,
            )
            parts.append(text.strip())
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machine", nargs="+", default=["cpu-2core"])
    args = parser.parse_args()
    text = MODELS_DOC.read_text()
    text = _replace_block(text, "quality", quality_block(), MODELS_DOC)
    for block, name in YOUR_DATA_BLOCKS:  # quality.py --your-data: built-in vs adapt vs paired training
        your_data = RESULTS / name
        if your_data.is_file():
            text = _replace_block(text, block, your_data.read_text().split("\n", 2)[-1], MODELS_DOC)
    MODELS_DOC.write_text(text)
    text = PERFORMANCE_DOC.read_text()
    PERFORMANCE_DOC.write_text(_replace_block(text, "performance", performance_block(args.machine), PERFORMANCE_DOC))
    print(f"updated {MODELS_DOC} and {PERFORMANCE_DOC}")


if __name__ == "__main__":
    main()
