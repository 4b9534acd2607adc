"""Dispatching profile operations: claim up to 200 pending operations of any executions, take
their updates from the limiter, send one /profiles/update, record the outcome, repeat.

Woken by a message "the project has pending operations". Many small triggers are packed into full
calls; a part-filled call waits ``batch_dispatch_linger_s`` (from its oldest operation) for more.
A wait longer than ``batch_dispatch_max_inline_wait_s`` is never slept on: a delayed wake-up is
queued instead. Outcomes:

- ``SUCCESS``: every operation delivered. ``SUCCESS_WITH_PARTIAL_ERRORS``: each
  ``errors[].bulk_index`` is mapped to its chunk and operation (execution, index, ref) and recorded
  as failed with Batch's category/reason/attribute; the others are delivered.
- 429: the limiter is blocked until the Retry-After (if Batch sends one) or a doubling back-off,
  and the operations go back to pending: retried, never lost.
- 5xx / not sent: back to pending with a back-off, for at most ``batch_retry_for_s`` from the
  first failure; then parked in the DLQ (alarmed) and recorded ``dead_lettered``.
- timeout after sending: ``ambiguous`` (re-sent instead with ``batch_resend_ambiguous``).
- 400/401 and other 4xx: ``failed`` with Batch's ``error_code``/``error_message``.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from relay.core.backoff import ceiling, jittered
from relay.core.clock import Clock, iso
from relay.core.failpoints import failpoint
from relay.core.limiter.token_bucket import TokenBucket
from relay.core.queue import MAX_DELAY_S, Queue
from relay.core.store.table import Table
from relay.destinations.batch import DEAD_CHUNK, NAME, store
from relay.destinations.batch.client import (
    Accepted,
    Ambiguous,
    BatchClient,
    Outcome,
    RateLimited,
    Rejected,
    Unavailable,
)
from relay.destinations.batch.packing import pack, updates_in
from relay.destinations.batch.settings import BatchSettings
from relay.destinations.batch.store import ChunkResult, PendingChunk
from relay.destinations.batch.wakeups import wake

logger = Logger(child=True)

# A GSI may lag its table by a moment: do not declare the lane idle right after new work.
GSI_SETTLE_S = 2.0
# Chunks read ahead of the call being formed (a call takes at most 200 single-operation chunks).
LOOKAHEAD = 50

Emit = Callable[[str, float], None]


@dataclass
class DispatchDeps:
    table: Table
    queue: Queue
    client: BatchClient
    limiter: TokenBucket
    settings: BatchSettings
    lane: str
    clock: Clock = time.time
    sleep: Callable[[float], None] = time.sleep
    emit: Emit = lambda name, value: None


class ProfileDispatcher:
    def __init__(self, deps: DispatchDeps) -> None:
        self.deps = deps
        s = deps.settings
        # A call may take no more updates than the limiter's capacity (compressed limits in tests).
        self.call_size = max(1, min(s.batch_operations_per_call, math.floor(deps.limiter.capacity)))
        self.page = self.call_size + LOOKAHEAD
        self.rate_limited_streak = 0

    def run(self, remaining_ms: Callable[[], int]) -> str:
        """Send until the lane is idle, must wait, or the Lambda's time runs short."""
        d, s = self.deps, self.deps.settings
        self._settle_abandoned()
        while True:
            if remaining_ms() < s.batch_dispatch_reserve_ms:
                self._wake_later(0)
                return "time budget spent, handed over"
            state = store.read_lane(d.table, d.lane)
            chunks = store.pending(d.table, d.lane, self.page)
            if not chunks:
                if d.clock() - float(state.get("last_work_at", 0)) < GSI_SETTLE_S:
                    self._wake_later(GSI_SETTLE_S)
                    return "recent work may not be indexed yet, looking again shortly"
                settle_at = self._settle_abandoned()
                if settle_at is not None:
                    self._wake_later(max(1.0, settle_at - d.clock()))
                    return "calls of another dispatcher in flight, looking again when they settle"
                if store.disarm(d.table, d.lane, int(state.get("work_version", 0))):
                    return "idle"
                continue
            call, full = pack(chunks, self.call_size)
            age = d.clock() - min(c.created_at for c in call)
            if not full and age < s.batch_dispatch_linger_s:
                # Updates spent on a part-filled call are throughput lost: wait a moment for more.
                if self._wait(s.batch_dispatch_linger_s - age):
                    continue
                return "lingering for more operations"
            wait = d.limiter.wait_for(sum(c.size for c in call))
            if wait > s.batch_dispatch_max_inline_wait_s:
                self._wait(wait)
                return "waiting for the updates limiter"
            self._send_call(call)

    def _send_call(self, chunks: Sequence[PendingChunk]) -> None:
        d, s = self.deps, self.deps.settings
        call_id = str(uuid.uuid4())
        claimed = store.claim(d.table, call_id, chunks, d.clock())
        if not claimed:
            return
        failpoint("batch.dispatch.after_claim")
        store.load_operations(d.table, claimed)
        entries = [(c, e) for c in claimed for e in c.operations]
        operations = [e["op"] for _, e in entries]
        updates = updates_in(operations)
        taken_at = d.limiter.acquire(updates, s.batch_dispatch_max_inline_wait_s)
        while taken_at is not None and not d.limiter.still_valid(taken_at):
            taken_at = d.limiter.acquire(updates, s.batch_dispatch_max_inline_wait_s)
        if taken_at is None:
            # Someone else spent the updates meanwhile: back in the queue, no attempt counted.
            store.release(d.table, call_id, claimed, count_attempt=False, error=None, now=d.clock())
            return
        try:
            outcome: Outcome = d.client.update_profiles(operations, now=d.clock())
        except Exception as exc:  # a bug reading the answer: the call may have been applied
            logger.exception("sending a profile update raised")
            outcome = Ambiguous(f"the relay failed reading Batch's answer: {type(exc).__name__}")
        failpoint("batch.dispatch.after_send")
        self._record(call_id, claimed, entries, outcome)

    def _record(
        self,
        call_id: str,
        claimed: list[PendingChunk],
        entries: list[tuple[PendingChunk, dict[str, Any]]],
        outcome: Outcome,
    ) -> None:
        d, s = self.deps, self.deps.settings
        now = d.clock()
        log = {"call_id": call_id, "operations": len(entries), "chunks": len(claimed)}
        if isinstance(outcome, Accepted):
            self.rate_limited_streak = 0
            results = self._delivered(call_id, claimed, entries, outcome, now)
            store.finish(d.table, results, now)
            failed = sum(r.failed for r in results)
            d.emit("BatchCallsSent", 1)
            d.emit("BatchOperationsDelivered", len(entries) - failed)
            if failed:
                d.emit("BatchPartialErrors", failed)
            logger.info("profile update sent", extra={**log, "code": outcome.code, "partial_errors": failed})
        elif isinstance(outcome, RateLimited):
            self.rate_limited_streak += 1
            backoff = ceiling(self.rate_limited_streak, s.batch_retry_after_default_s, s.batch_retry_max_s)
            until = outcome.retry_at if outcome.retry_at > 0 else now + backoff
            d.limiter.block(until)
            store.release(d.table, call_id, claimed, count_attempt=False, error=None, now=now)
            d.emit("BatchRateLimited", 1)
            logger.warning("Batch answered 429, backing off", extra={**log, "retry_at": iso(until)})
        elif isinstance(outcome, Rejected):
            error = {
                "status": outcome.status,
                "error_code": outcome.error_code,
                "error_message": outcome.error_message,
            }
            store.finish(
                d.table, [ChunkResult(c, call_id, "failed", fields={"error": error}) for c in claimed], now
            )
            d.emit("BatchCallsRejected", 1)
            logger.error("Batch rejected a profile update", extra={**log, **error})
        elif isinstance(outcome, Unavailable) or s.batch_resend_ambiguous:
            self._retry_later(call_id, claimed, outcome, log, now)
        else:
            error = {"status": None, "error_message": outcome.message}
            store.finish(
                d.table, [ChunkResult(c, call_id, "ambiguous", fields={"error": error}) for c in claimed], now
            )
            d.emit("BatchCallsAmbiguous", 1)
            logger.error(
                "profile update outcome ambiguous, not re-sent", extra={**log, "error": outcome.message}
            )

    def _delivered(
        self,
        call_id: str,
        claimed: list[PendingChunk],
        entries: list[tuple[PendingChunk, dict[str, Any]]],
        outcome: Accepted,
        now: float,
    ) -> list[ChunkResult]:
        """Each partial error's ``bulk_index`` (the operation's place in the call) mapped back to
        the caller's operation: its execution, index and ref."""
        errors: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for error in outcome.errors:
            index = error.get("bulk_index")
            if not isinstance(index, int) or not 0 <= index < len(entries):
                logger.error(
                    "partial error with an unknown bulk_index", extra={"call_id": call_id, "error": error}
                )
                continue
            chunk, entry = entries[index]
            errors.setdefault((chunk.execution_id, chunk.seq), []).append(
                {
                    "index": entry["i"],
                    "ref": entry.get("ref"),
                    **{k: error[k] for k in ("category", "reason", "attribute") if error.get(k) is not None},
                }
            )
        results = []
        for c in claimed:
            found = errors.get((c.execution_id, c.seq), [])
            failed = len({e["index"] for e in found})
            fields: dict[str, Any] = {"sent_at": now, "code": outcome.code or "SUCCESS"}
            if found:
                fields["errors"] = found
            results.append(
                ChunkResult(c, call_id, "sent", delivered=c.size - failed, failed=failed, fields=fields)
            )
        return results

    def _retry_later(
        self,
        call_id: str,
        claimed: list[PendingChunk],
        outcome: Unavailable | Ambiguous,
        log: dict,
        now: float,
    ) -> None:
        """Back to pending with a back-off; parked in the DLQ once retried for BATCH_RETRY_FOR_S."""
        d, s = self.deps, self.deps.settings
        error = {"status": getattr(outcome, "status", None), "error_message": outcome.message}
        exhausted = [
            c
            for c in claimed
            if now - (c.first_failed_at if c.first_failed_at is not None else now) >= s.batch_retry_for_s
        ]
        retry = [c for c in claimed if c not in exhausted]
        if retry:
            attempt = max(c.attempts for c in retry) + 1
            backoff = jittered(attempt, s.batch_retry_base_s, s.batch_retry_max_s)
            d.limiter.block(now + backoff)
            store.release(d.table, call_id, retry, count_attempt=True, error=error, now=now)
            d.emit("BatchUnavailable", 1)
            logger.warning(
                "Batch unavailable, will retry",
                extra={**log, "attempt": attempt, "backoff_s": round(backoff, 2), "error": outcome.message},
            )
        # Parked before finished: a crash in between leaves a DLQ entry re-drive finds finished;
        # the other order could lose the chunk.
        for c in exhausted:
            d.queue.dead_letter(
                {"kind": DEAD_CHUNK, "destination": NAME, "execution_id": c.execution_id, "seq": c.seq},
                outcome.message,
            )
        if exhausted:
            failpoint("batch.dispatch.after_dead_letter")
            results = [
                ChunkResult(c, call_id, "dead_lettered", fields={"error": error, "attempts": c.attempts + 1})
                for c in exhausted
            ]
            store.finish(d.table, results, now)
            d.emit("BatchChunksDeadLettered", len(exhausted))
            logger.error("operations dead-lettered after retries", extra={**log, "error": outcome.message})

    def _settle_abandoned(self) -> float | None:
        """Chunks whose dispatcher died between claim and record are marked ambiguous (they may
        have reached Batch), never left 'sending' forever. Returns when to look again at chunks
        another dispatcher still has in flight (None: there are none)."""
        d = self.deps
        now = d.clock()
        bound = d.settings.batch_stale_sending_s
        in_flight = store.sending(d.table, d.lane)
        stale = [c for c in in_flight if (c.claimed_at or 0.0) < now - bound]
        if stale:
            error = {
                "status": None,
                "error_message": "dispatcher stopped between claim and answer; may have been sent",
            }
            store.finish(
                d.table,
                [ChunkResult(c, c.call_id or "", "ambiguous", fields={"error": error}) for c in stale],
                now,
            )
            d.emit("BatchChunksAbandoned", len(stale))
            d.emit("BatchCallsAmbiguous", 1)  # alarmed: maybe applied by Batch, never re-sent
            logger.error("abandoned chunks marked ambiguous", extra={"chunks": len(stale)})
        looks = [(c.claimed_at or now) + bound for c in in_flight if c not in stale]
        return min(looks) if looks else None

    def _wait(self, seconds: float) -> bool:
        """Sleep a short wait here; queue a delayed wake-up for a long one. True if slept."""
        if seconds <= self.deps.settings.batch_dispatch_max_inline_wait_s:
            self.deps.sleep(max(0.0, seconds))
            return True
        self._wake_later(math.floor(seconds))
        return False

    def _wake_later(self, delay_s: float) -> None:
        """Queue the lane's next wake-up, recording first when it is due (the reconciler finds a
        lane whose wake-up never came)."""
        d = self.deps
        delay = min(float(delay_s), MAX_DELAY_S)
        store.expect_wakeup(d.table, d.lane, d.clock() + delay)
        failpoint("batch.dispatch.before_rewake")
        wake(d.queue, delay_s=delay)
