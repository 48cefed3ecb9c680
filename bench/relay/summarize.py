#!/usr/bin/env python3
"""Summarise bench/relay/run.sh JSONL files as Markdown tables."""
import json
import sys
from collections import defaultdict

rows = [json.loads(l) for f in sys.argv[1:] for l in open(f) if l.startswith("{")]
traffic = [r for r in rows if "received_pps" in r and not r.get("memory_run")]
memory = [r for r in rows if r.get("memory_run")]
ng = [r for r in rows if "pairs_per_sec" in r]
ng_summary = [r for r in rows if r.get("ng_summary")]
order = ["voxline", "voxline-raw", "rtpengine", "forwarder", "forwarder-raw"]
targets = [t for t in order if any(r.get("target") == t for r in rows)]

print("| sessions | target | offered pps | sent pps | received pps | loss % | target CPU % | CPU % per 10k pps | load avg |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in sorted(traffic, key=lambda r: (r["sessions"], order.index(r["target"]))):
    sent_pps = r["sent"] / max(r.get("window_secs", 10), 1e-9) if "window_secs" in r else None
    print(f"| {r['sessions']} | {r['target']} | {r['offered_pps']:.0f} | "
          f"{'' if sent_pps is None else f'{sent_pps:.0f}'} | {r['received_pps']:.0f} | {r['loss_pct']:.3f} | "
          f"{r['cpu_pct']:.1f} | {r['cpu_pct_per_10k_pps']:.2f} | {r['loadavg']:.1f} |")

best = defaultdict(lambda: (0, None))
for r in traffic:
    if r["loss_pct"] <= 0.1 and r["received_pps"] > best[r["target"]][0]:
        best[r["target"]] = (r["received_pps"], r)
print()
print("| target | highest received pps at ≤ 0.1 % loss | sessions | CPU % per 10k pps (mean over steps) | memory per session | ng offer+answer pairs/s |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for t in targets:
    steps = [r for r in traffic if r["target"] == t]
    cpu = sum(r["cpu_pct_per_10k_pps"] for r in steps) / max(len(steps), 1)
    mem = next((r["mem_per_session_bytes"] for r in memory if r["target"] == t), None)
    pairs = next((r["pairs_per_sec"] for r in ng if r["target"] == t), None)
    summ = next((r for r in ng_summary if r["target"] == t), None)
    if summ:
        pairs = (f"{summ['median_pairs_per_sec']:.0f} (median of {summ['runs']}, "
                 f"{summ['min_pairs_per_sec']:.0f}-{summ['max_pairs_per_sec']:.0f}, {summ['failed']} failed)")
    pps, r = best[t]
    print(f"| {t} | {pps:.0f} | {r['sessions'] if r else '-'} | {cpu:.2f} | "
          f"{'-' if mem is None else f'{mem / 1024:.1f} KiB'} | {'-' if pairs is None else (pairs if isinstance(pairs, str) else f'{pairs:.0f}')} |")

# CPU per packet relative to rtpengine and to the forwarder of the same I/O,
# per load step (one run: each target measured once per step).
cpu = {(r["sessions"], r["target"]): r["cpu_pct_per_10k_pps"] for r in traffic}
steps = sorted({r["sessions"] for r in traffic})
pairs = [(a, b) for a, b in [("voxline", "rtpengine"), ("voxline-raw", "rtpengine"),
                             ("voxline", "forwarder"), ("voxline-raw", "forwarder-raw")]
         if a in targets and b in targets]
if pairs and steps:
    print()
    print("| sessions | " + " | ".join(f"{a} ÷ {b}" for a, b in pairs) + " |")
    print("| ---: | " + " | ".join("---:" for _ in pairs) + " |")
    for n in steps:
        cells = []
        for a, b in pairs:
            x, y = cpu.get((n, a)), cpu.get((n, b))
            cells.append(f"{x / y:.2f}" if x and y else "-")
        print(f"| {n} | " + " | ".join(cells) + " |")
