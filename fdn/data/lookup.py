"""Looking a dataset up by name: the one place fdn asks tfds for a builder, below `fdn.data.catalog`,
`fdn.data.pipeline` and `fdn.data.prepare` (which the catalog calls to prepare a missing dataset, so the lookup
cannot live in the catalog without an import cycle).
"""

from fdn.errors import UserError


class UnknownDatasetError(UserError, FileNotFoundError):
    """A dataset that is unknown, not prepared where the config says, or that declares no class count."""


def builder(name: str, data_dir=None, **kwargs):
    """``tfds.builder(name, data_dir)`` with fdn's builders registered; the one place a dataset name is looked up.

    A misspelled name or config is the user's: tfds answers with a traceback and a list of its thousand
    datasets, so it becomes an `UnknownDatasetError` that names fdn's datasets instead.
    """
    import tensorflow_datasets as tfds

    import fdn.data  # noqa: F401  (registers the builders)

    try:
        return tfds.builder(name, data_dir=data_dir, **kwargs)
    except tfds.core.registered.DatasetNotFoundError:
        problem = f"unknown dataset {name!r}"
    except ValueError as err:  # a known builder without that config ("voc_sbd/nosuch")
        if "BuilderConfig" not in str(err):
            raise
        problem = f"{name!r}: {name.split('/')[0]} has no config {name.partition('/')[2]!r}"
    raise UnknownDatasetError(
        f"{problem}; fdn's datasets are {', '.join(fdn_datasets())} (image_folder/NAME: your own images, "
        "prepared with python -m fdn.data.prepare image_folder)"
    )


def fdn_datasets() -> list[str]:
    """The names of the tfds builders fdn registers (``fdn.data``; each is an ``ArrayRecordBuilder``)."""
    import fdn.data  # noqa: F401  (defines the builders)
    from fdn.data import base

    return sorted(cls.name for cls in base.ArrayRecordBuilder.__subclasses__())
