"""The local stack's stdout pump counts the EMF metrics its function instances print."""

from __future__ import annotations

import json
import multiprocessing

from relay_local import lambdas


def test_pumped_emf_lines_are_summed_by_metric_name() -> None:
    before = lambdas.metrics_emitted()
    emf = {
        "_aws": {
            "Timestamp": 0,
            "CloudWatchMetrics": [
                {
                    "Namespace": "N",
                    "Dimensions": [["service"]],
                    "Metrics": [{"Name": "RepairedGroupWakeups"}, {"Name": "TestRepairs"}],
                }
            ],
        },
        "service": "s",
        "RepairedGroupWakeups": [2.0],
        "TestRepairs": [2.0, 1.0],
    }
    reader, writer = multiprocessing.Pipe(duplex=False)
    pump = lambdas._Pump(reader, "stdout", "test")
    pump._write(b'{"level": "WARNING", "message": "not a metric"}\n{"_aws": broken\n')
    pump._write((json.dumps(emf) + "\n").encode())
    writer.close()
    reader.close()
    after = lambdas.metrics_emitted()
    assert after["RepairedGroupWakeups"] - before["RepairedGroupWakeups"] == 2
    assert after["TestRepairs"] - before["TestRepairs"] == 3
