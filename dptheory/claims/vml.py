"""(being written)."""

CHECKS = {}
