"""Diagnostics (filled below)."""
