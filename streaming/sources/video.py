"""Placeholder: video source, being written."""
