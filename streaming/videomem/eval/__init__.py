"""Fidelity measures of the video memory that hold without pretrained weights."""
