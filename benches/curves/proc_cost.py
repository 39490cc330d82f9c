#!/usr/bin/env python3
"""A process's CPU time and context switches, summed over its threads, for benches/curves/pairs.sh.

    proc_cost.py snapshot PID              > FILE   (JSON: per thread group, seconds and switches)
    proc_cost.py since PID FILE MESSAGES          (prints: cpu log store vcs ivcs, per message)

Threads are grouped by name: the log writer (exogate-log), the store's writer (exogate-store),
and everything else (tokio's workers and blocking pool). CPU time is each thread's time on a CPU
from schedstat, in nanoseconds, as lib.sh's cpu_ns_of_session reads it: clock ticks (10 ms)
would round a thread that runs briefly, as the log writer does, to nothing. A thread that ended
between the two readings is missing from the second; the runs this serves start every thread
before the first.
"""
import json
import os
import sys


def snapshot(pid):
    groups = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                cpu = int(f.read().split()[0]) / 1e9
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except FileNotFoundError:
            continue
        name = status["Name"].strip()
        group = name if name in ("exogate-log", "exogate-store") else "other"
        g = groups.setdefault(group, [0.0, 0, 0])
        g[0] += cpu
        g[1] += int(status["voluntary_ctxt_switches"])
        g[2] += int(status["nonvoluntary_ctxt_switches"])
    return groups


def main():
    if sys.argv[1] == "snapshot":
        json.dump(snapshot(sys.argv[2]), sys.stdout)
        return
    now = snapshot(sys.argv[2])
    with open(sys.argv[3]) as f:
        before = json.load(f)
    messages = int(sys.argv[4])

    def delta(group, i):
        return now.get(group, [0, 0, 0])[i] - before.get(group, [0, 0, 0])[i]

    groups = set(now) | set(before)
    cpu = sum(delta(g, 0) for g in groups)
    vcs = sum(delta(g, 1) for g in groups)
    ivcs = sum(delta(g, 2) for g in groups)
    print(
        f"{cpu * 1000 / messages:.3f} {delta('exogate-log', 0) * 1000 / messages:.3f} "
        f"{delta('exogate-store', 0) * 1000 / messages:.3f} {vcs / messages:.2f} {ivcs / messages:.2f}"
    )


if __name__ == "__main__":
    main()
