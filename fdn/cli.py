"""How every ``python -m fdn.X`` command starts: absl's ``app.run`` with flag errors as one clear line.

absl prints flag-parsing failures with a traceback of ml_collections' config loader (a bad ``:arg``), or lets
the exception escape as a Python traceback (a misspelled ``--config.`` key, a config file that does not
exist). A user who mistyped a setting should read one line that names it and what to do, and get exit code 2,
as for every other bad input (`fdn.errors`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

from absl import app, flags


def run_command(main: Callable, command: str) -> None:
    """``app.run(main)`` whose flag parsing reports errors as ``COMMAND: error: ...`` and exits 2."""
    app.run(main, flags_parser=lambda argv: parse_flags(argv, command))


def parse_flags(argv: list[str], command: str) -> list[str]:
    """Parse ``argv`` into absl's FLAGS; on a bad flag or config setting print one line and exit 2."""
    try:
        rest = flags.FLAGS(argv)
        if "config" in flags.FLAGS:  # ml_collections defers a config file that failed to load until first use
            getattr(flags.FLAGS["config"].value, "keys", None)
        return rest
    except (flags.Error, AttributeError, KeyError, ValueError, TypeError, OSError) as err:
        print(f"{command}: error: {describe_flag_error(err, argv)}", file=sys.stderr)
        sys.exit(2)


def describe_flag_error(err: BaseException, argv: list[str]) -> str:
    """One line for a flag-parsing failure: the offending setting and what to do about it."""
    text = str(err)
    if isinstance(err, AttributeError):  # ml_collections: "'epochz'\nDid you mean "epochs" instead of "epochz"?"
        names = re.findall(r"'([A-Za-z_][\w]*)'", text.replace("\\'", "'"))
        hint = re.search(r'Did you mean "([^"]+)"', text.replace('\\"', '"'))
        bad = names[0] if names else "?"
        flag = next(
            (
                a.split("=")[0]
                for a in argv
                if a.startswith("--config.") and re.search(rf"\.{re.escape(bad)}(=|$)", a.split("=")[0])
            ),
            f"--config...{bad}",
        )
        return (
            f"unknown config key {flag}"
            + (f" (did you mean {hint.group(1)!r}?)" if hint else "")
            + "; fix the spelling (the config file lists every key)"
        )
    if "Failed loading config file" in text or "No such file or directory" in text:
        path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "?")
        return f"cannot load the config file {path.split(':')[0]!r}: no such file (give a path like configs/demo.py)"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    raised = [ln for ln in lines if re.match(r"^\w+(Error|Exception): ", ln)]
    if raised:  # an exception inside get_config (e.g. an unknown ':arg'): its own message is the useful part
        flag = lines[0].split(":")[0].removeprefix("flag ")
        return f"{flag}: {raised[-1].split(': ', 1)[1]}"
    return " ".join(lines) + " (see --helpshort)"


def refuse_arguments(argv: list[str]) -> None:
    """For commands that take flags only: a word left over after parsing is a flag typed without its ``--`` (or a
    value after a space); ignoring it would run with a setting the user did not mean, so it is a usage error."""
    if len(argv) > 1:
        raise app.UsageError(
            f"unexpected arguments {argv[1:]}: this command takes flags only, written --name=value (see --helpshort)"
        )
