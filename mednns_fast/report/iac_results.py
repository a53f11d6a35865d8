"""The summary table of the IAC / IAC-LTH experiment."""

from __future__ import annotations


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
