"""Subcommands of the `coral` command: each module has register(subparsers)."""
