#!/usr/bin/env python3
"""Sums kernel durations from `ncu --csv --metrics gpu__time_duration.sum` output (stdin):
one line per kernel name (shortened), total microseconds and launch count, largest first."""
import csv
import sys
from collections import defaultdict

rows = [r for r in csv.reader(line for line in sys.stdin if line.startswith('"'))]
head = rows[0]
name_i, val_i, unit_i = head.index("Kernel Name"), head.index("Metric Value"), head.index("Metric Unit")
tot, cnt = defaultdict(float), defaultdict(int)
for r in rows[1:]:
    scale = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}[r[unit_i]]
    name = r[name_i].split("(")[0][:90]
    tot[name] += float(r[val_i].replace(",", "")) * scale
    cnt[name] += 1
for name, us in sorted(tot.items(), key=lambda x: -x[1]):
    print(f"{us:10.1f} us  x{cnt[name]:<3d} {name}")
print(f"{sum(tot.values()):10.1f} us  total")
