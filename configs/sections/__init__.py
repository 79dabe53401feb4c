"""Helpers that build config sections shared by several method configs (not configs themselves)."""
