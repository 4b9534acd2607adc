"""`make bench`: every benchmark, one after the other, figures printed side by side.

`python -m bench NAME...` runs those whose module name contains a NAME. ``ON_REQUEST`` ones run only
when named: `make chaos` (``python -m bench chaos``) runs for minutes and its point is its exit
code (non-zero when work was lost), not a figure beside the others."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = [
    "bench.bench_cold_start",
    "bench.bench_optimized",
    "bench.bench_webhooks",
    "bench.bench_optimove",
    "bench.bench_batch",
]
ON_REQUEST = ["bench.bench_chaos"]


def main(selected: list[str]) -> None:
    for name in BENCHMARKS + ON_REQUEST:
        if selected and not any(s in name for s in selected):
            continue
        if not selected and name in ON_REQUEST:
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
