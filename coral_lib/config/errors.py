"""ConfigError, apart from the models so that a running agent raises it without pydantic."""

from __future__ import annotations

from coral_lib import errors


class ConfigError(errors.ConfigError):
    """A config problem the user can fix; str() is one line: source, key path, what is wrong."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        problem = " ".join(problem.split())  # one line, whatever a library put in it
        self.source, self.key, self.problem = source, key, problem
        where = f"{source}: key {key}" if key else source
        super().__init__(f"{where}: {problem}")
