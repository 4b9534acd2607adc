"""make dev's terminal lines and log file (relay_local.devlog), from lines the functions print."""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

from relay_local.devlog import DevLog, LocalFormatter, file_line, terminal_line

AT = time.mktime((2026, 12, 3, 9, 0, 1, 0, 0, -1))  # 09:00:01 local time
EXECUTION = "3f2a9c01-5d1e-4c6b-9a57-0a1b2c3d4e5f"
GROUP = "cc6cdf44-acf4-4b39-bd17-55b70b769812"


def powertools(message: str, level: str = "INFO", **extra: object) -> str:
    """A record as Powertools Logger prints it in a function with the Lambda context injected."""
    record = {
        "level": level,
        "location": "handle_record:34",
        "message": message,
        "timestamp": "2026-12-03 09:00:01,123+0000",
        "service": "campaign-relay",
        "cold_start": False,
        "function_name": "DispatchFunction",
        "function_memory_size": 512,
        "function_arn": "arn:aws:lambda:us-east-1:123456789012:function:DispatchFunction",
        "function_request_id": "c2165889-8425-4404-8bc0-25812fd55be2",
        "xray_trace_id": "1-6a1d3c01-164c79a97076439cb8ee164e",
        **extra,
    }
    return json.dumps(record)


METRICS = json.dumps(
    {
        "_aws": {
            "Timestamp": 1796270764862,
            "CloudWatchMetrics": [
                {"Namespace": "CampaignRelay", "Dimensions": [["service"]], "Metrics": [{"Name": "Repairs"}]}
            ],
        },
        "service": "campaign-relay",
        "Repairs": [0.0],
    }
)


def test_a_record_becomes_time_function_execution_and_what_happened() -> None:
    line = powertools("batch sent", execution_id=EXECUTION, group_id=GROUP, profiles=50, chunks=3)
    assert terminal_line("dispatch", line, AT) == (
        "09:00:01 dispatch   3f2a9c01… batch sent group=cc6cdf44… profiles=50 chunks=3"
    )


def test_the_same_on_every_line_is_left_out_and_the_level_shown_when_it_matters() -> None:
    line = powertools("upstream answered 429", "WARNING", group_id=GROUP, retry_at="2026-12-03T09:01:00Z")
    shown = terminal_line("dispatch", line, AT)
    assert shown == (
        "09:00:01 dispatch             WARN upstream answered 429 group=cc6cdf44… "
        "retry_at=2026-12-03T09:01:00Z"
    )
    for noise in ("campaign-relay", "arn:aws", "cold_start", "xray", "handle_record", "c2165889"):
        assert noise not in shown


def test_destination_and_outcome_and_errors_read_as_words() -> None:
    handled = powertools("message handled", destination="optimized", kind="wake", outcome="idle")
    assert terminal_line("dispatch", handled, AT).endswith(
        "message handled [optimized] kind=wake outcome=idle"
    )
    failed = powertools(
        "handler failed",
        "ERROR",
        exception="Traceback (most recent call last):\n  File x\nValueError: bad things",
        exception_name="ValueError",
    )
    assert terminal_line("deliver", failed, AT).endswith("ERROR handler failed (ValueError: bad things)")


def test_long_values_and_lines_are_cut() -> None:
    line = powertools("x", outcome="y" * 500, details={"a": list(range(100))})
    shown = terminal_line("poll", line, AT)
    assert shown is not None
    assert len(shown) <= 200
    assert "outcome=" + "y" * 39 + "…" in shown


def test_metric_documents_belong_only_in_the_file() -> None:
    assert terminal_line("reconciler", METRICS, AT) is None
    assert json.loads(file_line("reconciler", "stdout", METRICS))["Repairs"] == [0.0]


def test_plain_lines_are_shown_as_they_are() -> None:
    assert terminal_line("api", "Traceback (most recent call last):", AT) == (
        "09:00:01 api        Traceback (most recent call last):"
    )
    assert terminal_line("api", "   ", AT) is None


def test_the_file_keeps_every_line_as_json_attributed_to_its_function() -> None:
    line = powertools("trigger accepted", execution_id=EXECUTION)
    kept = json.loads(file_line("api", "stdout", line))
    assert kept == {"function": "api", **json.loads(line)}
    assert next(iter(kept)) == "function"
    assert json.loads(file_line("api", "stderr", "a plain line\n")) == {
        "function": "api",
        "stream": "stderr",
        "text": "a plain line",
    }


def test_the_sink_writes_the_terminal_and_the_file(tmp_path: Path) -> None:
    terminal = io.StringIO()
    log = DevLog(tmp_path / "relay-local.log", terminal)
    warning = (
        "/x/aws_lambda_powertools/metrics/provider/base.py:213: UserWarning: Something to know\n"
        "  self.flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)\n"
    )
    quiet = (
        "/x/base.py:213: UserWarning: No application metrics to publish. The cold-start metric ...\n"
        "  self.flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)\n"
    )
    log("reconciler", "stdout", METRICS + "\n")
    log("dispatch", "stdout", powertools("batch sent", execution_id=EXECUTION) + "\n\n")
    log("api", "stderr", warning + warning)
    log("scheduler", "stderr", quiet)
    log.close()

    shown = terminal.getvalue().splitlines()
    assert len(shown) == 2, shown
    assert shown[0].split(" ", 1)[1] == "dispatch   3f2a9c01… batch sent"
    assert shown[1].split(" ", 1)[1].split() == [
        "api",
        "WARN",
        "python:",
        "UserWarning:",
        "Something",
        "to",
        "know",
    ]

    kept = [json.loads(line) for line in (tmp_path / "relay-local.log").read_text().splitlines()]
    assert [k["function"] for k in kept] == ["reconciler", "dispatch", *["api"] * 4, *["scheduler"] * 2]
    assert kept[0]["Repairs"] == [0.0]
    assert kept[1]["message"] == "batch sent"
    assert kept[2]["text"].endswith("UserWarning: Something to know")


def test_the_stacks_own_lines_share_the_columns() -> None:
    record = logging.LogRecord(
        "relay_local.gateway", logging.INFO, __file__, 1, "POST %s answered %d", ("/v1/x", 422), None
    )
    record.created = AT
    assert LocalFormatter().format(record) == "09:00:01 gateway              POST /v1/x answered 422"
    record = logging.LogRecord("relay_local", logging.WARNING, __file__, 1, "stopping", (), None)
    record.created = AT
    assert LocalFormatter().format(record) == "09:00:01 local                WARN stopping"
