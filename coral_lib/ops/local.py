"""Backend: run the command as a child of the agent on its own host."""

from __future__ import annotations

import os

from coral_lib.ops import base, capture


class LocalBackend:
    name = "local"

    def run(self, request: base.ExecRequest) -> base.ExecResult:
        env = {**os.environ, **request.env} if request.env else None
        return capture.run_process(
            base.effective_argv(request), timeout=request.timeout,
            max_output=request.max_output, stdin=request.stdin, env=env, cwd=request.cwd or None,
            cancel=request.cancel,
        )
