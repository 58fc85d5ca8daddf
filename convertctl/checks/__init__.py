"""Model checks before any expensive step."""
