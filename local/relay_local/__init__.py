"""Local development stack: embedded AWS, sandbox upstreams and tooling (never imported by handlers)."""
