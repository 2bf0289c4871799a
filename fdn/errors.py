"""User errors: the exceptions fdn raises for bad input, and how commands report them.

Every command-line entry point wraps its main in ``report_user_errors``: a malformed genotype, a missing file or
a corrupt checkpoint prints one clear line (what is wrong and what to do) and exits with status 2, instead of
a traceback; programming errors still raise.

Which exceptions count as the user's is decided by one base class, `UserError`: each module that raises a
user-facing error subclasses it (``GenotypeError``, ``CheckpointError``, ``StateDictError``, ...), usually
together with the built-in base it always had (``ValueError``, ``RuntimeError``), so callers that catch the
built-in keep working. This module imports nothing from fdn (only absl), so every module can import it without cycles.
"""

from __future__ import annotations

import functools
import sys

from absl import app


class UserError(Exception):
    """An error in what the user gave fdn (a file, a flag, a genotype), not in fdn; its message says what to do."""


class InputError(UserError, ValueError):
    """An input file or array that cannot be used (wrong shape, dtype, format)."""


# Also reported as user errors: a path that is missing, or that exists where a command would create it, and
# absl's ``app.UsageError`` (wrong positional arguments), which absl itself answers with the whole help text
# and exit status 1.
USER_ERROR_TYPES: tuple[type[BaseException], ...] = (UserError, FileNotFoundError, FileExistsError, app.UsageError)


def report_user_errors(command: str):
    """Decorator for a command's main: a `USER_ERROR_TYPES` error -> ``command: error: ...`` and exit status 2."""

    def wrap(main):
        @functools.wraps(main)
        def run(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except USER_ERROR_TYPES as err:
                print(f"{command}: error: {describe(err)}", file=sys.stderr)
                sys.exit(2)

        return run

    return wrap


def one_line(text: str, limit: int = 300) -> str:
    """Another library's error message as part of one of fdn's: whitespace (newlines too) collapsed, cut at
    ``limit`` characters (Orbax's and torch's messages run to many lines of internals)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + " ..."


# What to do about the operating system's path errors, which name the path but not the remedy.
_PATH_HINTS = {
    FileExistsError: "something is already there (a file where a directory is wanted?): move it or give another path",
    FileNotFoundError: "check the path",
}


def describe(err: BaseException) -> str:
    """The one line for a user error: its message, or for the operating system's own ``[Errno N] ...: 'PATH'``
    (a ``mkdir`` over a file, an ``open`` in a missing directory) the path, the reason and what to do."""
    if isinstance(err, OSError) and err.errno is not None and err.filename is not None and type(err) in _PATH_HINTS:
        return f"{err.filename}: {err.strerror.lower()}; {_PATH_HINTS[type(err)]}"
    return str(err)
