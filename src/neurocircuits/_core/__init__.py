"""Shared machinery every family uses: the time loop, recording, integrators, connectivity,
results on disk and errors."""
