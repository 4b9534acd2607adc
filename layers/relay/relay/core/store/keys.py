"""Every key of the relay's tables, in one place.

RelayTable (single table): ``pk``/``sk``; gsi1 lists executions newest first; gsi2 holds work
that waits for something: pending and sending chunks per Optimized.app group (by creation) and
scheduled Optimove triggers (by send time); gsi3 (keys only) lists executions by run time and
results a destination could not mirror. LinksTable: upstream ids -> what caused them.
"""

from __future__ import annotations

import hashlib
import zlib

EXECUTIONS_INDEX = "gsi1"
WAITING_INDEX = "gsi2"  # pending/sending chunks per group, scheduled triggers per destination
RUN_TIMES_INDEX = "gsi3"  # executions with a run time, per UTC day of it
MIRROR_SKIPPED_INDEX = RUN_TIMES_INDEX  # results not mirrored (their own partitions, keys only)
# Index partitions every trigger writes are spread over this many shards (merged when read): one
# index partition takes about 1,000 writes a second, so an unsharded one would throttle - and,
# through back-pressure, trigger acceptance - near 1,000 triggers a second.
SHARDS = 8
# Executions listed before the listing was sharded stay under this partition and are still read.
EXECUTIONS_PARTITION = "EXECUTIONS"
META = "META"
RESULTS_UNMATCHED_PARTITION = "RESULTS#UNMATCHED"
RESULT_PREFIX = "RESULT#"
CHUNK_PREFIX = "CHUNK#"


# --- Executions and their chunks ------------------------------------------------------------------


def shard_of(identifier: str) -> int:
    return zlib.crc32(identifier.encode()) % SHARDS


def executions_listing(execution_id: str, created_iso: str) -> dict[str, str]:
    """gsi1 keys of an execution: newest first within its shard of the listing."""
    return {
        "gsi1pk": f"{EXECUTIONS_PARTITION}#{shard_of(execution_id)}",
        "gsi1sk": executions_sort(created_iso, execution_id),
    }


def executions_partitions() -> list[str]:
    """Every gsi1 partition of the listing, the one from before sharding included."""
    return [EXECUTIONS_PARTITION, *(f"{EXECUTIONS_PARTITION}#{n}" for n in range(SHARDS))]


def execution_partition(execution_id: str) -> str:
    return f"EXEC#{execution_id}"


def execution(execution_id: str) -> dict[str, str]:
    return {"pk": execution_partition(execution_id), "sk": META}


def executions_sort(created_iso: str, execution_id: str) -> str:
    return f"{created_iso}#{execution_id}"


def chunk(execution_id: str, seq: int) -> dict[str, str]:
    return {"pk": execution_partition(execution_id), "sk": chunk_sk(seq)}


def chunk_sk(seq: int) -> str:
    return f"{CHUNK_PREFIX}{seq:06d}"


# --- Waiting work (gsi2) --------------------------------------------------------------------------


def pending_partition(group_id: str) -> str:
    return f"PENDING#{group_id}"


def sending_partition(group_id: str) -> str:
    """Chunks claimed but not finished: findable, so one stuck by a crash is never forgotten."""
    return f"SENDING#{group_id}"


def pending_sort(created_iso: str, execution_id: str, seq: int) -> str:
    return f"{created_iso}#{execution_id}#{seq:06d}"


# Groups with work and a wake-up on its way, sorted by when it is due: one a crash left without
# its wake-up shows up here overdue, and the reconciler wakes it.
AWAITING_WAKEUP_PARTITION = "GROUPS#AWAITING_WAKEUP"


def awaiting_wakeup_partition(identifier: str) -> str:
    """The shard of a group's entry (by group id) or an accepted execution's (by execution id)."""
    return f"{AWAITING_WAKEUP_PARTITION}#{shard_of(identifier)}"


def awaiting_wakeup_partitions() -> list[str]:
    return [f"{AWAITING_WAKEUP_PARTITION}#{n}" for n in range(SHARDS)]


def awaiting_wakeup_sort(due_iso: str, group_id: str) -> str:
    return f"{due_iso}#{group_id}"


def run_time(run_iso: str, execution_id: str) -> dict[str, str]:
    """The run-time index keys of an execution that runs at ``run_iso`` (ISO 8601, UTC): by day,
    spread over shards (a campaign day may take many triggers a second)."""
    return {
        "gsi3pk": f"RUNS#{run_iso[:10]}#{shard_of(execution_id)}",
        "gsi3sk": f"{run_iso}#{execution_id}",
    }


def run_day_partitions(day: str) -> list[str]:
    return [f"RUNS#{day}#{n}" for n in range(SHARDS)]


def scheduled_partition(destination: str) -> str:
    return f"SCHEDULED#{destination}"


def scheduled_sort(send_at_iso: str, execution_id: str) -> str:
    return f"{send_at_iso}#{execution_id}"


# --- Dispatch state and rate limiters -------------------------------------------------------------


def group_state(group_id: str) -> dict[str, str]:
    return {"pk": f"GROUP#{group_id}", "sk": "STATE"}


def limiter(name: str) -> dict[str, str]:
    return {"pk": f"LIMIT#{name}", "sk": "LOG"}


def limiter_bucket(name: str, index: int) -> dict[str, str]:
    return {"pk": f"LIMIT#{name}", "sk": f"BUCKET#{index}"}


def token_fingerprint(token: str | None) -> str:
    """Limiter key for a token: a hash, never the token itself."""
    return hashlib.sha256((token or "").encode()).hexdigest()[:16]


# --- Per-destination records ----------------------------------------------------------------------


def dedupe(destination: str, key_hash: str) -> dict[str, str]:
    return {"pk": f"DEDUPE#{destination}#{key_hash}", "sk": "KEY"}


def generator_schema(generator_id: str) -> dict[str, str]:
    return {"pk": f"OPTIMOVE_SCHEMA#{generator_id}", "sk": "SCHEMA"}


def due_partition(destination: str, execution_id: str) -> str:
    """gsi2: a destination's runs under way (queued, sending, followed by polls), by when the next
    step of each is due: one a crash left with nothing in flight shows up overdue (the reconciler).
    Each run moves its entry several times, so the entries are spread over shards."""
    return f"DUE#{destination}#{shard_of(execution_id)}"


def due_partitions(destination: str) -> list[str]:
    return [f"DUE#{destination}#{n}" for n in range(SHARDS)]


def due_sort(due_iso: str, execution_id: str) -> str:
    return f"{due_iso}#{execution_id}"


def execution_part(execution_id: str, n: int) -> dict[str, str]:
    """Part ``n`` of what an execution carries that outgrows one item (an audience write's ids)."""
    return {"pk": execution_partition(execution_id), "sk": f"PART#{n:06d}"}


def audience_sequence(name: str) -> dict[str, str]:
    """An audience's sequence: how many writes were accepted, and up to which one the next may go."""
    return {"pk": f"AUDIENCE#{name}", "sk": "SEQUENCE"}


def audience_write(name: str, seq: int) -> dict[str, str]:
    """Write number ``seq`` of an audience (its execution id): the one after a write is found here."""
    return {"pk": f"AUDIENCE#{name}", "sk": f"WRITE#{seq:012d}"}


# --- Results --------------------------------------------------------------------------------------


def webhook_seen(source: str, event_id: str) -> dict[str, str]:
    return {"pk": f"WEBHOOK#{source}#{event_id}", "sk": "DEDUPE"}


# Webhook results stored and not yet recorded by the deliver worker (gsi2, sparse), spread over a
# few partitions so a burst of thousands of events is not one hot index partition.
UNRECORDED_SHARDS = 8


def unrecorded_partition(source: str, shard: int) -> str:
    return f"RESULTS#UNRECORDED#{source}#{shard}"


def unrecorded_shard(event_id: str) -> int:
    return int(hashlib.sha256(event_id.encode()).hexdigest()[:8], 16) % UNRECORDED_SHARDS


def unrecorded_sort(since_iso: str, event_id: str) -> str:
    return f"{since_iso}#{event_id}"


def result(execution_id: str | None, received_iso: str, event_id: str) -> dict[str, str]:
    pk = execution_partition(execution_id) if execution_id else RESULTS_UNMATCHED_PARTITION
    return {"pk": pk, "sk": f"{RESULT_PREFIX}{received_iso}#{event_id}"}


# Every result, by the day it was received, spread over a few partitions (gsi2, sort key
# "<received>#<type>#<event_id>"): POST /v1/results/replay finds a window's results there.
RECEIVED_SHARDS = 8


def received_partition(day: str, shard: int) -> str:
    return f"RESULTS#RECEIVED#{day}#{shard}"


def received_index(received_iso: str, type_: str, event_id: str) -> dict[str, str]:
    shard = int(hashlib.sha256(event_id.encode()).hexdigest()[:8], 16) % RECEIVED_SHARDS
    return {
        "gsi2pk": received_partition(received_iso[:10], shard),
        "gsi2sk": f"{received_iso}#{type_}#{event_id}",
    }


# Results a destination could not mirror (e.g. no Batch custom id): sparse gsi3 keys on the result
# item itself (no item of their own), spread like the listing of executions, merged when read.
MIRROR_SKIPPED_PARTITION = "RESULTS#MIRROR_SKIPPED"


def mirror_skipped_index(received_iso: str, event_id: str) -> dict[str, str]:
    return {
        "gsi3pk": f"{MIRROR_SKIPPED_PARTITION}#{shard_of(event_id)}",
        "gsi3sk": f"{received_iso}#{event_id}",
    }


def mirror_skipped_partitions() -> list[str]:
    return [f"{MIRROR_SKIPPED_PARTITION}#{n}" for n in range(SHARDS)]


def forwarding_state(url: str) -> dict[str, str]:
    # Keyed by the URL: configuring a new endpoint turns forwarding back on.
    return {"pk": "FORWARDING#" + hashlib.sha256(url.encode()).hexdigest()[:16], "sk": "STATE"}


# --- LinksTable -----------------------------------------------------------------------------------

LINK_SK = "LINK"


def profile_link(uuid: str) -> dict[str, str]:
    return {"pk": f"LINK#profile#{uuid}", "sk": LINK_SK}


def external_link(external_id: str) -> dict[str, str]:
    return {"pk": f"LINK#external#{external_id}", "sk": LINK_SK}


def batch_link(batch_uuid: str) -> dict[str, str]:
    return {"pk": f"LINK#batch#{batch_uuid}", "sk": LINK_SK}
