"""Placeholder: synthetic source, being written."""
