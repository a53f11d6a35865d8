"""The run report: `RUN/report.html`, one self-contained page built from what a run directory holds (the
sections of steps that did not run say so)."""

from __future__ import annotations

import time
from pathlib import Path

from ..io import RunDir
from .html import Figure, Section, Table, render_html

__all__ = ["report_sections", "write_report"]


def _missing(what: str, command: str) -> str:
    return f"Not run in this directory: `mednns-fast {command}` produces the {what}."


def _zoo_section(run: RunDir) -> Section:
    zoo, sn = run.read_metrics("zoo"), run.read_metrics("supernet")
    if zoo is None and sn is None:
        return Section("Model zoo", _missing("supernets and the zoo", "zoo build"))
    data = (zoo or sn)["datasets"]
    rows = []
    for name, s in data.items():
        lo_hi = (zoo or {}).get("test_acc_range", {}).get(name)
        rows.append([name, (zoo or {}).get("records", {}).get(name, 0), s["train_seconds"],
                     "-" if lo_hi is None else f"{lo_hi[0]:.3f} - {lo_hi[1]:.3f}"])
    text = ("One elastic ResNet supernet per dataset, trained by progressive shrinking; sampled subnets are "
            "recalibrated (BatchNorm) and evaluated into the zoo database. Supernet seconds count training "
            "done by that call (0 when loaded).")
    return Section("Model zoo", text, [Table(["dataset", "subnets", "supernet s", "test accuracy range"], rows,
                                             digits=1)])


def _metaspace_section(run: RunDir) -> Section:
    ms = run.read_metrics("metaspace")
    if ms is None:
        return Section("Meta-space", _missing("meta-space", "metaspace train"))
    held = ms["held_out"] or "none"
    text = (f"Method {ms['method']}; trained on {len(ms['datasets'])} datasets ({', '.join(ms['datasets'])}), "
            f"{ms['records']} zoo records; held out: {held}. The feature extractor was trained in this run on the "
            f"training images of {', '.join(ms['extractor']['tasks'])} only.")
    figs = [Figure(run.figure(n), c) for n, c in (
        ("metaspace_map", "Datasets (stars) and zoo models (dots, coloured by accuracy) in the meta-space."),
        ("fid_heatmap", "FID between the datasets' feature distributions (the target of the FID loss)."))
        if run.figure(n).exists()]
    return Section("Meta-space", text, figures=figs)


def _query_sections(run: RunDir) -> list[Section]:
    out = []
    for path in sorted(run.metrics.glob("query_*.json")):
        task = path.stem[len("query_"):]
        q = run.read_metrics(path.stem)
        rows = [[a["rank"], a["source_dataset"], a["predicted_accuracy"],
                 f"depth {a['config']['depth']}, width {a['config']['width']}"] for a in q["answers"]]
        tables = [Table(["rank", "source dataset", "predicted accuracy", "architecture"], rows,
                        caption=f"Query: {task}")]
        figs = []
        if run.figure(f"metaspace_map_{task}").exists():
            figs.append(Figure(run.figure(f"metaspace_map_{task}"), f"The meta-space with the query {task} (red "
                               "star) among the training datasets and the zoo's models"))
        ft = run.read_metrics(f"finetune_{task}")
        if ft is not None:
            final = [[label, c[0]["test_acc"], c[-1]["test_acc"], len(c) - 1] for label, c in ft["curves"].items()]
            tables.append(Table(["start", "test acc before", "test acc after", "epochs"], final,
                                caption="Fine-tuning the answer vs the pooled-pretrained baseline"))
            if run.figure(f"finetune_{task}").exists():
                figs.append(Figure(run.figure(f"finetune_{task}"), f"Fine-tuning curves on {task}"))
        out.append(Section(f"Query and fine-tuning: {task}", "The top answers of the meta-space: an architecture of "
                           "the zoo and the weights of its source dataset's supernet.", tables, figs))
    return out or [Section("Query and fine-tuning", _missing("query answers", "query"))]


def _lodo_section(run: RunDir) -> Section | None:
    if not run.figure("lodo").exists():
        return None
    return Section("Leave-one-dataset-out evaluation", figures=[Figure(run.figure("lodo"), "LODO evaluation")])


def _iac_section(run: RunDir) -> Section:
    iac = run.read_metrics("iac")
    if iac is None:
        return Section("IAC / IAC-LTH", _missing("cell search", "iac search"))
    modes = [m for m in ("full", "lth") if m in iac]
    rows = [["frozen U-Net (baseline)", iac["baseline_dice"], "-", "-", "-"]]
    for m in modes:
        r = iac[m]
        rows.append([{"full": "IAC, full-length search", "lth": "IAC-LTH"}[m], r["dice"], r["search_seconds"],
                     r["epochs_run"], r["genotype"]])
    text = f"Task {iac['task']}, backbone {iac['backbone']}, seed {iac['seed']}."
    if "speedup_wall" in iac:
        text += f" IAC-LTH search wall-clock speed-up over the full-length search: {iac['speedup_wall']:.1f}x."
    caption = ("Architecture weights per edge (full: solid, LTH: dashed, prune events marked) and the "
               "JS-stability curves against the threshold")
    figs = [Figure(run.figure("iac_search"), caption)] if run.figure("iac_search").exists() else []
    return Section("IAC / IAC-LTH", text, [Table(["model", "mean Dice", "search s", "epochs", "genotype"], rows)],
                   figs)


def _bench_section(run: RunDir) -> Section:
    b = run.read_metrics("bench")
    if b is None:
        return Section("Op benchmarks", _missing("op table", "bench"))
    rows = [[r["op"], r["case"], r["ours_ms"], ", ".join(f"{k} {v:.2f}x" for k, v in r["ratios"].items())]
            for r in b["rows"]]
    return Section("Op benchmarks", f"Ratios are baseline time / our time (> 1: ours faster), one process, "
                   f"{b['machine']}.", [Table(["op", "case", "ours ms", "vs baselines"], rows)])


def report_sections(run: RunDir) -> list[Section]:
    sections = [_zoo_section(run), _metaspace_section(run), *_query_sections(run), _lodo_section(run),
                _iac_section(run), _bench_section(run)]
    return [s for s in sections if s is not None]


def write_report(run: RunDir) -> Path:
    timings = run.read_metrics("demo")
    subtitle = f"Run directory {run.path.resolve()}, written {time.strftime('%Y-%m-%d %H:%M')}"
    if timings:
        subtitle += "; demo steps: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
    return render_html("mednns_fast run report", report_sections(run), run.path / "report.html", subtitle)
