"""Memory readings the benchmarks share (Linux: /proc)."""

from __future__ import annotations


def _proc_field(path: str, field: str) -> int:
    """A ``<field>: <n> kB`` line of a /proc file, in bytes."""
    with open(path) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in {path}")


def rss_bytes() -> int:
    """The current resident set size of this process."""
    return _proc_field("/proc/self/status", "VmRSS")


def available_bytes() -> int:
    """MemAvailable: what can be allocated without swapping."""
    return _proc_field("/proc/meminfo", "MemAvailable")
