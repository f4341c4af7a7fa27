"""Prints the chaos suite's report (CHAOS_REPORT, JSON lines, one per fault) as a Markdown table."""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
if rows:
    print("\n| Fault | Fault phase (s) | Longest time with no commit (s) | Committed writes | Ambiguous (broken in COMMIT) "
          "| Errors seen by clients | Slowest operation (s) |")
    print("|---|---:|---:|---:|---:|---|---:|")
    for r in rows:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(r["errors"].items())) or "none"
        extra = f"; RSS {r['rss_kb_early']} -> {r['rss_kb_late']} kB" if "rss_kb_early" in r else ""
        print(f"| {r['fault']}{extra} | {r.get('fault_s', '-')} | {r.get('outage_s', '-')} | {r['committed']} | "
              f"{r['ambiguous']} | {errors} | {r['slowest_s']} |")
