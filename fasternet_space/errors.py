"""The one kind of error a caller gets for a value that is not allowed.

Library code names its own parameters (`data 'cifar10:/x': ...`); the CLI shows the same message with
its flag in the parameter's place (`--data cifar10:/x: ...`), so the library never speaks in flags.
"""

from __future__ import annotations


class InputError(ValueError):
    """A value given by the caller that is not allowed: the parameter, the value, what is wrong and what
    is allowed, in one line. `parameter` is None when the problem is not about one argument."""

    def __init__(self, parameter: str | None, value: object, problem: str):
        self.parameter = parameter
        self.value = value
        self.problem = problem
        super().__init__(self.message(parameter))

    def message(self, name: str | None) -> str:
        """The message with `name` standing for the parameter (the CLI passes its flag)."""
        if name is None:
            return self.problem
        shown = "" if self.value is None else f" {self.value}"
        return f"{name}{shown}: {self.problem}"
