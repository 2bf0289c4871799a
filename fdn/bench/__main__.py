"""Dispatch ``python -m fdn.bench WHAT ...`` to ``fdn.bench.WHAT.main``."""

import importlib
import pkgutil
import sys

from absl import flags

import fdn.bench
from fdn.errors import USER_ERROR_TYPES, describe


def _available():
    return sorted(m.name for m in pkgutil.iter_modules(fdn.bench.__path__) if not m.name.startswith("_"))


HELP = ("-h", "--help", "--helpfull")


def help_text(what: str, module) -> str:
    """``python -m fdn.bench WHAT --help``: the bench's docstring (what it measures, example commands) and its
    flags with their defaults."""
    flag_values = getattr(module, "FLAGS", None)
    flags_help = flag_values.get_help() if flag_values is not None else "  (no flags)"
    return f"python -m fdn.bench {what} [flags]\n\n{(module.__doc__ or '').strip()}\n\nflags:\n{flags_help}"


def main(argv):
    names = _available()
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print("usage: python -m fdn.bench {{{}}} [flags]".format(",".join(names)))
        return 0 if len(argv) >= 2 else 2
    what = argv[1]
    if what not in names:
        print(f"fdn.bench: unknown benchmark {what!r}; choose one of: {', '.join(names)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"fdn.bench.{what}")
    if any(a in HELP for a in argv[2:]):
        print(help_text(what, module))
        return 0
    try:
        return module.main([f"fdn.bench {what}"] + argv[2:])
    except (flags.Error, *USER_ERROR_TYPES) as err:  # bad input: one line, exit 2 (fdn.errors)
        hint = f" (python -m fdn.bench {what} --help lists its flags)" if isinstance(err, flags.Error) else ""
        print(f"fdn.bench {what}: error: {describe(err)}{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv) or 0)
