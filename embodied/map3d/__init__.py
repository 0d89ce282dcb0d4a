"""3D memory: Mem4D-style persistent static map beside a transient dynamics memory."""
