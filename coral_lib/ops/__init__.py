"""Operation backends (one per file): local, nsenter, cri, tap, trace."""
