"""Dispatching one group: take a slot, claim up to 50 waiting profiles, send, record, repeat.

Woken by a message "group G has work". Batches are formed when a slot opens, from whatever is
waiting with the same schedule, whichever triggers it came from (packing). A wait longer than
``dispatch_max_inline_wait_s`` is never slept on: a new wake-up is queued with a delay instead.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from relay.clock import Clock, iso
from relay.config import Settings
from relay.limits import Rule
from relay.models.optimized import BatchRequest, UpstreamCampaign, UpstreamSchedule, ceil_to_second
from relay.models.optimized import upstream_start_at as format_start_at
from relay.queues import WakeQueue
from relay.store import dispatch as store
from relay.store import keys, limiter
from relay.store.dispatch import ChunkResult, PendingChunk
from relay.store.table import Table, TransactionCancelled
from relay.upstreams.optimized import Ambiguous, Created, OptimizedClient, RateLimited, Rejected, Unavailable

logger = Logger(child=True)

# How many pending chunks to look at when forming a batch (50 single-profile chunks + lookahead).
PENDING_PAGE = 64
# A GSI may lag its table by a moment: do not declare a group idle right after new work.
GSI_SETTLE_S = 2.0
LIMITER_TTL_S = 86_400

Emit = Callable[[str, float], None]


@dataclass
class DispatchDeps:
    table: Table
    queue: WakeQueue
    client: OptimizedClient
    settings: Settings
    clock: Clock = time.time
    sleep: Callable[[float], None] = time.sleep
    emit: Emit = lambda name, value: None


class GroupDispatcher:
    def __init__(self, group_id: str, deps: DispatchDeps) -> None:
        self.group_id = group_id
        self.deps = deps
        s = deps.settings
        margin = s.optimized_window_margin_s
        self.group_rule = Rule(s.optimized_group_limit, s.optimized_group_window_s + margin)
        self.token_rule = Rule(s.optimized_token_limit, s.optimized_token_window_s + margin)
        self.group_log = f"optimized-group#{group_id}"
        self.token_log = f"optimized-token#{keys.token_fingerprint(s.optimized_token())}"

    def run(self, remaining_ms: Callable[[], int]) -> str:
        """Send until the group is idle, must wait, or the Lambda's time runs short."""
        d = self.deps
        while True:
            if remaining_ms() < d.settings.dispatch_reserve_ms:
                d.queue.wake(self.group_id)
                return "time budget spent, handed over"
            state = store.read_group(d.table, self.group_id)
            chunks = store.pending(d.table, self.group_id, PENDING_PAGE)
            now = d.clock()
            if not chunks:
                if now - float(state.get("last_work_at", 0)) < GSI_SETTLE_S:
                    d.queue.wake(self.group_id, delay_s=GSI_SETTLE_S)
                    return "recent work may not be indexed yet, looking again shortly"
                if store.disarm(d.table, self.group_id, int(state.get("work_version", 0))):
                    return "idle"
                continue
            batch, lane_full = pack(chunks, d.settings.optimized_batch_size, len(chunks) >= PENDING_PAGE)
            age = now - min(c.created_at for c in batch)
            if not lane_full and age < d.settings.dispatch_linger_s:
                # A slot spent on a part-filled batch is throughput lost: wait a moment for more.
                if self._wait(d.settings.dispatch_linger_s - age):
                    continue
                return "lingering for more profiles"
            logs = limiter.read_logs(d.table, [self.group_log, self.token_log])
            slot = max(
                logs[self.group_log].next_slot(self.group_rule, now),
                logs[self.token_log].next_slot(self.token_rule, now),
            )
            if slot > now:
                if not self._wait(slot - now):
                    return f"waiting {slot - now:.1f}s for a slot"
                continue
            batch_id = str(uuid.uuid4())
            try:
                store.claim(
                    d.table,
                    batch,
                    batch_id,
                    {
                        self.group_log: logs[self.group_log].with_hit(self.group_rule, now),
                        self.token_log: logs[self.token_log].with_hit(self.token_rule, now),
                    },
                    now,
                    expires_at=int(now + LIMITER_TTL_S),
                )
            except TransactionCancelled as cancelled:
                logger.debug("claim lost a race, retrying", extra={"reasons": cancelled.reasons})
                d.emit("ClaimConflicts", 1)
                continue
            self._send(batch, batch_id)

    def _wait(self, seconds: float) -> bool:
        """Sleep a short wait here; queue a delayed wake-up for a long one. True if slept."""
        if seconds <= self.deps.settings.dispatch_max_inline_wait_s:
            self.deps.sleep(max(0.0, seconds))
            return True
        self.deps.queue.wake(self.group_id, delay_s=seconds)
        return False

    def _send(self, batch: Sequence[PendingChunk], batch_id: str) -> None:
        d = self.deps
        now = d.clock()
        request, shifted, start_at = build_request(batch, now)
        profiles = sum(c.size for c in batch)
        log = {"group_id": self.group_id, "batch_id": batch_id, "profiles": profiles, "chunks": len(batch)}
        outcome = d.client.create_batch(self.group_id, request, now=now)
        done = d.clock()

        if isinstance(outcome, Created):
            results = split_created(batch, outcome, shifted, start_at, done)
            store.finish(d.table, batch_id, results, done)
            d.emit("BatchesSent", 1)
            d.emit("ProfilesSent", profiles)
            logger.info("batch sent", extra={**log, "batch_uuid": outcome.batch.uuid})
        elif isinstance(outcome, RateLimited):
            # Our limiter and the upstream disagree: trust the upstream and wait as it says.
            limiter.block(d.table, self.group_log, outcome.retry_at, expires_at=int(done + LIMITER_TTL_S))
            store.release(d.table, batch_id, batch, count_attempt=False, error=None)
            d.emit("UpstreamRateLimited", 1)
            logger.warning("upstream answered 429", extra={**log, "retry_at": iso(outcome.retry_at)})
        elif isinstance(outcome, Rejected):
            error = {"status": outcome.status, "message": outcome.message}
            store.finish(d.table, batch_id, [ChunkResult(c, "failed", {"error": error}) for c in batch], done)
            d.emit("BatchesRejected", 1)
            logger.error("upstream rejected batch", extra={**log, "upstream_status": outcome.status})
        elif isinstance(outcome, Unavailable) or (
            isinstance(outcome, Ambiguous) and d.settings.optimized_resend_ambiguous
        ):
            self._retry_later(batch, batch_id, outcome, log, done)
        else:
            assert isinstance(outcome, Ambiguous)
            error = {"status": None, "message": outcome.message}
            store.finish(
                d.table, batch_id, [ChunkResult(c, "ambiguous", {"error": error}) for c in batch], done
            )
            d.emit("BatchesAmbiguous", 1)
            logger.error("batch outcome ambiguous, not re-sent", extra={**log, "error": outcome.message})

    def _retry_later(
        self, batch: Sequence[PendingChunk], batch_id: str, outcome: Any, log: dict, now: float
    ) -> None:
        d, s = self.deps, self.deps.settings
        status = getattr(outcome, "status", None)
        error = {"status": status, "message": outcome.message}
        exhausted = [c for c in batch if c.attempts + 1 >= s.optimized_max_attempts]
        retry = [c for c in batch if c.attempts + 1 < s.optimized_max_attempts]
        if exhausted:
            dead = [
                ChunkResult(c, "dead_lettered", {"error": error, "attempts": c.attempts + 1})
                for c in exhausted
            ]
            # Park before finishing: a crash in between leaves a DLQ entry for a sent-state chunk,
            # which re-drive ignores; the other order could lose the chunk from every queue.
            for c in exhausted:
                d.queue.dead_letter_chunk(c.execution_id, c.seq, c.group_id, outcome.message)
            store.finish(d.table, batch_id, dead, now)
            d.emit("ChunksDeadLettered", len(exhausted))
            logger.error("chunks dead-lettered after retries", extra={**log, "error": outcome.message})
        if retry:
            store.release(d.table, batch_id, retry, count_attempt=True, error=error)
            attempt = max(c.attempts for c in retry) + 1
            backoff = min(s.optimized_retry_max_s, s.optimized_retry_base_s * 2 ** (attempt - 1))
            backoff *= random.uniform(0.5, 1.0)  # full jitter keeps groups from retrying in step
            limiter.block(d.table, self.group_log, now + backoff, expires_at=int(now + LIMITER_TTL_S))
            d.emit("UpstreamUnavailable", 1)
            logger.warning(
                "upstream unavailable, will retry",
                extra={**log, "attempt": attempt, "backoff_s": round(backoff, 2), "error": outcome.message},
            )


def pack(chunks: Sequence[PendingChunk], size: int, more_beyond: bool) -> tuple[list[PendingChunk], bool]:
    """Oldest chunk's lane, filled in order up to ``size`` profiles. Returns (batch, full_or_more)."""
    lane = chunks[0].lane
    batch: list[PendingChunk] = []
    total = 0
    lane_total = 0
    for c in chunks:
        if c.lane != lane:
            continue
        lane_total += c.size
        if total + c.size <= size:
            batch.append(c)
            total += c.size
    return batch, total >= size or lane_total > total or more_beyond


def build_request(batch: Sequence[PendingChunk], now: float) -> tuple[BatchRequest, bool, float | None]:
    """The upstream body; a start_at already past is moved to now (and reported as shifted)."""
    profiles = [{k: v for k, v in p.items() if k not in ("index", "ref")} for c in batch for p in c.profiles]
    schedule = batch[0].schedule
    if not schedule:
        return BatchRequest(profiles=profiles), False, None
    start_at = schedule.get("start_at")
    shifted = start_at is not None and start_at < now
    if start_at is None or shifted:
        start_at = ceil_to_second(now)
    upstream = UpstreamSchedule(
        start_at=format_start_at(start_at),
        campaign=UpstreamCampaign(uuid=schedule["campaign_uuid"]),
        calls_per_minute=schedule.get("calls_per_minute"),
    )
    return BatchRequest(profiles=profiles, schedule=upstream), shifted, start_at


def split_created(
    batch: Sequence[PendingChunk], outcome: Created, shifted: bool, start_at: float | None, now: float
) -> list[ChunkResult]:
    """Map the upstream's profiles (same order as sent) back to each chunk and input profile."""
    upstream = outcome.batch.profiles
    schedule_uuid = outcome.batch.schedule.uuid if outcome.batch.schedule else None
    results = []
    offset = 0
    for c in batch:
        refs = []
        for i, p in enumerate(c.profiles):
            match = upstream[offset + i] if offset + i < len(upstream) else None
            refs.append(
                {
                    "index": p.get("index"),
                    "ref": p.get("ref"),
                    "uuid": match.uuid if match else None,
                    "external_id": match.external_id if match else None,
                }
            )
        offset += c.size
        fields = {
            "batch_uuid": outcome.batch.uuid,
            "schedule_uuid": schedule_uuid,
            "upstream_profiles": refs,
            "sent_at": now,
            "start_shifted": shifted,
            "sent_start_at": iso(start_at) if start_at else None,
        }
        results.append(ChunkResult(c, "sent", fields))
    return results
