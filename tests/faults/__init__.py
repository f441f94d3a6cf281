"""The fault-injection suite (issue 13)."""
