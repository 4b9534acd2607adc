"""The sandbox Batch's audience endpoints, without a server: indexing states over a fake clock,
the order of writes, the 10,000-id limit and list paging."""

from __future__ import annotations

from relay_local.sandbox_batch_audiences import SandboxAudiences


def test_tokens_move_from_in_progress_to_applied_or_replaced() -> None:
    now = [0.0]
    sandbox = SandboxAudiences(indexing_s=2, clock=lambda: now[0])
    assert sandbox.handle("POST", "/audiences/create", {}, {"name": "a1", "type": "custom_ids"})[0] == 202
    status, update = sandbox.handle(
        "POST", "/audiences/update", {}, {"name": "a1", "ids": [{"action": "add", "id": "x"}]}
    )
    assert status == 202
    token = update["indexing_token"]
    view = sandbox.handle("GET", "/audiences/view", {"name": "a1", "indexing_token": token}, None)
    assert view[0] == 200
    assert view[1]["indexing_state"] == "IN_PROGRESS"
    now[0] = 1.0
    sandbox.handle("POST", "/audiences/replace", {}, {"name": "a1", "ids": [{"id": "y"}]})
    assert (
        sandbox.handle("GET", "/audiences/view", {"name": "a1", "indexing_token": token}, None)[1][
            "indexing_state"
        ]
        == "REPLACED"
    )
    now[0] = 3.1
    [replace_call] = [c for c in sandbox.calls if c.path == "/audiences/replace"]
    view = sandbox.handle(
        "GET", "/audiences/view", {"name": "a1", "indexing_token": replace_call.indexing_token}, None
    )
    assert view[1]["indexing_state"] == "APPLIED"
    assert view[1]["nb_ids"] == 1
    assert sandbox.members("a1") == {"y": {}}


def test_writes_are_checked_as_batch_documents_them() -> None:
    sandbox = SandboxAudiences(max_ids=2)
    assert (
        sandbox.handle("POST", "/audiences/create", {}, {"name": "bad name", "type": "custom_ids"})[0] == 400
    )
    assert sandbox.handle("POST", "/audiences/create", {}, {"name": "a1", "type": "segments"})[0] == 400
    assert sandbox.handle("POST", "/audiences/create", {}, {"name": "a1", "type": "custom_ids"})[0] == 202
    assert sandbox.handle("POST", "/audiences/create", {}, {"name": "a1", "type": "custom_ids"})[1] == {
        "error_code": "AUDIENCE_ALREADY_EXISTS",
        "error_message": "audience a1 exists",
    }
    too_many = {"name": "a1", "ids": [{"action": "add", "id": str(i)} for i in range(3)]}
    assert sandbox.handle("POST", "/audiences/update", {}, too_many)[0] == 400
    assert (
        sandbox.handle("POST", "/audiences/update", {}, {"name": "A1", "ids": []})[0] == 404
    )  # case-sensitive
    assert sandbox.handle("POST", "/audiences/remove", {}, {"name": "a1"})[0] == 202
    assert sandbox.handle("GET", "/audiences/view", {"name": "a1"}, None)[0] == 404


def test_the_list_pages_with_from_and_next_from() -> None:
    sandbox = SandboxAudiences()
    for name in ("c", "a", "b"):
        sandbox.handle("POST", "/audiences/create", {}, {"name": name, "type": "custom_ids"})
    status, first = sandbox.handle("GET", "/audiences/list", {"limit": "2"}, None)
    assert status == 200
    assert ([a["name"] for a in first["audiences"]], first["has_more"], first["next_from"]) == (
        ["a", "b"],
        True,
        "c",
    )
    _, second = sandbox.handle("GET", "/audiences/list", {"limit": "2", "from": "c"}, None)
    assert ([a["name"] for a in second["audiences"]], second["has_more"]) == (["c"], False)
    assert sandbox.handle("GET", "/audiences/list", {"limit": "101"}, None)[0] == 400
