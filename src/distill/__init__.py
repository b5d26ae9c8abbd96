"""Distil a large text-embedding teacher into a small, fast student."""
