"""One root for every error aetk raises on purpose, and the exit code each maps to.

    AetkError            the job could not be done as asked              exit 1
      UserInputError     a bad argument, option, config key, path or file  exit 2
      IntegrityError     bytes that do not match their checksum, a torn    exit 3
                         or edited checkpoint, manifest or weights file

Anything else that escapes a command is a bug (exit 70, with its traceback). Failures of
the disk itself (full, unwritable, missing) stay ``OSError`` and exit 4 with one line. The
CLI prints one line for each of these; ``aetk --debug`` shows the traceback as well.

Each error also derives from the builtin a caller would naturally catch (ValueError for bad
input, RuntimeError for a job that failed), so ``except ValueError`` keeps working.
Standard library only: ``aetk.runtime`` imports this module and must stay torch-free.
"""

from __future__ import annotations

# The exit-code table, documented in the README ("Exit codes"); one place for every command.
EXIT_OK = 0
EXIT_FAILED = 1          # an AetkError, or some inputs failed while the rest were written
EXIT_USER_INPUT = 2      # bad argument, option, config, path or file (also Click's usage errors)
EXIT_INTEGRITY = 3       # checksum mismatch, corrupt or torn file
EXIT_OS = 4              # the disk or the operating system refused: full, permission, missing
EXIT_BUG = 70            # an unexpected exception: a bug in aetk (sysexits' EX_SOFTWARE)
EXIT_INTERRUPTED = 130   # Ctrl-C


class AetkError(Exception):
    """An error aetk raises on purpose: its message is one line a user can act on."""

    exit_code = EXIT_FAILED


class UserInputError(AetkError, ValueError):
    """A bad argument, option, config value, path or input file; the message names it and
    says what would have been valid."""

    exit_code = EXIT_USER_INPUT


class IntegrityError(AetkError, ValueError):
    """Bytes that do not match what recorded them: a checksum, a hash, a torn checkpoint."""

    exit_code = EXIT_INTEGRITY


def exit_code_for(exc: BaseException) -> int:
    """The process exit code for an exception that ended a command."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, AetkError):
        return exc.exit_code
    if isinstance(exc, OSError):
        return EXIT_OS
    return EXIT_BUG


def one_line(exc: BaseException) -> str:
    """The message of an error as one line (an OSError names its file and the system's reason)."""
    if isinstance(exc, OSError) and not isinstance(exc, AetkError) and exc.strerror:
        where = " ".join(str(f) for f in (exc.filename, exc.filename2) if f)
        text = f"{where}: {exc.strerror}" if where else exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


__all__ = ["AetkError", "EXIT_BUG", "EXIT_FAILED", "EXIT_INTEGRITY", "EXIT_INTERRUPTED", "EXIT_OK",
           "EXIT_OS", "EXIT_USER_INPUT", "IntegrityError", "UserInputError", "exit_code_for",
           "one_line"]
