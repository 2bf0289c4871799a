"""``python -m fdn.data NAME ...`` is ``python -m fdn.data.prepare NAME ...``."""

from absl import app

from fdn.data import prepare

if __name__ == '__main__':
    app.run(prepare.main)
