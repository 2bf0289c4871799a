"""User errors: the exceptions fdn raises for bad input, and how commands report them.

Every command-line entry point wraps its main in ``report_user_errors``: a malformed genotype, a missing file or
a corrupt checkpoint prints one clear line (what is wrong and what to do) and exits with status 2, instead of
a traceback; programming errors still raise.
"""

from __future__ import annotations

import functools
import sys

from fdn.genotype import GenotypeError


def user_error_types() -> tuple[type, ...]:
    from fdn.serve.checkpoint import CheckpointError
    from fdn.convert.files import StateDictError
    from fdn.convert.segmenter import ConversionError
    from fdn.serve.export import ExportError
    return (GenotypeError, CheckpointError, StateDictError, ConversionError, ExportError, InputError,
            FileNotFoundError, FileExistsError)


class InputError(ValueError):
    """An input file or array that cannot be used (wrong shape, dtype, format)."""


def report_user_errors(command: str):
    def wrap(main):
        @functools.wraps(main)
        def run(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except user_error_types() as err:
                print(f"{command}: error: {err}", file=sys.stderr)
                sys.exit(2)
        return run
    return wrap
