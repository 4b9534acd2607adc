"""Cold import of each function's handler module against a bare handler (boto3 + one client).

Each figure is the median of several fresh interpreters, measured side by side in one run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

from bench.common import REPO

RUNS = 5
BASELINE = "import boto3; boto3.client('sqs', region_name='us-east-1')"


def _timed(code: str, cwd: str) -> float:
    program = f"import time; t = time.perf_counter()\n{code}\nprint(time.perf_counter() - t)"
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_METRICS_DISABLED": "true"}
    env.setdefault("AWS_ACCESS_KEY_ID", "testing")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    out = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", program], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def median_ms(code: str, cwd: str) -> float:
    return statistics.median(_timed(code, cwd) for _ in range(RUNS)) * 1000


def main() -> None:
    print("== Cold import of each function vs a bare handler (boto3 + one client) ==")
    base = median_ms(BASELINE, str(REPO))
    print(f"   bare handler: {base:.0f} ms")
    for function_dir in sorted((REPO / "functions").iterdir()):
        if not (function_dir / "app.py").exists():
            continue
        ms = median_ms("import app", str(function_dir))
        print(f"   {function_dir.name:<10} {ms:6.0f} ms  ({ms / base:.2f}x the bare handler)")


if __name__ == "__main__":
    main()
