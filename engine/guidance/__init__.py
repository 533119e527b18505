"""Guidance: rendered images -> named losses. One guidance per file."""
