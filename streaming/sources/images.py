"""Placeholder: images source, being written."""
