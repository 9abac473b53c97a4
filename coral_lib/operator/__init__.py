"""What every front end (the `coral` CLI, the Ansible modules, inventory and connection
plugins) needs to drive a colony: one connection builder (connect), one targeting builder
(targeting) and tap/trace capture to files (capture). Nothing here imports the CLI."""
