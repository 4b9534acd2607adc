"""One httpx client per platform: auth, timeouts, error mapping, rate-limit headers."""
