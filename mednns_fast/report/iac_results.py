"""The summary tables of the IAC / IAC-LTH study: arms' Dice and search times, paired differences with
bootstrap intervals, and how early the LTH pruner decided."""

from __future__ import annotations

nan = float("nan")


def summary_table(summary: dict) -> str:
    """Markdown tables of `summary["rows"]` (one row per task x backbone, from `iac.study.summarise`)."""
    arms = [a for a in ("baseline", "full", "lth", "extra", "random", "skip")
            if any(f"{a}_dice" in r for r in summary["rows"])]
    head = "| task | backbone | " + " | ".join(f"{a} Dice" for a in arms) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in summary["rows"]:
        lines.append(f"| {r['task']} | {r['backbone']} | "
                     + " | ".join(_pm(r[f"{a}_dice"]) if f"{a}_dice" in r else "-" for a in arms) + " |")
    speed = [r for r in summary["rows"] if "speedup_wall" in r]
    if speed:
        lines += ["", "| task | backbone | full search s | LTH search s | speed-up wall | CPU | end to end | epochs "
                  "full / LTH | per-epoch saving | decided / at earliest / before settled / = full |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in speed:
            lines.append(
                f"| {r['task']} | {r['backbone']} | {r['full_wall_s']:.1f} | {r['lth_wall_s']:.1f} | "
                f"{r['speedup_wall']:.2f}x | {r['speedup_cpu']:.2f}x | {r.get('speedup_end_to_end', nan):.2f}x | "
                f"{r['full_epochs']} / {r['lth_epochs']:.1f} | {r.get('per_epoch_saving', nan):.2f}x | "
                f"{r.get('decided_edges', '-')} / {r.get('decided_at_earliest', '-')} / "
                f"{r.get('decided_before_settled', '-')} / {r.get('agree_with_full', '-')} |")
    comps = list(dict.fromkeys(k for r in summary["rows"] for k in r.get("paired", {})))
    if comps:
        lines += ["", "Paired per-case differences, Dice points, mean [bootstrap 95 % interval] over test cases:", "",
                  "| task | backbone | " + " | ".join(comps) + " |", "|---|---|" + "---|" * len(comps)]
        for r in summary["rows"]:
            cells = []
            for k in comps:
                p = r.get("paired", {}).get(k)
                ok = p and p["mean"] is not None
                cells.append(f"{p['mean']:+.1f} [{p['lo']:+.1f}, {p['hi']:+.1f}]" if ok else "-")
            lines.append(f"| {r['task']} | {r['backbone']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pm(stat: dict) -> str:
    return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"
