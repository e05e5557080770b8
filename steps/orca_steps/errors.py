"""Exception types. The CLI turns any of them into one line on stderr and a non-zero exit.

Exit codes say whether a retry can help: 2 (a refused input or an unexpected error) and 3 (a missing
tool) are never retried; 4 (a tool crashed) and 5 (a fault that may pass, e.g. a full disk) are.
"""
import errno


class OrcaError(Exception):
    """Base of every error a step raises on purpose; the message names the file and the problem."""
    exit_code = 2


class InputError(OrcaError):
    """An input (MS, table, model, parameter) is missing or malformed."""


class MissingToolError(OrcaError):
    """An external program (wsclean, aoflagger, fpack, ...) is not on PATH."""
    exit_code = 3


class ToolFailedError(OrcaError):
    """An external program ran and failed."""
    exit_code = 4


class ToolStoppedError(OrcaError):
    """A tool was stopped because its output showed it going wrong (a diverging clean); a rerun would do
    the same, so it is not retried."""


class CalibrationError(OrcaError):
    """A calibration table cannot be applied to this MS."""


class ArchiveExistsError(OrcaError):
    """The archive destination already holds a different archive and overwriting was not asked for."""


class TransientError(OrcaError):
    """A fault that may pass (a full disk that may be freed, a lost mount): the templates retry it."""
    exit_code = 5


class UnexpectedError(OrcaError):
    """An error the step did not raise on purpose (a corrupt table, undecodable text): retrying the
    same input fails the same way, so it is not retried."""


# errno values of faults that may pass on a retry; any other OSError is about the input and is final.
TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN,
                              errno.ENOTCONN, errno.EHOSTDOWN})
# Exit codes the templates never retry: a refused input, a missing tool, an unexpected error.
NOT_RETRIED_EXIT_CODES = tuple(sorted({OrcaError.exit_code, MissingToolError.exit_code}))


def as_orca_error(exc: Exception, subject: str | None = None) -> OrcaError:
    """Any exception as one line naming the file (the OSError's own, else ``subject``) and the problem."""
    if isinstance(exc, OrcaError):
        return exc
    if isinstance(exc, OSError) and exc.errno is not None:
        where = exc.filename or subject
        text = f"{where + ': ' if where else ''}{exc.strerror or exc} ({errno.errorcode.get(exc.errno, exc.errno)})"
        if exc.errno in TRANSIENT_ERRNOS:
            return TransientError(f"{text}; may pass, retried")
        return UnexpectedError(text)
    if isinstance(exc, UnicodeDecodeError):
        problem = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    else:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        problem = f"{type(exc).__name__}: {lines[0] if lines else 'no message'}"
    return UnexpectedError(f"{subject + ': ' if subject else ''}{problem}")
