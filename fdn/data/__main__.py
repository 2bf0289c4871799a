"""``python -m fdn.data NAME ...`` is ``python -m fdn.data.prepare NAME ...``."""

from fdn.cli import run_command
from fdn.data import prepare

if __name__ == "__main__":
    run_command(prepare.main, "fdn.data")
