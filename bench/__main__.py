"""`make bench`: every benchmark, one after the other, figures printed side by side."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = [
    "bench.bench_cold_start",
    "bench.bench_optimized",
    "bench.bench_webhooks",
    "bench.bench_optimove",
]


def main(selected: list[str]) -> None:
    for name in BENCHMARKS:
        if selected and not any(s in name for s in selected):
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # not written yet
            raise
        module.main()
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
