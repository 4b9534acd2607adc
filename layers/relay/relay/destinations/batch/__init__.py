"""Batch.com: profile updates and custom-id audiences within its limits (being built)."""

NAME = "batch"
