"""Prepare an fdn dataset: ``python -m fdn.data.prepare NAME --manual_dir=DIR --data_dir=DIR``.

NAME is one of ``voc_sbd``, ``nyu_depth_v2_labeled[/seg40]``, ``cityscapes_fine``, ``mpii_human_pose``,
``coco_keypoints``, ``fdn_shapes`` (no manual dir needed) or ``image_folder`` (your own images: ``--name``,
``--task``, ``--depth_scale``, ``--val_fraction``, ``--split_seed``; see ``fdn.data.image_folder``). tfds
writes ArrayRecord files into a temporary ``incomplete.*`` directory and renames it only when every split is
written, so an interrupted run never leaves a dataset that looks complete; rerunning starts over. Progress bars
are tqdm's (via tfds), one per split.

Examples::

    python -m fdn.data.prepare fdn_shapes --data_dir=~/tensorflow_datasets
    python -m fdn.data.prepare voc_sbd --manual_dir=/data/voc --data_dir=/data/tfds
    python -m fdn.data.prepare nyu_depth_v2_labeled --manual_dir=/data/nyu --data_dir=/data/tfds
    python -m fdn.data.prepare cityscapes_fine --manual_dir=/data/cityscapes --data_dir=/data/tfds
    python -m fdn.data.prepare mpii_human_pose --manual_dir=/data/mpii --data_dir=/data/tfds
    python -m fdn.data.prepare coco_keypoints --manual_dir=/data/coco --data_dir=/data/tfds
    python -m fdn.data.prepare image_folder --manual_dir=/data/roads --data_dir=/data/tfds --name=roads
"""

import shutil

from absl import app, flags

from fdn.cli import run_command
from fdn.errors import report_user_errors

FLAGS = flags.FLAGS
flags.DEFINE_string("manual_dir", None, "folder holding the downloaded archives, extracted (see each builder)")
flags.DEFINE_string("data_dir", None, "tfds data dir to write to (default: tfds default, ~/tensorflow_datasets)")
flags.DEFINE_bool("overwrite", False, "delete an existing prepared copy and prepare again")
flags.DEFINE_string("name", None, "image_folder: the NAME of image_folder/NAME (default: the folder's name)")
flags.DEFINE_enum("task", "segmentation", ["segmentation", "depth"], "image_folder: masks/ or depth/ labels")
flags.DEFINE_float("depth_scale", 0.001, "image_folder --task=depth: metres per unit of the 16-bit PNGs")
flags.DEFINE_float("val_fraction", 0.1, "image_folder without train.txt/val.txt: share of images in val")
flags.DEFINE_integer("split_seed", 0, "image_folder without train.txt/val.txt: seed of the split")


def prepare(name, data_dir=None, manual_dir=None, overwrite=False, **folder):
    """Prepare ``name`` and return its builder (reuses a complete copy unless ``overwrite``).

    ``folder`` holds the ``image_folder`` settings (``folder_name``, ``task``, ``depth_scale``, ``val_fraction``,
    ``split_seed``) of ``fdn.data.image_folder.configure``.
    """
    import tensorflow_datasets as tfds

    import fdn.data  # noqa: F401  (registers the builders)
    from fdn.data import image_folder, lookup

    if name.split("/")[0] == image_folder.ImageFolder.name:
        name = image_folder.configure(name, manual_dir, **folder)

        def make():  # from the code, always: tfds would open an already prepared NAME read-only, from its files
            return image_folder.ImageFolder(
                config=name.partition("/")[2], data_dir=data_dir, file_format="array_record"
            )
    elif folder:
        raise image_folder.ImageFolderError(f"--{', --'.join(sorted(folder))}: for image_folder only, not {name}")
    else:

        def make():
            return lookup.builder(name, data_dir, file_format="array_record")

    builder = make()
    if overwrite and builder.is_prepared():
        # tfds cannot regenerate over a finished copy (its DatasetInfo is frozen), so the copy goes first.
        shutil.rmtree(builder.data_dir)
        builder = make()
    config = tfds.download.DownloadConfig(
        manual_dir=manual_dir, download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
    )
    builder.download_and_prepare(download_config=config, file_format="array_record")
    return builder


def folder_flags():
    """The image_folder flags the user gave (so other datasets can refuse them)."""
    given = {
        "name": "folder_name",
        "task": "task",
        "depth_scale": "depth_scale",
        "val_fraction": "val_fraction",
        "split_seed": "split_seed",
    }
    return {key: FLAGS[flag].value for flag, key in given.items() if FLAGS[flag].present}


@report_user_errors("fdn.data.prepare")
def main(argv):
    if len(argv) != 2:
        raise app.UsageError("usage: python -m fdn.data.prepare NAME [--manual_dir=DIR] [--data_dir=DIR]")
    builder = prepare(argv[1], FLAGS.data_dir, FLAGS.manual_dir, FLAGS.overwrite, **folder_flags())
    for split, info in builder.info.splits.items():
        print(f"{builder.info.full_name} {split}: {info.num_examples} examples in {builder.data_dir}")
    return 0


if __name__ == "__main__":
    run_command(main, "fdn.data.prepare")
