"""The tables of scripts/bench.sh: every run, the ratios against PgBouncer and direct Postgres, issue 9's targets
(met or not, from this run only), idle-client memory, and a PNG chart.

    python3 scripts/lib/bench_report.py results.tsv idle.tsv chart.png [chart-link]

results.tsv: workload clients target tps avg_ms p99_ms cpu_us_per_tx rss_mb status (tab-separated, "-" = none)
idle.tsv:    target connected failed baseline_kb rss_kb seconds
"""

from __future__ import annotations

import sys
from collections import defaultdict

LABELS = {
    "select-simple": "select-only (-S), simple",
    "select-extended": "select-only (-S), extended",
    "select-prepared": "select-only (-S), prepared",
    "tpcb-simple": "TPC-B, simple",
    "tpcb-extended": "TPC-B, extended",
    "tpcb-prepared": "TPC-B, prepared",
    "connect-simple": "select-only, connect per transaction (-C), simple",
    "connect-extended": "select-only, connect per transaction (-C), extended",
    "rate-simple": "select-only (-S), simple, fixed rate (-R)",
    "rate-extended": "select-only (-S), extended, fixed rate (-R)",
}


def number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def load(path: str) -> list[dict]:
    rows = []
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 9:
            continue
        workload, clients, target, tps, avg, p99, cpu, rss, status = parts[:9]
        rows.append({"workload": workload, "clients": int(clients), "target": target, "tps": number(tps),
                     "avg": avg, "p99": p99, "cpu": number(cpu), "rss": rss, "status": status})
    return rows


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def main() -> None:
    results, idle_path, chart = sys.argv[1], sys.argv[2], sys.argv[3]
    link = sys.argv[4] if len(sys.argv) > 4 else ""
    rows = load(results)
    ok = [r for r in rows if r["status"] == "ok" and r["tps"] is not None]
    by = {(r["workload"], r["clients"], r["target"]): r for r in ok}

    print("| Workload | Clients | Target | TPS | Avg latency (ms) | p99 latency (ms) | Pooler CPU µs / tx | Pooler RSS max (MB) | Status |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        tps = f"{r['tps']:.0f}" if r["tps"] is not None else "-"
        cpu = f"{r['cpu']:.1f}" if r["cpu"] is not None else "-"
        print(f"| {LABELS.get(r['workload'], r['workload'])} | {r['clients']} | {r['target']} | {tps} | {r['avg']} | "
              f"{r['p99']} | {cpu} | {r['rss']} | {r['status']} |")

    # Ratios per (workload, clients), measured in this run.
    print()
    print("Ratios from the table above (pgcat against PgBouncer and direct Postgres; the parser on against off, both with")
    print("the same two server entries: pgcat-parser / pgcat-noparser, or / pgcat where pgcat-noparser did not run, as on")
    print("TPC-B, where the parser sends every transaction to the primary entry: the same pool size as pgcat's one server):")
    print()
    print("| Workload | Clients | pgcat / PgBouncer TPS | pgcat / direct TPS | PgBouncer / direct TPS | pgcat / PgBouncer CPU per tx | parser on / off TPS | parser on / off CPU per tx |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    keys = sorted({(r["workload"], r["clients"]) for r in rows}, key=lambda k: (list(LABELS).index(k[0]) if k[0] in LABELS else 99, k[1]))
    for workload, clients in keys:
        get = lambda t: by.get((workload, clients, t))  # noqa: E731
        pc, pb, d, pp = get("pgcat"), get("pgbouncer"), get("direct"), get("pgcat-parser")
        off = get("pgcat-noparser") or pc
        tps = lambda r: r["tps"] if r else None  # noqa: E731
        cpu = lambda r: r["cpu"] if r else None  # noqa: E731
        print(f"| {LABELS.get(workload, workload)} | {clients} | {ratio(tps(pc), tps(pb))} | {ratio(tps(pc), tps(d))} | "
              f"{ratio(tps(pb), tps(d))} | {ratio(cpu(pc), cpu(pb))} | {ratio(tps(pp), tps(off))} | "
              f"{ratio(cpu(pp), cpu(off))} |")

    idle = []
    try:
        for line in open(idle_path):
            t, connected, failed, base, rss, seconds = line.rstrip("\n").split("\t")
            idle.append((t, int(connected), int(failed or 0), int(base), int(rss), seconds))
    except FileNotFoundError:
        pass
    if idle:
        print()
        print("| Idle clients | Target | Connected | Failed | RSS before (MB) | RSS holding them (MB) | Per client (KB) | Time to connect all (s) |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for t, connected, failed, base, rss, seconds in idle:
            per = (rss - base) / connected if connected else 0
            print(f"| {connected + failed} | {t} | {connected} | {failed} | {base / 1024:.1f} | {rss / 1024:.1f} | {per:.1f} | {seconds} |")

    # Issue 9's targets, judged on this run only.
    print()
    print("Targets (issue 9), judged on this run:")
    print()

    def verdict(good: bool | None) -> str:
        return "n/a" if good is None else ("met" if good else "**not met**")

    for workload in ("select-simple", "select-extended"):
        for clients in sorted({c for w, c in keys if w == workload and c >= 50}):
            pc, pb = by.get((workload, clients, "pgcat")), by.get((workload, clients, "pgbouncer"))
            good = None if not (pc and pb) else pc["tps"] >= 1.1 * pb["tps"]
            print(f"- {LABELS[workload]}, {clients} clients, TPS at least 1.1x PgBouncer's: "
                  f"{ratio(pc and pc['tps'], pb and pb['tps'])}, {verdict(good)}")
    for workload in ("select-simple", "select-extended", "rate-simple", "rate-extended"):
        pc, pb = by.get((workload, 10, "pgcat")), by.get((workload, 10, "pgbouncer"))
        if workload.startswith("rate-") and not (pc or pb):
            continue
        good = None if not (pc and pb and pc["cpu"] and pb["cpu"]) else pc["cpu"] <= pb["cpu"]
        detail = f"{pc['cpu']:.1f} vs {pb['cpu']:.1f} µs" if good is not None else "-"
        print(f"- {LABELS[workload]}, 10 clients, pooler CPU per transaction no more than PgBouncer's: {detail}, {verdict(good)}")
    baseline = "pgcat-noparser" if any(r["target"] == "pgcat-noparser" for r in ok) else "pgcat"
    parser = [(w, c, by[(w, c, "pgcat-parser")]["tps"] / by[(w, c, baseline)]["tps"]) for w, c in keys
              if w.startswith("select") and (w, c, "pgcat-parser") in by and (w, c, baseline) in by]
    if parser:
        worst = min(parser, key=lambda x: x[2])
        print(f"- parser on at most 15% below parser off (select-only, pgcat-parser / {baseline}): worst "
              f"{worst[2]:.2f}x ({LABELS[worst[0]]}, {worst[1]} clients), {verdict(worst[2] >= 0.85)}")
    # TPC-B: every transaction writes, so the parser sends it to the primary entry; pgcat runs the same pool size
    # on one server entry, so it is the baseline there.
    for w, c in keys:
        pp, pc = by.get((w, c, "pgcat-parser")), by.get((w, c, "pgcat"))
        if w.startswith("tpcb") and pp and pc:
            r = pp["tps"] / pc["tps"]
            print(f"- parser on at most 15% below parser off ({LABELS[w]}, {c} clients, pgcat-parser / pgcat): "
                  f"{r:.2f}x, {verdict(r >= 0.85)}")
    for t, connected, failed, base, rss, seconds in idle:
        if t == "pgcat":
            print(f"- {connected + failed} idle clients under 100 MB RSS: {rss / 1024:.1f} MB with {connected} connected, "
                  f"{verdict(rss < 100 * 1024 and failed == 0)}")
    for clients in sorted({c for w, c in keys if w == "connect-simple"}):
        pc, pb = by.get(("connect-simple", clients, "pgcat")), by.get(("connect-simple", clients, "pgbouncer"))
        good = None if not (pc and pb) else pc["tps"] >= pb["tps"]
        print(f"- connect per transaction with SCRAM, {clients} clients, at least PgBouncer's TPS: "
              f"{ratio(pc and pc['tps'], pb and pb['tps'])}, {verdict(good)}")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print()
        print("(No chart: matplotlib is not installed; `pip install matplotlib`.)")
        return
    panels = [w for w in ("select-simple", "select-extended", "select-prepared") if any(k[0] == w for k in keys)]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(5 * (len(panels) + 1), 4.2))
    colours = {"direct": "#7f7f7f", "pgbouncer": "#1f77b4", "pgcat": "#d62728", "pgcat-noparser": "#9467bd",
               "pgcat-parser": "#ff9896"}
    for ax, workload in zip(axes, panels):
        for target, colour in colours.items():
            points = sorted((r["clients"], r["tps"]) for r in ok if r["workload"] == workload and r["target"] == target)
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=target, color=colour)
        ax.set_xscale("log")
        ax.set_title(LABELS[workload])
        ax.set_xlabel("clients")
        ax.set_ylabel("TPS")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax = axes[-1]
    for target in ("pgbouncer", "pgcat", "pgcat-parser"):
        points = sorted((r["clients"], r["cpu"]) for r in ok if r["workload"] == "select-simple" and r["target"] == target
                        and r["cpu"] is not None)
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=target, color=colours[target])
    ax.set_xscale("log")
    ax.set_title("pooler CPU per transaction (select-only, simple)")
    ax.set_xlabel("clients")
    ax.set_ylabel("µs of pooler CPU per transaction")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(chart, dpi=90)
    print()
    if link:
        print(f"![TPS by client count and pooler CPU per transaction]({link})")
    else:
        print(f"Chart: {chart}")


if __name__ == "__main__":
    main()
