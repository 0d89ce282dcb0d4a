"""Placeholder: tum source, being written."""
