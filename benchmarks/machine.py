"""What the machine did meanwhile: CPU seconds of every process and of this benchmark's own processes.

Shared by the benchmarks that report ``others``, the cores other processes kept busy while they
measured (Linux ``/proc``; NaN elsewhere): (busy_seconds() difference - own_cpu_seconds()
difference) / wall seconds.
"""

from __future__ import annotations

import os
import time


def busy_seconds() -> float:
    """CPU seconds all processes have used since boot (Linux ``/proc/stat``; NaN elsewhere)."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of its living child processes (extraction or Dask workers; Linux ``/proc``)."""
    total, me, tick = time.process_time(), str(os.getpid()), os.sysconf("SC_CLK_TCK")
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        try:
            with open(f"/proc/{entry.name}/stat", encoding="utf-8") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # from field 3 (state) on
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and fields[1] == me:  # parent pid; then utime, stime (fields 14, 15)
            total += (int(fields[11]) + int(fields[12])) / tick
    return total
