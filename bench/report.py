"""Turn bench results into the markdown tables of docs/PERFORMANCE.md and the plots in docs/img/.

The tables go between `<!-- bench:begin -->` and `<!-- bench:end -->`; the prose around them
(findings, recommended changes) is written by hand and kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["BEGIN", "END", "machine_line", "tables", "targets_table", "write_plots", "write_report"]

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"


def machine_line(m: dict[str, Any]) -> str:
    """Say in one line which machine and software the figures came from."""
    p = m["packages"]
    load = ", ".join(f"{x:.1f}" for x in m["load_average"])
    end = m.get("load_average_end")
    load_end = f"; at the end {', '.join(f'{x:.1f}' for x in end)}" if end else ""
    warning = (
        " (**above the core count: these figures are not valid**, the machine was busy with other work)"
        if m["load_average"][0] > (m.get("cores") or 1)
        else ""
    )
    return (
        f"{m['cores']} cores ({m['cpu']}), Python {m['python']}, restate-server {m['restate_server']}, "
        f"restate-sdk {p['restate-sdk']}, google-adk {p['google-adk']}, hypercorn {p['hypercorn']}; "
        f"load average at the start {load}{warning}{load_end}"
        + (f"; bytecode: {m['bytecode']}" if m.get("bytecode") else "")
    )


def targets_table(targets: list[dict[str, Any]]) -> list[str]:
    """Return the issue's ratios next to their targets, as markdown lines."""
    out = ["### The targets (ratios, this run)", "", "| ratio | measured | target | met? |", "|---|---|---|---|"]
    for t in targets:
        mine, base = t["of"]
        out.append(
            f"| {t['name']} | {t['value']:.2f} ({mine:.1f} ÷ {base:.1f}) | {t['op']} {t['target']} "
            f"| {'yes' if t['met'] else '**no**'} |"
        )
    return [*out, ""]


def _f(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def tables(r: dict[str, Any]) -> str:
    """Return the markdown tables for whatever figures the results hold."""
    out = [f"Measured {r.get('size', 'full')} size on: {machine_line(r['machine'])}.", ""]
    if r.get("targets"):
        out += targets_table(r["targets"])
    if "latency" in r:
        out += [
            "### 1. Turn latency (weather agent: 1 tool call, 2 model calls)",
            "",
            "| variant | median ms | p95 ms | ratio (median) | ratio (p95) "
            "| CPU ms/turn: client + agent + server = total | ratio (CPU) |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, s in r["latency"].items():
            c = s["cpu_ms_per_turn"]
            ratio = f"{_f(s.get('ratio_median'), 2)}× vs {s.get('ratio_to', '')}" if "ratio_median" in s else ""
            out.append(
                f"| {label} | {_f(s['median_ms'])} | {_f(s['p95_ms'])} | {ratio} | {_f(s.get('ratio_p95'), 2)} | "
                f"{_f(c['client'])} + {_f(c['agent'])} + {_f(c['server'])} = {_f(c['total'])} | "
                f"{_f(s.get('ratio_cpu'), 2)} |"
            )
        out += [
            "",
            f"n = {next(iter(r['latency'].values()))['n']} turns per variant, interleaved in batches of 5.",
            "",
        ]
    if "throughput" in r:
        out += [
            "### 2. Throughput (turns/s with N sessions at once)",
            "",
            "| sessions | variant | turns/s | turns in s | median ms | CPU ms/turn: client + agent + server = total |",
            "|---|---|---|---|---|---|",
        ]
        labels = list(r["throughput"])
        for i, row in enumerate(r["throughput"][labels[0]]):
            for lab in labels:
                x = r["throughput"][lab][i]
                lat = x["latency"]["median_ms"] if x["latency"] else None
                err = f", {x['errors']} errors" if x["errors"] else ""
                c = x.get("cpu_ms_per_turn")
                cpu = f"{_f(c['client'])} + {_f(c['agent'])} + {_f(c['server'])} = {_f(c['total'])}" if c else "n/a"
                out.append(
                    f"| {row['concurrency']} | {lab} | {_f(x['turns_per_s'])} | {x['turns']} in {_f(x['seconds'])}"
                    f"{err} | {_f(lat, 0)} | {cpu} |"
                )
        out.append("")
    if "growth" in r:
        out += ["### 3. Session growth (one conversation, lesson 03's chat agents)", ""]
        g = r["growth"]
        if "skipped" in g:
            out += [f"Not measured: {g['skipped']}.", ""]
        else:
            out += [
                "| turn | " + " | ".join(f"{lab}: ms (median t±2) / stored KiB" for lab in g) + " |",
                "|---" * (len(g) + 1) + "|",
            ]
            rows = zip(*(g[lab]["checkpoints"] for lab in g), strict=True)
            for cps in rows:
                cells = [
                    f"{_f(c['latency_ms'])} ({_f(c['window_median_ms'])}) / {_f(c['stored_bytes'] / 1024)}" for c in cps
                ]
                out.append(f"| {cps[0]['turn']} | " + " | ".join(cells) + " |")
            ratios = "; ".join(
                f"{lab}: turn {rt['turn']} ÷ turn 1 = {_f(rt['ratio'], 2)}×"
                for lab, rt in ((lab, g[lab]["ratio_turn_vs_first"]) for lab in g)
            )
            out += ["", f"Ratios (medians of t±2): {ratios}.", ""]
    if "recovery" in r:
        out += [
            "### 4. Recovery after SIGKILL mid-turn (from the process listening again to the reply)",
            "",
            "| mode | kills | median ms | max ms | restart ms (kill to listening) |",
            "|---|---|---|---|---|",
        ]
        for label, s in r["recovery"].items():
            out.append(
                f"| {label} | {s['kills']} | {_f(s['median_recovery_ms'], 0)} | {_f(s['max_recovery_ms'], 0)} | "
                f"{_f(s['median_restart_ms'], 0)} |"
            )
        out.append("")
    if "notebooks" in r:
        nb = r["notebooks"]
        out += ["### 5. The lesson notebooks under nbmake, as one suite", ""]
        if "measured_on" in nb:
            out += [f"Re-measured apart from figures 1-4, on: {machine_line(nb['measured_on'])}.", ""]
        out += ["| notebook | passed | s |", "|---|---|---|"]
        for name, s in nb.items():
            if isinstance(s, dict) and "nbmake_s" in s:
                out.append(f"| {name} | {'yes' if s['passed'] else 'NO'} | {_f(s['nbmake_s'])} |")
        out += [
            "",
            f"The whole suite: {_f(nb['total_wall_s'])} s wall in one `pytest --nbmake` "
            f"({_f(nb.get('total_nbmake_s'))} s executing notebooks, the rest is start-up).",
            "",
        ]
    return "\n".join(out)


def write_plots(r: dict[str, Any], img: Path) -> list[Path]:
    """Draw latency vs turns and throughput vs concurrency (each names its machine); return the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img.mkdir(parents=True, exist_ok=True)
    caption = machine_line(r["machine"])
    written = []
    growth = r.get("growth", {})
    if growth and "skipped" not in growth:
        fig, (t_ax, s_ax) = plt.subplots(1, 2, figsize=(11, 4))
        for label, g in growth.items():
            lat = g["all_latency_ms"]
            t_ax.plot(range(1, len(lat) + 1), lat, label=label, alpha=0.6)
            s_ax.plot(range(1, len(lat) + 1), [b / 1024 for b in g["all_stored_bytes"]], label=label)
        t_ax.set(title="turn latency vs turn", xlabel="turn", ylabel="ms")
        t_ax.set_ylim(bottom=0)
        s_ax.set(title="stored session vs turn", xlabel="turn", ylabel="KiB")
        t_ax.legend()
        fig.text(0.01, 0.01, caption, fontsize=6)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        written.append(img / "latency_vs_turns.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    if "throughput" in r:
        fig, ax = plt.subplots(figsize=(7, 4))
        for label, rows in r["throughput"].items():
            ax.plot([x["concurrency"] for x in rows], [x["turns_per_s"] for x in rows], marker="o", label=label)
        ax.set(title="throughput vs concurrent sessions", xlabel="sessions at once", ylabel="turns/s", xscale="log")
        ax.set_ylim(bottom=0)
        ax.legend()
        fig.text(0.01, 0.01, caption, fontsize=5)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        written.append(img / "throughput_vs_concurrency.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    if "latency" in r:
        fig, ax = plt.subplots(figsize=(8, 4))
        labels = list(r["latency"])
        ax.barh(labels, [r["latency"][k]["median_ms"] for k in labels], label="median")
        ax.scatter([r["latency"][k]["p95_ms"] for k in labels], labels, color="black", marker="|", s=200, label="p95")
        ax.invert_yaxis()
        ax.set(title="weather agent turn latency", xlabel="ms")
        ax.legend()
        fig.text(0.01, 0.01, caption, fontsize=5)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        written.append(img / "turn_latency.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def write_report(r: dict[str, Any], *, doc: Path | None, img: Path) -> None:
    """Write the plots, and the tables into `doc` between the bench markers (creating it if needed)."""
    write_plots(r, img)
    if doc is None:
        return
    block = f"{BEGIN}\n{tables(r)}\n{END}"
    text = doc.read_text() if doc.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(head + block + tail)
