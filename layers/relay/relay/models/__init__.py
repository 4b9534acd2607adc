"""pydantic v2 models of the relay's API and of each upstream's payloads (no dependency on our code)."""
