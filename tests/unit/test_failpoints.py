"""Failpoints: parsed from RELAY_FAILPOINTS, silent unless armed, and they fire as asked."""

from __future__ import annotations

import subprocess
import sys

import pytest
from relay.core import failpoints
from relay.core.failpoints import Action, FailpointFired, FailpointSpecError, failpoint, parse


@pytest.fixture
def armed(monkeypatch: pytest.MonkeyPatch):
    def arm(spec: str) -> None:
        monkeypatch.setenv(failpoints.ENV, spec)
        failpoints.reset()

    yield arm
    monkeypatch.delenv(failpoints.ENV, raising=False)
    failpoints.reset()


def test_every_documented_form_parses() -> None:
    spec = "accept.after_arm=raise; dispatch.after_send=raise@0.05, deliver.before_forward=sleep:20;*=exit@.5"
    assert parse(spec) == {
        "accept.after_arm": Action("raise"),
        "dispatch.after_send": Action("raise", 0.05),
        "deliver.before_forward": Action("sleep", 1.0, 20.0),
        "*": Action("exit", 0.5),
    }
    assert parse("") == {} == parse(" ; ")


@pytest.mark.parametrize(
    "spec", ["accept.after_arm", "=raise", "x=explode", "x=raise@2", "x=raise@often", "x=sleep", "x=sleep:-1"]
)
def test_a_bad_spec_names_the_entry(spec: str) -> None:
    with pytest.raises(FailpointSpecError, match="RELAY_FAILPOINTS"):
        parse(spec)


def test_unarmed_failpoints_do_nothing(armed) -> None:
    armed("")
    failpoint("accept.after_arm")
    armed("other.point=raise")
    failpoint("accept.after_arm")


def test_a_named_failpoint_raises_and_logs_its_name(armed, caplog: pytest.LogCaptureFixture) -> None:
    armed("accept.after_arm=raise")
    with pytest.raises(FailpointFired, match=r"accept\.after_arm"):
        failpoint("accept.after_arm")
    assert any("failpoint" in r.getMessage() and "accept.after_arm" in r.getMessage() for r in caplog.records)


def test_star_arms_every_failpoint_and_a_named_entry_wins(armed) -> None:
    armed("*=raise;quiet.point=raise@0")
    with pytest.raises(FailpointFired):
        failpoint("any.point")
    failpoint("quiet.point")  # probability 0: never fires


def test_probability_is_honoured(armed, monkeypatch: pytest.MonkeyPatch) -> None:
    armed("p=raise@0.25")
    monkeypatch.setattr(failpoints.random, "random", lambda: 0.3)
    failpoint("p")
    monkeypatch.setattr(failpoints.random, "random", lambda: 0.2)
    with pytest.raises(FailpointFired):
        failpoint("p")


def test_sleep_sleeps_the_given_seconds(armed, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(failpoints.time, "sleep", slept.append)
    armed("slow=sleep:20")
    failpoint("slow")
    assert slept == [20.0]


def test_exit_ends_the_process_at_once() -> None:
    code = "from relay.core.failpoints import failpoint; failpoint('x'); print('survived')"
    env = {"RELAY_FAILPOINTS": "x=exit", "PATH": "", "PYTHONPATH": ":".join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 137
    assert "survived" not in done.stdout
