#!/usr/bin/env python3
"""Folds the per-run lines of scripts/bench.sh (rounds.tsv) into one line per (workload, clients, target).

Usage: bench_rounds.py ROUNDS_TSV RESULTS_TSV
Columns of both: workload clients target tps avg_ms p99_ms cpu_ms_per_1k rss_mb status ("-" where there is no
figure). Each figure becomes the median of the runs that have it; RSS the largest. The status is "ok" when every
run was, otherwise the first problem and how many runs had one. Prints one line about the spread of TPS between
the runs of a cell (runs without problems only), for the report. With an even number of runs the median is the
mean of the middle two.
"""
import statistics
import sys


def number(text):
    try:
        return float(text)
    except ValueError:
        return None


def main(rounds_path, results_path):
    cells = {}
    for line in open(rounds_path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 9:
            continue
        cells.setdefault(tuple(parts[:3]), []).append(parts[3:])
    spreads = []
    with open(results_path, "w") as out:
        for key, runs in cells.items():
            row = list(key)
            for column, digits in ((0, 6), (1, 3), (2, 3), (3, 1)):
                values = [v for v in (number(run[column]) for run in runs) if v is not None]
                row.append(f"{statistics.median(values):.{digits}f}" if values else "-")
            rss = [v for v in (number(run[4]) for run in runs) if v is not None]
            row.append(f"{max(rss):.1f}" if rss else "-")
            problems = [run[5] for run in runs if run[5] != "ok"]
            if not problems:
                row.append("ok")
            elif len(problems) == len(runs) and len(set(problems)) == 1:
                row.append(problems[0])  # e.g. "not run: over max_connections"
            else:
                row.append(f"{problems[0]} ({len(problems)} of {len(runs)} runs)")
            out.write("\t".join(row) + "\n")
            tps = [v for v in (number(run[0]) for run in runs if run[5] == "ok") if v is not None]
            if len(tps) >= 2 and statistics.median(tps) > 0:
                spreads.append(((max(tps) - min(tps)) / statistics.median(tps), f"{key[0]} c={key[1]} {key[2]}"))
    if spreads:
        spreads.sort()
        worst = spreads[-1]
        print(f"TPS spread between the runs of one row (max - min over median): median "
              f"{100 * statistics.median(s for s, _ in spreads):.0f}%, largest {100 * worst[0]:.0f}% ({worst[1]})")
    else:
        print("one run per row, no spread")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
