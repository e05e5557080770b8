"""Errors of the local runner.

``Unsupported`` is raised for anything in the YAML the runner does not implement: it names the field,
so a template that would behave differently on a cluster never runs silently here.
"""


class LocalRunError(Exception):
    """Base of every error the local runner raises on purpose."""


class Unsupported(LocalRunError):
    """The YAML uses an Argo feature (named by its field path) that the local runner does not implement."""

    def __init__(self, field: str, detail: str = ""):
        self.field = field
        super().__init__(f"{field}: not supported by the local runner" + (f" ({detail})" if detail else ""))


class ExpressionError(LocalRunError):
    """An expression could not be parsed or evaluated (Argo would fail the node too)."""


class ResolveError(ExpressionError):
    """A ``{{...}}`` reference names nothing in scope (Argo: 'failed to resolve')."""
