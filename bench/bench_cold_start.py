"""Cold start of each function against a bare handler (boto3 + one client), side by side in one run.

Two figures per function, each the median of several fresh interpreters:

* **import + init**: ``import app`` - everything Lambda's init phase runs for the function;
* **ready**: the same plus what its first invocation builds before doing any work (its AWS
  clients and settings, through the library's own wiring) - the whole cold-start overhead a
  first request sees, apart from the network.

The bare handler is ``import boto3; boto3.client('sqs')``: what a function that does nothing but
one AWS call pays. Tracing is measured as deployed by default (X-Ray subsegments off: see
``relay.core.tracing``); metrics are disabled so nothing is printed.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

from bench.common import REPO, failpoint_off_ns

RUNS = 7
BASELINE = "import boto3; boto3.client('sqs', region_name='us-east-1')"

# What each function's first invocation builds before its first AWS call.
FIRST_INVOCATION = {
    "api": "from relay.core import wiring; wiring.table().client; "
    "from relay.destinations.optimized import wiring as w; w.wakeups(); "
    "from relay.core.settings import get_settings; get_settings().api_keys()",
    "webhooks": "from relay.results import wiring; wiring.ingest_deps(); wiring.verifier()",
    "deliver": "from relay.results import wiring; wiring.deliver_deps(lambda n, v: None)",
    "dispatch": "from relay.destinations.optimized import wiring; wiring.dispatch_deps(lambda n, v: None)",
    "poll": "from relay.destinations.optimove import wiring; wiring.deps(lambda n, v: None)",
    "scheduler": "from relay.core import wiring; wiring.table().client; "
    "from relay.destinations.optimove import wiring as w; w.run_queues()",
    "reconciler": "from relay.core import wiring; wiring.table().client",
}


def _timed(code: str, cwd: str) -> float:
    program = f"import time; t = time.perf_counter()\n{code}\nprint(time.perf_counter() - t)"
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "RELAY_API_KEYS": "bench",
        "WEBHOOK_SECRET": "bench",
    }
    env.setdefault("AWS_ACCESS_KEY_ID", "testing")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    env.pop("POWERTOOLS_TRACE_DISABLED", None)
    out = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", program], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def median_ms(code: str, cwd: str) -> float:
    return statistics.median(_timed(code, cwd) for _ in range(RUNS)) * 1000


def main() -> None:
    print("== Cold start of each function vs a bare handler (boto3 + one client) ==")
    base = median_ms(BASELINE, str(REPO))
    print(f"   bare handler: {base:.0f} ms   (median of {RUNS} fresh interpreters each)")
    print(f"   {'function':<10} {'import + init':>22}   {'ready for its first request':>30}")
    for function_dir in sorted((REPO / "functions").iterdir()):
        if not (function_dir / "app.py").exists():
            continue
        name = function_dir.name
        imported = median_ms("import app", str(function_dir))
        ready = median_ms(f"import app\n{FIRST_INVOCATION[name]}", str(function_dir))
        print(
            f"   {name:<10} {imported:6.0f} ms ({imported / base:.2f}x bare)"
            f"   {ready:6.0f} ms ({ready / base:.2f}x bare)"
        )
    logger = "from aws_lambda_powertools import Logger"
    with_failpoints = median_ms(f"{logger}\nimport relay.core.failpoints", str(REPO))
    logger_only = median_ms(logger, str(REPO))
    print(
        "   failpoints module (beside Powertools Logger, which every function imports): "
        f"{with_failpoints - logger_only:+.1f} ms of import; a failpoint when off: "
        f"{failpoint_off_ns():.0f} ns"
    )


if __name__ == "__main__":
    main()
