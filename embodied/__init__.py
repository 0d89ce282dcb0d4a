"""embodied: see ARCHITECTURE.md. Filled in by its own issue."""

if __name__ != "memstream.embodied":  # imported by the bare name: it is another distribution's
    from memstream.kernels.bare_name import hand_over

    hand_over(__name__)
else:
    pass
