"""Dispatching one group, the run loop: take a slot, claim up to 50 waiting profiles, send, record,
repeat. Which chunks go together is ``packing``; the upstream body and its answer, ``requests``.

Woken by a message "group G has work". Batches are formed when a slot opens, from whatever is
waiting with the same schedule, whichever triggers it came from (packing). A wait longer than
``dispatch_max_inline_wait_s`` is never slept on: a new wake-up is queued with a delay instead.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from aws_lambda_powertools import Logger

from relay.core.backoff import jittered
from relay.core.clock import Clock, iso
from relay.core.failpoints import failpoint
from relay.core.limiter import log_store as limiter
from relay.core.limiter.sliding_log import Log, Rule
from relay.core.store import keys
from relay.core.store.table import Table, TransactionCancelled
from relay.destinations.optimized import links, store
from relay.destinations.optimized.client import (
    Ambiguous,
    Created,
    OptimizedClient,
    Outcome,
    RateLimited,
    Rejected,
    Unavailable,
)
from relay.destinations.optimized.models import (
    BatchRequest,
)
from relay.destinations.optimized.packing import pack
from relay.destinations.optimized.requests import build_request, split_created
from relay.destinations.optimized.settings import OptimizedSettings
from relay.destinations.optimized.store import ChunkResult, ClaimedBatch, PendingChunk
from relay.destinations.optimized.wakeups import Wakeups

logger = Logger(child=True)

# Fewest pending chunks to look at when forming batches (50 single-profile chunks + lookahead);
# a group reads enough to fill every slot of a window with single-profile chunks.
MIN_PENDING_PAGE = 60
# A GSI may lag its table by a moment: do not declare a group idle right after new work.
GSI_SETTLE_S = 2.0
LIMITER_TTL_S = 86_400
MAX_WAKE_DELAY_S = 900.0  # SQS's longest message delay
# How often to re-read a limiter log while another dispatcher's sends in the window are unsettled.
UNSETTLED_POLL_S = 0.1
# At most this much earlier than its slot does a wake-up come to prepare a window's batches (read,
# claim, load: ~0.5 s for ten batches of single-profile chunks on DynamoDB, far more on an emulator).
MAX_EARLY_S = 15.0

Emit = Callable[[str, float], None]


@dataclass
class DispatchDeps:
    table: Table
    queue: Wakeups
    client: OptimizedClient
    settings: OptimizedSettings
    clock: Clock = time.time
    sleep: Callable[[float], None] = time.sleep
    emit: Emit = lambda name, value: None
    links: Table | None = None  # where result links go (LinksTable); None: the main table


class GroupDispatcher:
    def __init__(self, group_id: str, deps: DispatchDeps, early_s: float = 0.0) -> None:
        self.group_id = group_id
        self.deps = deps
        # How long before its slot this dispatcher was woken on purpose (the wake-up's
        # ``early_s``): it may prepare and wait that long for the slot instead of the usual
        # inline wait. Bounded: the lead (<= 4 s) and SQS's whole seconds come on top of MAX_EARLY_S.
        self.early_s = min(MAX_EARLY_S + 5.0, max(0.0, early_s))
        self.prepare_s = 0.0  # how long the last round took from reading to ready-to-send
        s = deps.settings
        margin = s.optimized_window_margin_s
        # Claim to answer: loading, an inline wait, then at most the HTTP timeouts.
        self.unsettled_max = (
            s.dispatch_max_inline_wait_s + s.optimized_connect_timeout_s + s.optimized_read_timeout_s + 5.0
        )
        self.group_rule = Rule(
            s.optimized_group_limit, s.optimized_group_window_s + margin, self.unsettled_max
        )
        self.token_rule = Rule(
            s.optimized_token_limit, s.optimized_token_window_s + margin, self.unsettled_max
        )
        self.page = max(MIN_PENDING_PAGE, s.optimized_group_limit * s.optimized_batch_size)
        self.group_log = f"optimized-group#{group_id}"
        self.token_log = f"optimized-token#{keys.token_fingerprint(s.optimized_token())}"

    def run(self, remaining_ms: Callable[[], int]) -> str:
        """Send until the group is idle, must wait, or the Lambda's time runs short.

        Every slot free right now is taken in one transaction together with the chunks of one
        batch per slot, and those batches go upstream side by side. What was read is reused while
        it stays true (the pending page; the limiter logs after our own claim): anything stale
        shows up as a failed conditional write and is simply read again.
        """
        d = self.deps
        self._settle_abandoned()
        chunks: list[PendingChunk] = []
        more_beyond = False
        logs: dict[str, Log] | None = None
        while True:
            if remaining_ms() < d.settings.dispatch_reserve_ms:
                self._wake_later(0)
                return "time budget spent, handed over"
            round_started = d.clock()
            if not chunks:
                state = store.read_group(d.table, self.group_id)
                chunks = store.pending(d.table, self.group_id, self.page)
                more_beyond = len(chunks) >= self.page
                if not chunks:
                    if d.clock() - float(state.get("last_work_at", 0)) < GSI_SETTLE_S:
                        self._wake_later(GSI_SETTLE_S)
                        return "recent work may not be indexed yet, looking again shortly"
                    settle_at = self._settle_abandoned()
                    if settle_at is not None:
                        # Another dispatcher's sends are unsettled: if it dies, its wake-up may
                        # already be spent, so look again when they must be settled.
                        self._wake_later(max(1.0, settle_at - d.clock()))
                        return "sends of another dispatcher in flight, looking again when they settle"
                    if store.disarm(d.table, self.group_id, int(state.get("work_version", 0))):
                        return "idle"
                    continue
            now = d.clock()
            first, full = pack(chunks, d.settings.optimized_batch_size)
            age = now - min(c.created_at for c in first)
            if not (full or more_beyond) and age < d.settings.dispatch_linger_s:
                # A slot spent on a part-filled batch is throughput lost: wait a moment for more.
                if self._wait(d.settings.dispatch_linger_s - age):
                    chunks = []  # look again: more may have arrived
                    continue
                return "lingering for more profiles"
            if logs is None:
                logs = limiter.read_logs(d.table, [self.group_log, self.token_log])
            group_log, token_log = logs[self.group_log], logs[self.token_log]
            wanted = min(self.group_rule.limit, self._batches_waiting(chunks, more_beyond))
            first_slot = max(
                group_log.next_slot(self.group_rule, now), token_log.next_slot(self.token_rule, now)
            )
            # Slots free up one by one as the last window's sends age out; when all we want are
            # only a moment later than the first, take them together in one round.
            all_slots = max(
                group_log.slot_for(self.group_rule, now, wanted),
                token_log.slot_for(self.token_rule, now, wanted),
            )
            at = all_slots if all_slots - first_slot <= d.settings.dispatch_gather_s else first_slot
            if at - now > self._inline_wait_allowed(remaining_ms):
                self._wait(at - now)
                return f"waiting {at - now:.1f}s for a slot"
            free = min(group_log.free(self.group_rule, at), token_log.free(self.token_rule, at))
            batches = self._form_batches(chunks, free, more_beyond, now)
            if not batches:
                # Another dispatcher's unsettled sends hold the window: let them settle first.
                d.sleep(UNSETTLED_POLL_S)
                logs = None
                continue
            # Claimed now, stamped at the slot, sent when it opens: the claim is off the clock.
            taken = {
                self.group_log: group_log.with_hits(self.group_rule, at, len(batches), now=now),
                self.token_log: token_log.with_hits(self.token_rule, at, len(batches), now=now),
            }
            try:
                claimed = store.claim(d.table, batches, taken, now, expires_at=int(now + LIMITER_TTL_S))
            except TransactionCancelled as cancelled:
                logger.debug("claim lost a race, reading again", extra={"reasons": cancelled.reasons})
                d.emit("ClaimConflicts", 1)
                if any(i < len(taken) for i in cancelled.failed_at()):
                    logs = None
                if any(i >= len(taken) for i in cancelled.failed_at()) or not cancelled.failed_at():
                    chunks = []
                continue
            failpoint("dispatch.after_claim")
            logs = {name: replace(log, version=log.version + 1) for name, log in taken.items()}
            if len(claimed) < len(batches):
                d.emit("ClaimConflicts", 1)
                chunks = []  # another dispatcher took some: read the queue again
            else:
                taken_ids = {id(c) for b in claimed for c in b.chunks}
                chunks = [c for c in chunks if id(c) not in taken_ids]
            store.load_contents(d.table, claimed)
            self.prepare_s = d.clock() - round_started
            d.sleep(max(0.0, at - d.clock()))
            limiter_moved, answered_at = self._send_all(claimed)
            failpoint("dispatch.after_record")
            self.early_s = 0.0  # spent on the slot it was woken for
            logs = limiter.settle(
                d.table,
                [self.group_log, self.token_log],
                at,
                answered_at,
                expires_at=int(now + LIMITER_TTL_S),
                unused=len(batches) - len(claimed),
            )
            failpoint("dispatch.after_settle")
            if limiter_moved:
                logs = None  # a 429 or a back-off blocked the group: read it again

    def _inline_wait_allowed(self, remaining_ms: Callable[[], int]) -> float:
        """How far off a slot may be and still be prepared and waited for here: the usual inline
        wait, or the early allowance this dispatcher was woken with - but never so long that the
        send and its answer would not fit in the Lambda's remaining time."""
        s = self.deps.settings
        http_s = s.optimized_connect_timeout_s + s.optimized_read_timeout_s
        after_slot_s = s.dispatch_reserve_ms / 1000 + http_s
        budget_s = remaining_ms() / 1000 - after_slot_s
        return max(s.dispatch_max_inline_wait_s, min(self.early_s, budget_s))

    def _batches_waiting(self, chunks: list[PendingChunk], more_beyond: bool) -> int:
        size = self.deps.settings.optimized_batch_size
        if more_beyond:
            return self.group_rule.limit
        return max(1, -(-sum(c.size for c in chunks) // size))

    def _settle_abandoned(self) -> float | None:
        """Chunks whose dispatcher died between claim and record are marked ambiguous, never
        left 'sending' forever (and never silently re-sent: they may have reached the upstream).

        Returns when to look again at chunks another dispatcher still has in flight (None: there
        are none): when that dispatcher must have recorded them if it is alive, and failing that,
        when they count as abandoned. So a group is never left idle while it may need settling,
        even if the dying dispatcher's wake-up was the one this run came from."""
        d = self.deps
        now = d.clock()
        bound = d.settings.dispatch_stale_sending_s
        in_flight = store.sending(d.table, self.group_id)
        stale = [c for c in in_flight if (c.claimed_at or 0.0) < now - bound]
        if stale:
            error = {
                "status": None,
                "message": "dispatcher stopped between claim and answer; may have been sent",
            }
            store.finish(
                d.table, [ChunkResult(c, c.batch_id or "", "ambiguous", {"error": error}) for c in stale], now
            )
            d.emit("ChunksAbandoned", len(stale))
            logger.error(
                "abandoned chunks marked ambiguous", extra={"group_id": self.group_id, "chunks": len(stale)}
            )
        looks = []
        for c in in_flight:
            if c in stale:
                continue
            claimed = c.claimed_at or now
            recorded_by = claimed + self.unsettled_max
            looks.append(recorded_by if now < recorded_by else claimed + bound)
        return min(looks) if looks else None

    def _form_batches(
        self, chunks: list[PendingChunk], slots: int, more_beyond: bool, now: float
    ) -> list[ClaimedBatch]:
        """Up to ``slots`` batches. After the first (which the caller chose to send), only full
        ones, or part-filled ones that waited their linger with nothing more in the queue: while
        more waits beyond what was read, a slot spent on a part batch would be throughput lost."""
        size, linger = self.deps.settings.optimized_batch_size, self.deps.settings.dispatch_linger_s
        left = list(chunks)
        batches: list[ClaimedBatch] = []
        while left and len(batches) < slots:
            batch, full = pack(left, size)
            waited = now - min(c.created_at for c in batch) >= linger
            if batches and not (full or (waited and not more_beyond)):
                break
            batches.append(ClaimedBatch(str(uuid.uuid4()), batch))
            taken = {id(c) for c in batch}
            left = [c for c in left if id(c) not in taken]
        return batches

    def _wait(self, seconds: float) -> bool:
        """Sleep a short wait here; queue a delayed wake-up for a long one. True if slept.

        The wake-up comes early by the lead (SQS delivery) plus what preparing the last round
        took, so a window's batches are claimed and loaded when its slot opens, not after."""
        settings = self.deps.settings
        if seconds <= settings.dispatch_max_inline_wait_s:
            self.deps.sleep(max(0.0, seconds))
            return True
        early = min(MAX_EARLY_S, self.prepare_s)
        delay = max(0, math.floor(seconds - settings.dispatch_wake_lead_s - early))
        # The woken dispatcher is told how long before the slot it comes (lead and rounding
        # included), so it prepares and waits instead of queueing yet another wake-up.
        woken_before_slot = seconds - delay if early > 0 else 0.0
        self._wake_later(delay, early_s=woken_before_slot)
        return False

    def _wake_later(self, delay_s: float, *, early_s: float = 0.0) -> None:
        """Queue the group's next wake-up, recording first when it is due: the message this run
        came from is deleted only after this returns, and the record keeps the group out of the
        reconciler's overdue list while it waits (up to 15 min) for a slot."""
        d = self.deps
        delay = min(float(delay_s), MAX_WAKE_DELAY_S)
        store.expect_wakeup(d.table, self.group_id, d.clock() + delay)
        failpoint("dispatch.before_rewake")
        d.queue.wake(self.group_id, delay_s=delay, early_s=early_s)

    def _send_all(self, batches: Sequence[ClaimedBatch]) -> tuple[bool, list[float]]:
        """Send claimed batches side by side and record every outcome.

        Returns whether the limiter was moved (429, back-off) and when each answer arrived."""
        d = self.deps
        now = d.clock()
        requests = [build_request(b.chunks, now) for b in batches]

        def send(request: BatchRequest) -> tuple[Outcome, float]:
            try:
                outcome = d.client.create_batch(self.group_id, request, now=now)
            except Exception as exc:  # a bug reading the answer must not lose the siblings' outcomes
                logger.exception("sending a batch raised", extra={"group_id": self.group_id})
                outcome = Ambiguous(f"the relay failed reading the upstream's answer: {type(exc).__name__}")
            return outcome, d.clock()

        if len(batches) == 1:
            answers = [send(requests[0][0])]
        else:
            with ThreadPoolExecutor(max_workers=len(batches)) as pool:
                answers = list(pool.map(lambda r: send(r[0]), requests))
        outcomes = [outcome for outcome, _ in answers]
        failpoint("dispatch.after_send")
        done = d.clock()
        finished: list[ChunkResult] = []
        limiter_moved = False
        for batch, (_, shifted, start_at), outcome in zip(batches, requests, outcomes, strict=True):
            log = {
                "group_id": self.group_id,
                "batch_id": batch.batch_id,
                "profiles": batch.profiles,
                "chunks": len(batch.chunks),
            }
            if isinstance(outcome, Created):
                finished += split_created(batch, outcome, shifted, start_at, done)
                d.emit("BatchesSent", 1)
                d.emit("ProfilesSent", batch.profiles)
                logger.info("batch sent", extra={**log, "batch_uuid": outcome.batch.uuid})
            elif isinstance(outcome, RateLimited):
                # Our limiter and the upstream disagree: trust the upstream and wait as it says.
                limiter.block(d.table, self.group_log, outcome.retry_at, expires_at=int(done + LIMITER_TTL_S))
                store.release(d.table, batch.batch_id, batch.chunks, count_attempt=False, error=None)
                d.emit("UpstreamRateLimited", 1)
                logger.warning("upstream answered 429", extra={**log, "retry_at": iso(outcome.retry_at)})
                limiter_moved = True
            elif isinstance(outcome, Rejected):
                error = {"status": outcome.status, "message": outcome.message}
                finished += [ChunkResult(c, batch.batch_id, "failed", {"error": error}) for c in batch.chunks]
                d.emit("BatchesRejected", 1)
                logger.error("upstream rejected batch", extra={**log, "upstream_status": outcome.status})
            elif isinstance(outcome, Unavailable) or d.settings.optimized_resend_ambiguous:
                finished += self._retry_later(batch, outcome, log, done)
                limiter_moved = True
            else:
                error = {"status": None, "message": outcome.message}
                finished += [
                    ChunkResult(c, batch.batch_id, "ambiguous", {"error": error}) for c in batch.chunks
                ]
                d.emit("BatchesAmbiguous", 1)
                logger.error("batch outcome ambiguous, not re-sent", extra={**log, "error": outcome.message})
        if finished:
            # Links first: a result must find its profile even if the dispatcher dies before the
            # chunks are recorded (they are then settled as ambiguous, links and all).
            links.record_sent(
                d.links or d.table,
                finished,
                done,
                ttl_days=d.settings.execution_ttl_days,
                profiles=d.settings.results_link_profiles,
            )
            failpoint("dispatch.after_links")
            store.finish(d.table, finished, done)
        return limiter_moved, [answered for _, answered in answers]

    def _retries_spent(self, chunk: PendingChunk, now: float) -> bool:
        """Retries are bounded by time (an outage of hours is ridden out), and by a count only
        where one is configured."""
        s = self.deps.settings
        first_failed = chunk.first_failed_at if chunk.first_failed_at is not None else now
        if now - first_failed >= s.optimized_retry_for_s:
            return True
        return 0 < s.optimized_max_attempts <= chunk.attempts + 1

    def _retry_later(
        self, batch: ClaimedBatch, outcome: Unavailable | Ambiguous, log: dict, now: float
    ) -> list[ChunkResult]:
        """Release what may be retried (backing the group off); dead-letter what may not."""
        d, s = self.deps, self.deps.settings
        error = {"status": getattr(outcome, "status", None), "message": outcome.message}
        exhausted = [c for c in batch.chunks if self._retries_spent(c, now)]
        retry = [c for c in batch.chunks if c not in exhausted]
        if retry:
            store.release(d.table, batch.batch_id, retry, count_attempt=True, error=error, now=now)
            attempt = max(c.attempts for c in retry) + 1
            backoff = jittered(attempt, s.optimized_retry_base_s, s.optimized_retry_max_s)
            limiter.block(d.table, self.group_log, now + backoff, expires_at=int(now + LIMITER_TTL_S))
            d.emit("UpstreamUnavailable", 1)
            logger.warning(
                "upstream unavailable, will retry",
                extra={**log, "attempt": attempt, "backoff_s": round(backoff, 2), "error": outcome.message},
            )
        # Park in the DLQ before finishing: a crash in between leaves a DLQ entry for a chunk
        # that re-drive finds already finished; the other order could lose the chunk entirely.
        for c in exhausted:
            d.queue.dead_letter_chunk(c.execution_id, c.seq, c.group_id, outcome.message)
        if exhausted:
            d.emit("ChunksDeadLettered", len(exhausted))
            logger.error("chunks dead-lettered after retries", extra={**log, "error": outcome.message})
        return [ChunkResult(c, batch.batch_id, "dead_lettered", {"error": error}) for c in exhausted]
