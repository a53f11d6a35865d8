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
    parts = [r for r in summary["rows"] if "speed_parts" in r]
    if parts:
        lines += ["", "Speed-up in parts: LTH epochs to stop per seed (full: every seed's); edges decided / all, "
                  "of them at the earliest epoch allowed; seconds per step, full vs LTH epochs after a prune; "
                  "end to end (calibration + search + derived training) and with the shared backbone; wall "
                  "speed-up by which search ran first; the LTH pruner replayed over the full search's trajectory: "
                  "its stop epoch per seed (- : an edge never decided), edges decided / of them before the full "
                  "search's leader settled.", "",
                  "| task | backbone | LTH epochs (full) | decided / edges | at earliest | s/step full / pruned | "
                  "per-step saving | end to end s full / LTH | end to end | with backbone | full first / LTH first "
                  "| replayed on full: stop | decided / early |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in parts:
            p = r["speed_parts"]
            ep = p["epochs_to_stop"]
            order = p["speedup_wall_by_order"]
            lines.append(
                f"| {r['task']} | {r['backbone']} | {', '.join(map(str, ep['per_seed']))} ({ep['full']}) | "
                f"{p['edges'] - p['undecided_edges']} / {p['edges']} | {r.get('decided_at_earliest', '-')} | "
                f"{_ms(p['step_s']['full'])} / {_ms(p['step_s']['lth_pruned'])} | {_x(p['per_step_saving'])} | "
                f"{p['end_to_end_s']['full']:.1f} / {p['end_to_end_s']['lth']:.1f} | {_x(p['speedup_end_to_end'])} | "
                f"{_x(p['speedup_with_backbone'])} | {_x(order['full_first'])} / {_x(order['lth_first'])} | "
                f"{', '.join('-' if t is None else str(t) for t in r.get('replay_stop_epochs', []))} | "
                f"{r.get('replay_decided_edges', '-')} / {r.get('replay_decided_before_settled', '-')} |")
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


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:.0f} ms"


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _pm(stat: dict) -> str:
    return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"
