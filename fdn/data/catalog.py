"""Where a run's dataset lives, preparing it on first use, and what its classes are: one answer for
``fdn.search`` and ``fdn.train``, which both take a ``config.data`` with ``name``, ``data_dir`` and
``auto_prepare`` (and the search a ``num_classes`` override).

``auto_prepare`` exists for the demo's synthetic ``fdn_shapes``: without a ``data_dir`` the data goes into the
run's own ``WORKDIR/data`` and is generated there once, so a demo needs no set-up step. Real datasets are
prepared by hand (``python -m fdn.data.prepare``); ``pipeline.data_source`` then names that command if they
are missing.
"""

from pathlib import Path


def resolve_data_dir(data, workdir) -> str | None:
    """``data.data_dir``, or ``WORKDIR/data`` when ``data.auto_prepare`` is on and none is given (else None:
    tfds' default directory)."""
    if data.data_dir:
        return str(Path(data.data_dir).expanduser())
    if data.auto_prepare:
        return str(Path(workdir) / "data")
    return None


def ensure_prepared(data, data_dir, log=print, who="fdn") -> None:
    """Prepares ``data.name`` in ``data_dir`` first when ``data.auto_prepare`` is on and it is missing."""
    if not data.auto_prepare:
        return  # data_source will raise with the prepare command
    import tensorflow_datasets as tfds

    import fdn.data  # noqa: F401  (registers the builders)

    if tfds.builder(data.name, data_dir=data_dir).is_prepared():
        return
    from fdn.data import prepare

    log(f"{who}: preparing {data.name} in {data_dir} (once)")
    prepare.prepare(data.name, data_dir=data_dir)


def num_classes_of(data) -> int:
    """``data.num_classes`` when set, else the dataset's own number of segmentation classes."""
    if data.num_classes:
        return int(data.num_classes)
    import tensorflow_datasets as tfds

    import fdn.data  # noqa: F401  (registers the builders)

    builder = tfds.builder(data.name, data_dir=resolve_data_dir(data, "."))
    return int(builder.info.features["segmentation"].num_classes)


def class_names(dataset: str, num_classes: int) -> list[str] | None:
    """The class names of ``dataset`` (recorded in checkpoints for ``fdn.evaluate``'s table) when it has
    ``num_classes`` classes; None for datasets without names or another class count."""
    from fdn.data import cityscapes, shapes, voc_sbd

    names = {"fdn_shapes": shapes.CLASS_NAMES, "cityscapes_fine": cityscapes.CLASS_NAMES,
             "voc_sbd": voc_sbd.CLASS_NAMES}.get(dataset.split("/")[0])
    return list(names) if names is not None and len(names) == num_classes else None
