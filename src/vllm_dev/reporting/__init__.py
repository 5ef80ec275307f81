"""Build reports: what a build cost (ninja log, recorder, the stored report)."""
