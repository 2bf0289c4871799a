"""Prepare an fdn dataset: ``python -m fdn.data.prepare NAME --manual_dir=DIR --data_dir=DIR``.

NAME is one of ``voc_sbd``, ``nyu_depth_v2_labeled[/seg40]``, ``cityscapes_fine``, ``fdn_shapes`` (no
manual dir needed). tfds writes ArrayRecord files into a temporary ``incomplete.*`` directory and renames
it only when every split is written, so an interrupted run never leaves a dataset that looks complete;
rerunning starts over. Progress bars are tqdm's (via tfds), one per split.

Examples::

    python -m fdn.data.prepare fdn_shapes --data_dir=~/tensorflow_datasets
    python -m fdn.data.prepare voc_sbd --manual_dir=/data/voc --data_dir=/data/tfds
    python -m fdn.data.prepare nyu_depth_v2_labeled --manual_dir=/data/nyu --data_dir=/data/tfds
    python -m fdn.data.prepare cityscapes_fine --manual_dir=/data/cityscapes --data_dir=/data/tfds
"""

import sys

from absl import app, flags

from fdn.cli import run_command

FLAGS = flags.FLAGS
flags.DEFINE_string('manual_dir', None, 'folder holding the downloaded archives, extracted (see each builder)')
flags.DEFINE_string('data_dir', None, 'tfds data dir to write to (default: tfds default, ~/tensorflow_datasets)')
flags.DEFINE_bool('overwrite', False, 'delete an existing prepared copy and prepare again')


def prepare(name, data_dir=None, manual_dir=None, overwrite=False):
    """Prepare ``name`` and return its builder (reuses a complete copy unless ``overwrite``)."""
    import tensorflow_datasets as tfds

    import fdn.data  # noqa: F401  (registers the builders)

    builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
    mode = tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
    if overwrite:
        mode = tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS
    config = tfds.download.DownloadConfig(manual_dir=manual_dir, download_mode=mode)
    builder.download_and_prepare(download_config=config, file_format='array_record')
    return builder


def main(argv):
    if len(argv) != 2:
        raise app.UsageError('usage: python -m fdn.data.prepare NAME [--manual_dir=DIR] [--data_dir=DIR]')
    from fdn.data import base

    try:
        builder = prepare(argv[1], FLAGS.data_dir, FLAGS.manual_dir, FLAGS.overwrite)
    except base.ManualDataError as e:
        print(f'fdn.data.prepare: {e}', file=sys.stderr)
        return 1
    for split, info in builder.info.splits.items():
        print(f'{builder.info.full_name} {split}: {info.num_examples} examples in {builder.data_dir}')
    return 0


if __name__ == '__main__':
    run_command(main, 'fdn.data.prepare')
