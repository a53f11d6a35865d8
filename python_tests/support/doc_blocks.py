"""Run a documentation page's examples as written: the fenced blocks of one section, in a scratch folder."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def section_blocks(page: str, heading: str) -> tuple[list[str], list[str]]:
    """(python blocks, non-empty lines of the bash blocks) of the section of `docs/<page>` whose `## ` heading
    starts with `heading` (up to the next `## ` heading)."""
    doc = (ROOT / "docs" / page).read_text()
    section = doc.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    python = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    bash = [line for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)
            for line in block.splitlines() if line.strip()]
    return python, bash


def runner(cwd: Path):
    """`run(argv)`: the command in `cwd` with the repository importable; asserts it succeeds, returns it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def run(argv: list[str]) -> subprocess.CompletedProcess:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{argv}\n{done.stderr[-3000:]}"
        return done

    return run
