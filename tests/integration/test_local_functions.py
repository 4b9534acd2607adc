"""The relay's functions on the shared local stack, when a Lambda instance dies mid-invocation.

The local stack runs each function instance as a process of its own (as Lambda does), so killing
one is what a crashed or recycled Lambda instance is to the relay.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from conftest import Api, batches_for, process_alive, queue_depth, relay_env, schedule, wait_for
from relay_local.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_dispatcher_killed_while_upstream_holds_its_request_ends_ambiguous_never_resent(
    api: Api, relay: LocalStack, sqs: Any, group: str
) -> None:
    """SIGKILL of the DispatchFunction instance whose batch the upstream is holding: the wake-up
    is not deleted and comes back after the queue's visibility timeout, a fresh instance runs it,
    and the dispatcher settles the abandoned chunk as ambiguous - the request did reach the
    upstream, so it is never sent again."""
    dispatch = relay.function("DispatchFunction")
    queue = relay.resources.url("DispatchQueue")
    # Compressed time: the wake-up is back 3 s after it was received (360 s in the template), a
    # chunk left 'sending' for 0.5 s counts as abandoned, and the dispatcher waits for the held
    # answer rather than timing out (1 s in these tests).
    relay.set_queue_attributes("DispatchQueue", VisibilityTimeout="3")
    with relay_env(OPTIMIZED_READ_TIMEOUT_S="45", DISPATCH_STALE_SENDING_S="0.5"):
        dispatch.warm()  # the wake-up is taken at once, its chunk claimed long before redelivery
        cold_starts, crashes = dispatch.cold_starts, dispatch.crashes
        errors = relay.poller_stats()["DispatchFunction.Wakeups"]["errors"]
        hold = relay.sandbox.hold_next()
        answer = api.trigger(group, 1, schedule(3600)).json()
        assert hold.wait_arrived(30), "the batch request never reached the sandbox"
        [pid] = dispatch.busy_pids()  # the dispatcher waiting for the upstream's answer
        os.kill(pid, signal.SIGKILL)
        hold.release()  # the upstream goes on and creates the batch

        done = api.wait(answer["execution_id"], timeout=60)
        assert done["status"] == "partially_failed"
        assert (done["chunks"]["ambiguous"], done["profiles"]["ambiguous"]) == (1, 1)
        [chunk] = done["chunk_details"]
        assert chunk["status"] == "ambiguous"
        assert "may have been sent" in chunk["error"]["message"]
        wait_for(lambda: queue_depth(sqs, queue) == 0, timeout=30, what="the wake-up done and deleted")

    assert [b.status for b in batches_for(relay, group)] == [201]  # created once, never re-sent
    assert not process_alive(pid)
    assert pid not in [i.pid for i in dispatch.instances()]
    assert dispatch.crashes == crashes + 1
    assert dispatch.cold_starts > cold_starts  # a fresh instance took the redelivered wake-up
    assert relay.poller_stats()["DispatchFunction.Wakeups"]["errors"] == errors + 1
