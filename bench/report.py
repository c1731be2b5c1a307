"""The JSON report and the terminal tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.compare import metric_ratios, ratio_label, step_ratios
from bench.floor import FLOOR_FOR_CRI_STEP, FLOOR_STEPS
from bench.stats import Summary, median, summarize
from bench.workloads import LIFECYCLE_STEPS, LIST_STEPS, SANDBOX_STEPS, WorkloadResult

KNOWN_STEPS = (*LIFECYCLE_STEPS, *SANDBOX_STEPS, *LIST_STEPS)

SCHEMA = 1
MAX_ERRORS_IN_REPORT = 20

# metrics worth a line in the terminal report: name -> (label, unit, digits)
METRICS_SHOWN: dict[str, tuple[str, str, int]] = {
    "pods_per_s": ("throughput", "pods/s", 2),
    "per_pod_overhead_kib": ("per-pod memory overhead (PSS)", "MiB", 2),
    "per_pod_processes_kib": ("  of which added processes", "MiB", 2),
    "per_pod_daemon_growth_kib": ("  of which daemon growth", "MiB", 2),
    "daemon_pss_kib": ("daemon PSS with the pods", "MiB", 1),
    "daemon_rss_kib": ("daemon RSS with the pods", "MiB", 1),
    "daemon_pss_before_kib": ("daemon PSS before", "MiB", 1),
    "pull_mb_per_s": ("pull+unpack speed", "MB/s", 1),
    "image_size_bytes": ("image size (ImageStatus)", "MB", 2),
    "images_listed": ("images listed", "", 0),
    "fill_images_pulled": ("fill images pulled first", "", 0),
    "fill_setup_s": ("fill images: pull time", "s", 1),
    "holder_pss_kib": ("pause holder PSS", "MiB", 2),
    "pf_mb_per_s": ("port-forward, 1 connection", "MB/s", 1),
    "pf_parallel_mb_per_s": ("port-forward, N at once (sum)", "MB/s", 1),
}


@dataclass
class RunData:
    started: str
    command: list[str]
    config: dict[str, Any]
    machine: dict[str, Any]
    tools: dict[str, str]
    runtimes: list[dict[str, Any]]  # label, endpoint, version, daemon_pid
    workloads: list[str]
    results: dict[str, dict[str, WorkloadResult]] = field(default_factory=dict)
    floor: WorkloadResult | None = None
    floor_config: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def labels(self) -> list[str]:
        return [r["label"] for r in self.runtimes]


def summaries(res: WorkloadResult) -> dict[str, Summary]:
    out: dict[str, Summary] = {}
    for step in ordered_steps([res], (*KNOWN_STEPS, *FLOOR_STEPS)):
        s = summarize(res.samples.get(step, []))
        if s is not None:
            out[step] = s
    return out


def ordered_steps(
    results: Sequence[WorkloadResult], known: Sequence[str] = KNOWN_STEPS
) -> list[str]:
    known = list(known)
    seen: list[str] = []
    for r in results:
        for k in [*r.samples, *r.unsupported, *r.skipped]:
            if k not in seen and k != "*":
                seen.append(k)
    return sorted(seen, key=lambda s: (known.index(s) if s in known else len(known), ""))


def metric_medians(res: WorkloadResult) -> dict[str, float]:
    return {k: median(v) for k, v in res.metrics.items() if v}


def workload_json(res: WorkloadResult) -> dict[str, Any]:
    return {
        "rounds": res.rounds,
        "steps": {k: s.to_dict() for k, s in summaries(res).items()},
        "unsupported": dict(res.unsupported),
        "skipped": dict(res.skipped),
        "error_count": len(res.errors),
        "errors": res.errors[:MAX_ERRORS_IN_REPORT],
        "metrics": {k: {"median": round(median(v), 3), "values": [round(x, 3) for x in v]}
                    for k, v in res.metrics.items() if v},
        "details": res.details,
    }


def floor_overhead(res: WorkloadResult, floor: WorkloadResult) -> dict[str, dict[str, Any]]:
    """CRI step p50 minus the matching floor step's p50 (ms)."""
    mine = summaries(res)
    fl = summaries(floor)
    out: dict[str, dict[str, Any]] = {}
    for step, fstep in FLOOR_FOR_CRI_STEP.items():
        if step in mine and fstep in fl:
            out[step] = {
                "floor_step": fstep,
                "floor_p50_ms": round(fl[fstep].p50_ms, 3),
                "p50_over_floor_ms": round(mine[step].p50_ms - fl[fstep].p50_ms, 3),
                "p50_times_floor": round(mine[step].p50_ms / fl[fstep].p50_ms, 2)
                if fl[fstep].p50_ms > 0 else None,
            }
    return out


def build_json(run: RunData) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "tool": "tether-bench",
        "schema": SCHEMA,
        "started": run.started,
        "duration_s": round(run.duration_s, 1),
        "command": run.command,
        "machine": run.machine,
        "tools": run.tools,
        "config": run.config,
        "runtimes": run.runtimes,
        "units": {"latency": "ms", "memory": "KiB", "throughput": "pods/s or MB/s"},
        "results": {
            label: {wl: workload_json(r) for wl, r in per.items()}
            for label, per in run.results.items()
        },
    }
    if run.floor is not None:
        doc["floor"] = workload_json(run.floor)
        doc["floor"]["config"] = run.floor_config
        doc["overhead_above_floor"] = {
            label: {wl: floor_overhead(r, run.floor) for wl, r in per.items()
                    if floor_overhead(r, run.floor)}
            for label, per in run.results.items()
        }
    labels = run.labels
    if len(labels) == 2:
        a, b = labels
        comp: dict[str, Any] = {"ratio": ratio_label(a, b), "a": a, "b": b, "workloads": {}}
        for wl in run.workloads:
            ra, rb = run.results.get(a, {}).get(wl), run.results.get(b, {}).get(wl)
            if ra is None or rb is None:
                continue
            comp["workloads"][wl] = {
                "steps": {k: {s: (round(v, 3) if v is not None else None)
                              for s, v in d.items()}
                          for k, d in step_ratios(summaries(ra), summaries(rb)).items()},
                "metrics": {k: (round(v, 3) if v is not None else None)
                            for k, v in metric_ratios(metric_medians(ra),
                                                      metric_medians(rb)).items()},
            }
        doc["compare"] = comp
    return doc


def write_json(run: RunData, path: str) -> None:
    Path(path).write_text(json.dumps(build_json(run), indent=2, sort_keys=False) + "\n")


# ---------------------------------------------------------------- text


def _fmt(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}"


def table(rows: list[list[str]], header_rows: int = 1) -> str:
    widths = [max(len(r[i]) if i < len(r) else 0 for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        cells = [(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])) for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
        if n == header_rows - 1:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _status(res: WorkloadResult | None, step: str) -> str:
    if res is None:
        return "n/a"
    if step in res.unsupported:
        return "unsupported"
    if step in res.skipped:
        return "skipped"
    return "-"


def render_workload(run: RunData, wl: str, description: str) -> str:
    labels = run.labels
    results = [run.results.get(lb, {}).get(wl) for lb in labels]
    present = [r for r in results if r is not None]
    if not present:
        return ""
    sums = [summaries(r) if r is not None else {} for r in results]
    fl = summaries(run.floor) if run.floor is not None else {}
    show_floor = bool(fl) and any(s in FLOOR_FOR_CRI_STEP for r in present for s in r.samples)
    compare = len(labels) == 2
    head1 = ["step (ms)"]
    head2 = [""]
    for lb in labels:
        head1 += [lb, "", ""]
        head2 += ["p50", "p95", "p99"]
        if show_floor:
            head1 += [""]
            head2 += ["-floor"]
    if compare:
        head1 += [ratio_label(labels[0], labels[1]), ""]
        head2 += ["p50", "p95"]
    if show_floor:
        head1 += ["floor"]
        head2 += ["p50"]
    rows = [head1, head2]
    for step in ordered_steps(present):
        row = [step]
        for r, s in zip(results, sums, strict=True):
            if step in s:
                row += [_fmt(s[step].p50_ms), _fmt(s[step].p95_ms), _fmt(s[step].p99_ms)]
            else:
                row += [_status(r, step), "", ""]
            if show_floor:
                fstep = FLOOR_FOR_CRI_STEP.get(step)
                if step in s and fstep in fl:
                    row += [f"{s[step].p50_ms - fl[fstep].p50_ms:+.1f}"]
                else:
                    row += [""]
        if compare:
            a, b = sums
            if step in a and step in b:
                ra = step_ratios({step: a[step]}, {step: b[step]})[step]
                row += [_fmt(ra["p50"], 2), _fmt(ra["p95"], 2)]
            else:
                row += ["-", "-"]
        if show_floor:
            fstep = FLOOR_FOR_CRI_STEP.get(step)
            row += [_fmt(fl[fstep].p50_ms) if fstep in fl else ""]
        rows.append(row)
    rounds = ", ".join(f"{lb}: {r.rounds}" for lb, r in zip(labels, results, strict=True)
                       if r is not None)
    out = [f"== {wl}: {description} (rounds {rounds})", table(rows, header_rows=2)]
    out += _metric_lines(labels, results)
    for lb, r in zip(labels, results, strict=True):
        if r is None:
            continue
        if "*" in r.skipped:
            out.append(f"  {lb}: skipped: {r.skipped['*']}")
        if r.errors:
            out.append(f"  {lb}: {len(r.errors)} error(s); first: {r.errors[0]}")
        for step, why in r.unsupported.items():
            out.append(f"  {lb}: {step} unsupported ({why[:100]})")
    return "\n".join(out)


def _metric_lines(labels: list[str], results: list[WorkloadResult | None]) -> list[str]:
    meds = [metric_medians(r) if r is not None else {} for r in results]
    names = [n for n in METRICS_SHOWN if any(n in m for m in meds)]
    if not names:
        return []
    rows = [["metric (median of rounds)", *labels]]
    if len(labels) == 2:
        rows[0].append(ratio_label(labels[0], labels[1]))
    for n in names:
        label, unit, digits = METRICS_SHOWN[n]
        vals = [m.get(n) for m in meds]
        conv = [_convert(v, unit) for v in vals]
        row = [f"{label}" + (f" ({unit})" if unit else ""),
               *[_fmt(v, digits) for v in conv]]
        if len(labels) == 2:
            a, b = vals
            row.append(_fmt(b / a, 2) if a and b is not None else "-")
        rows.append(row)
    return ["", table(rows)]


def _convert(v: float | None, unit: str) -> float | None:
    if v is None:
        return None
    if unit == "MiB":
        return v / 1024.0
    if unit == "MB" and v > 1e5:
        return v / 1e6
    return v


def render_floor(run: RunData) -> str:
    if run.floor is None:
        return ""
    r = run.floor
    s = summaries(r)
    rows = [["floor step (ms)", "p50", "p95", "p99", "max"]]
    for step in ordered_steps([r], FLOOR_STEPS):
        if step in s:
            rows.append([step, _fmt(s[step].p50_ms, 2), _fmt(s[step].p95_ms, 2),
                         _fmt(s[step].p99_ms, 2), _fmt(s[step].max_ms, 2)])
        else:
            rows.append([step, _status(r, step), "", "", ""])
    out = [f"== floor: the same steps without a CRI daemon (rounds {r.rounds})",
           table(rows) if len(rows) > 1 else "  (nothing measured)"]
    out += _metric_lines(["floor"], [r])
    if "*" in r.skipped:
        out.append(f"  skipped: {r.skipped['*']}")
    if r.errors:
        out.append(f"  {len(r.errors)} error(s); first: {r.errors[0]}")
    return "\n".join(out)


def render(run: RunData, descriptions: dict[str, str]) -> str:
    parts = [
        f"tether-bench {run.started}  ({run.duration_s:.0f}s)",
        f"machine: {run.machine.get('cpu_model')}, {run.machine.get('cpus')} cpus, "
        f"{run.machine.get('memory_mib')} MiB, kernel {run.machine.get('kernel')}",
    ]
    for rt in run.runtimes:
        v = rt.get("version") or {}
        parts.append(f"runtime {rt['label']}: {rt['endpoint']}  "
                     f"{v.get('runtime_name', '?')} {v.get('runtime_version', '?')}"
                     f" (daemon pid {rt.get('daemon_pid') or '?'})")
    if len(run.labels) == 2:
        parts.append(f"ratios are {ratio_label(*run.labels)} (below 1.0: "
                     f"{run.labels[1]} is faster/smaller)")
    for wl in run.workloads:
        if wl == "floor":
            txt = render_floor(run)
        else:
            txt = render_workload(run, wl, descriptions.get(wl, ""))
        if txt:
            parts += ["", txt]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------- plot


def plot(run: RunData, path: str) -> str | None:
    """Latency distributions (ECDF per step and runtime); a reason string when skipped."""
    try:  # optional: not a dependency of tether
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: --plot skipped"
    panels: list[tuple[str, str]] = []
    for wl in run.workloads:
        if wl == "floor":
            continue
        steps = ordered_steps([r for per in run.results.values()
                               for w, r in per.items() if w == wl])
        for step in steps:
            if any(per.get(wl) and per[wl].samples.get(step) for per in run.results.values()):
                panels.append((wl, step))
    if not panels:
        return "nothing to plot"
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax, (wl, step) in zip(axes.flat, panels, strict=False):
        for label, per in run.results.items():
            r = per.get(wl)
            xs = sorted(x * 1000 for x in (r.samples.get(step, []) if r else []))
            if xs:
                ys = [(i + 1) / len(xs) for i in range(len(xs))]
                ax.step(xs, ys, where="post", label=label)
        fstep = FLOOR_FOR_CRI_STEP.get(step)
        if run.floor is not None and fstep and run.floor.samples.get(fstep):
            fx = sorted(x * 1000 for x in run.floor.samples[fstep])
            ax.step(fx, [(i + 1) / len(fx) for i in range(len(fx))], where="post",
                    label="floor", linestyle="--")
        ax.set_title(f"{wl}: {step}", fontsize=9)
        ax.set_xlabel("ms")
        ax.set_ylabel("fraction")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
