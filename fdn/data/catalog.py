"""Where a run's dataset lives, preparing it on first use, and what its classes are: one answer for
``fdn.search`` and ``fdn.train``, which both take a ``config.data`` with ``name``, ``data_dir`` and
``auto_prepare`` (and the search a ``num_classes`` override; ``fdn.train`` a ``model.num_classes``).

``auto_prepare`` exists for the demo's synthetic ``fdn_shapes``: without a ``data_dir`` the data goes into the
run's own ``WORKDIR/data`` and is generated there once, so a demo needs no set-up step. Real datasets and
``image_folder/NAME`` are prepared by hand (``python -m fdn.data.prepare``); ``pipeline.data_source`` then names
that command if they are missing, and the demo configs run on them with only ``data.name`` changed.

Class counts: a config's 0 means "what the dataset declares" (``dataset_classes``): fdn's own datasets declare
theirs in code, an ``image_folder/NAME`` in its prepared ``metadata.json`` (classes.txt or the largest label).
The pose datasets (``mpii_human_pose``, ``coco_keypoints``) declare their joints (``fdn.pose.joints``): the
heatmap head has one channel per joint, so their "classes" are the joints.
"""

from pathlib import Path

from fdn.data.lookup import UnknownDatasetError, builder  # noqa: F401  (UnknownDatasetError: public here)

GENERATED = ("fdn_shapes",)  # datasets fdn makes itself (no downloads, no folders): the only ones auto_prepare makes


def auto_prepared(data) -> bool:
    """Whether ``data.auto_prepare`` applies: it is on and the dataset is one fdn generates (``GENERATED``)."""
    return bool(data.auto_prepare) and data.name.split("/")[0] in GENERATED


def resolve_data_dir(data, workdir) -> str | None:
    """``data.data_dir``, or ``WORKDIR/data`` when ``auto_prepared`` and none is given (else None: tfds' default
    directory, so that a config with ``auto_prepare`` on still finds a prepared ``voc_sbd`` or ``image_folder/NAME``
    where ``fdn.data.prepare`` put it by default)."""
    if data.data_dir:
        return str(Path(data.data_dir).expanduser())
    if auto_prepared(data):
        return str(Path(workdir) / "data")
    return None


def ensure_prepared(data, data_dir, log=print, who="fdn") -> None:
    """Prepares ``data.name`` in ``data_dir`` first when ``auto_prepared`` and it is missing."""
    if not auto_prepared(data):
        return  # data_source will raise with the prepare command
    if builder(data.name, data_dir).is_prepared():
        return
    from fdn.data import prepare

    log(f"{who}: preparing {data.name} in {data_dir} (once)")
    prepare.prepare(data.name, data_dir=data_dir)


def _known_names(dataset: str):
    from fdn.data import cityscapes, shapes, voc_sbd
    from fdn.pose import joints

    return {
        "fdn_shapes": shapes.CLASS_NAMES,
        "cityscapes_fine": cityscapes.CLASS_NAMES,
        "voc_sbd": voc_sbd.CLASS_NAMES,
        **{name: skeleton.names for name, skeleton in joints.SKELETONS.items()},
    }.get(dataset.split("/")[0])


def dataset_classes(dataset: str, data_dir=None) -> tuple[int, list[str] | None]:
    """(class count, class names or None) that ``dataset`` declares: from the code for fdn's own datasets,
    from the prepared copy's ``metadata.json`` for an ``image_folder/NAME``."""
    names = _known_names(dataset)
    if names is not None:
        return len(names), list(names)
    if dataset == "nyu_depth_v2_labeled/seg40":
        return 40, None
    found = builder(dataset, data_dir)
    metadata = found.info.metadata if found.is_prepared() else None
    if not metadata or not metadata.get("num_classes"):
        where = f" in {found.data_dir}" if metadata is None else ""
        raise UnknownDatasetError(
            f"{dataset} declares no class count{where}"
            f"{' (not prepared there)' if metadata is None else ''}; prepare it, or set "
            "the class count in the config (data.num_classes / model.num_classes)"
        )
    names = metadata.get("class_names")
    return int(metadata["num_classes"]), list(names) if names else None


def num_classes_of(data, workdir=".") -> int:
    """``data.num_classes`` when set, else the number of classes the dataset declares (``dataset_classes``)."""
    if getattr(data, "num_classes", 0):
        return int(data.num_classes)
    return dataset_classes(data.name, resolve_data_dir(data, workdir))[0]


def class_names(dataset: str, num_classes: int, data_dir=None) -> list[str] | None:
    """The class names of ``dataset`` (recorded in checkpoints for ``fdn.evaluate``'s table) when it has
    ``num_classes`` classes; None for datasets without names or another class count."""
    try:
        count, names = dataset_classes(dataset, data_dir)
    except UnknownDatasetError:
        return None
    return names if names is not None and count == num_classes else None
