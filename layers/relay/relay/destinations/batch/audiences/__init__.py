"""Batch.com custom-id audiences: create, add/remove ids, replace, remove, list.

Every write is an execution with a place in its audience's sequence (accepted order): a worker
applies only the audience's next write, in calls of at most BATCH_AUDIENCE_IDS_PER_CALL ids, each
through the project's 1 request/s limiter, then follows the indexing tokens Batch answers with
until the audience is ready. Nothing here is imported at cold start unless used.
"""
