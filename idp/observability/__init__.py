"""What operators see of a running server: health and readiness (SPEC §2)."""
