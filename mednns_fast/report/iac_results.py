"""JSON results and the summary table of the IAC / IAC-LTH experiment."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json(obj: dict, path: str | os.PathLike) -> None:
    """Write `obj` as indented JSON, atomically (a killed run never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> dict | None:
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def summary_table(summary: dict) -> str:
    """Markdown table of `summary["rows"]` (one row per task x backbone, from the experiment)."""
    head = ("| task | backbone | baseline Dice | IAC (full) Dice | IAC-LTH Dice | full search s | LTH search s "
            "| speed-up wall | speed-up CPU | full epochs | LTH epochs |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in summary["rows"]:
        lines.append(
            f"| {r['task']} | {r['backbone']} | {_pm(r['baseline_dice'])} | {_pm(r['full_dice'])} | "
            f"{_pm(r['lth_dice'])} | {r['full_wall_s']:.1f} | {r['lth_wall_s']:.1f} | {r['speedup_wall']:.2f}x | "
            f"{r['speedup_cpu']:.2f}x | {r['full_epochs']} | {r['lth_epochs']:.1f} |")
    return "\n".join(lines)


def _pm(stat: dict) -> str:
    return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"
