"""Shared base of the fdn tfds builders: ArrayRecord output and manual-directory checks.

ArrayRecord is the random-access format ``tfds.data_source`` (and so grain) needs, and the only one tfds
writes without TensorFlow, so it is the default here rather than something every caller must remember.
"""

import inspect
import os
from pathlib import Path

import tensorflow_datasets as tfds
from etils import epath

from fdn.errors import UserError


class ManualDataError(UserError, FileNotFoundError):
    """A manual-directory file is missing or incomplete; the message says which file and where to get it."""


def require(path, what, how):
    """Return ``path`` if it exists, else raise a ``ManualDataError`` that names it.

    ``what`` says what the file is, ``how`` where to download it; both end up in the message so that the
    person preparing the dataset does not need to read this code.
    """
    path = Path(path)
    if not path.exists():
        raise ManualDataError(f"missing {what}: expected {path}\n  {how}")
    return path


def first_existing(candidates):
    """The first of ``candidates`` that exists, else ``None`` (accepts several manual-dir layouts)."""
    for candidate in candidates:
        if Path(candidate).exists():
            return Path(candidate)
    return None


def read_list(path):
    """Non-empty, stripped lines of an image-set list such as VOC's ``train.txt``."""
    return [line.split()[0] for line in Path(path).read_text().splitlines() if line.strip()]


class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """GeneratorBasedBuilder that writes ArrayRecord unless told otherwise.

    ``_info`` is built from class attributes (``FEATURES``, ``DESCRIPTION``, ...) with
    ``tfds.core.DatasetInfo`` directly: ``dataset_info_from_configs`` would look for metadata files next
    to the module, which these builders do not ship.
    """

    DESCRIPTION = ""
    MANUAL_DOWNLOAD_INSTRUCTIONS = ""
    HOMEPAGE = ""
    CITATION = ""
    KEEP_ORDER = False  # True: records in the order the generator yields them (tfds' disable_shuffling)

    def __init_subclass__(cls, **kwargs):
        # tfds derives ``code_path`` through ``importlib_resources``, which is not installed (and not
        # needed on Python >= 3.9); the module file is what it would find.
        cls.code_path = epath.Path(inspect.getfile(cls))
        super().__init_subclass__(**kwargs)

    def __init__(self, *, file_format=None, **kwargs):
        super().__init__(file_format=file_format or "array_record", **kwargs)

    def _features(self):
        raise NotImplementedError

    def _metadata(self):
        """A ``tfds.core.MetadataDict`` for what is known only once the data is read (saved as metadata.json)."""

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=self._features(),
            homepage=self.HOMEPAGE,
            citation=self.CITATION,
            metadata=self._metadata(),
            disable_shuffling=self.KEEP_ORDER,
        )

    def _manual_root(self, dl_manager, how):
        """The manual directory, or a ``ManualDataError`` explaining what to put there."""
        try:
            return Path(os.fspath(dl_manager.manual_dir))
        except (AssertionError, ValueError):
            raise ManualDataError(
                f"{self.name}: the manual directory is missing or empty; pass --manual_dir=DIR holding\n  {how}"
            ) from None
