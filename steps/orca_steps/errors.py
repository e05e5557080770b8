"""Exception types. The CLI turns any of them into one line on stderr and a non-zero exit."""


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


class CalibrationError(OrcaError):
    """A calibration table cannot be applied to this MS."""


class ArchiveExistsError(OrcaError):
    """The archive destination already holds a different archive and overwriting was not asked for."""
