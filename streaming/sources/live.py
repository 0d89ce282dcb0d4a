"""Placeholder: live source, being written."""
