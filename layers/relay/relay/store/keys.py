"""Key layout of the single table (pk/sk, gsi1 = executions newest first, gsi2 = pending chunks)."""

from __future__ import annotations

import hashlib

EXECUTIONS_INDEX = "gsi1"
PENDING_INDEX = "gsi2"
EXECUTIONS_PARTITION = "EXECUTIONS"
META = "META"


def execution(execution_id: str) -> dict[str, str]:
    return {"pk": f"EXEC#{execution_id}", "sk": META}


def chunk(execution_id: str, seq: int) -> dict[str, str]:
    return {"pk": f"EXEC#{execution_id}", "sk": chunk_sk(seq)}


def chunk_sk(seq: int) -> str:
    return f"CHUNK#{seq:06d}"


def group_state(group_id: str) -> dict[str, str]:
    return {"pk": f"GROUP#{group_id}", "sk": "STATE"}


def limiter(name: str) -> dict[str, str]:
    return {"pk": f"LIMIT#{name}", "sk": "LOG"}


def pending_partition(group_id: str) -> str:
    return f"PENDING#{group_id}"


def sending_partition(group_id: str) -> str:
    """Chunks claimed but not finished: findable, so one stuck by a crash is never forgotten."""
    return f"SENDING#{group_id}"


def pending_sort(created_iso: str, execution_id: str, seq: int) -> str:
    return f"{created_iso}#{execution_id}#{seq:06d}"


def token_fingerprint(token: str | None) -> str:
    """Limiter key for a token: a hash, never the token itself."""
    return hashlib.sha256((token or "").encode()).hexdigest()[:16]
