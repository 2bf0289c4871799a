"""``image_folder/NAME``: your own images prepared, read back, checked (each bad folder -> its message), and
searched / trained on with only ``data.name`` (and the split names) changed, on a folder written here and on the
five real VOC samples of ``../shared/data/samples/voc`` (skipped without them)."""

import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fdn.data import catalog, image_folder, pipeline, prepare, voc_sbd
from tests.data import trees

ROOT = Path(__file__).resolve().parents[1]
VOC_SAMPLES = trees.SAMPLES / "voc"
XLA_CACHE = Path(os.environ.get("FDN_TEST_XLA_CACHE", "/tmp/fdn_test_xla_cache"))
CLASSES = ("road", "car", "tree")


def write_folder(root, n=6, size=(20, 24), seed=0, classes_txt=True, palette=(), jpeg=()):
    """A folder of ``n`` random RGB images with 3-class masks (a 255 pixel in each); returns {stem: (image, mask)}.

    Stems in ``palette`` get palette masks, those in ``jpeg`` JPEG images (compared after decoding)."""
    rng = np.random.default_rng(seed)
    written = {}
    for i in range(n):
        stem = f"img{i}"
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        mask = rng.integers(0, len(CLASSES), size, dtype=np.uint8)
        mask[0, 0] = 255
        (root / "images").mkdir(parents=True, exist_ok=True)
        if stem in jpeg:
            trees.write_jpeg(root / "images" / f"{stem}.jpg", image)
            image = np.array(Image.open(root / "images" / f"{stem}.jpg"))
        else:
            Image.fromarray(image).save(root / "images" / f"{stem}.png")
        if stem in palette:
            trees.write_palette_png(root / "masks" / f"{stem}.png", mask)
        else:
            (root / "masks").mkdir(exist_ok=True)
            Image.fromarray(mask).save(root / "masks" / f"{stem}.png")
        written[stem] = (image, mask)
    if classes_txt:
        (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return written


def records(name, split, data_dir):
    source = pipeline.data_source(name, split, str(data_dir))
    return {r["image_id"]: r for r in (source[i] for i in range(len(source)))}


def data_config(name, data_dir, num_classes=0):
    return types.SimpleNamespace(name=name, data_dir=str(data_dir), auto_prepare=True, num_classes=num_classes)


# ------------------------------------------------------------------------------------------- preparing
def test_round_trip_classes_and_seeded_split(tmp_path):
    written = write_folder(tmp_path / "mine", palette={"img1", "img4"}, jpeg={"img2"})
    prepare.prepare("image_folder", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "mine")  # NAME = 'mine'
    train, val = (
        records("image_folder/mine", "train", tmp_path / "tfds"),
        records("image_folder/mine", "val", tmp_path / "tfds"),
    )
    assert len(val) == 1 and len(train) == 5 and set(train) | set(val) == set(written)
    for stem, record in {**train, **val}.items():
        np.testing.assert_array_equal(record["image"], written[stem][0])
        assert record["segmentation"].dtype == np.uint8 and "depth" not in record
        np.testing.assert_array_equal(record["segmentation"], written[stem][1])  # palette index = class
    # the class count and names live in the prepared copy; a config's 0 means "the dataset's"
    assert catalog.dataset_classes("image_folder/mine", str(tmp_path / "tfds")) == (3, list(CLASSES))
    assert catalog.num_classes_of(data_config("image_folder/mine", tmp_path / "tfds")) == 3
    assert catalog.class_names("image_folder/mine", 3, str(tmp_path / "tfds")) == list(CLASSES)
    # the same seed splits the same way; another seed (here) another way
    prepare.prepare("image_folder", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "mine", folder_name="again")
    assert set(records("image_folder/again", "val", tmp_path / "tfds")) == set(val)


def test_split_lists_names_without_classes_txt_and_overwrite(tmp_path):
    written = write_folder(tmp_path / "f", n=5, classes_txt=False)
    (tmp_path / "f" / "val.txt").write_text("img3\nimg0\n")  # train = the rest
    prepare.prepare("image_folder/lists", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "f")
    assert set(records("image_folder/lists", "val", tmp_path / "tfds")) == {"img0", "img3"}
    assert set(records("image_folder/lists", "train", tmp_path / "tfds")) == {"img1", "img2", "img4"}
    largest = max(int(m[m != 255].max()) for _, m in written.values())
    assert catalog.dataset_classes("image_folder/lists", str(tmp_path / "tfds")) == (
        largest + 1,
        [str(i) for i in range(largest + 1)],
    )
    # a fixed folder is prepared again with --overwrite (without it the finished copy is reused)
    (tmp_path / "f" / "train.txt").write_text("img1\n")
    prepare.prepare("image_folder/lists", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "f")
    assert len(records("image_folder/lists", "train", tmp_path / "tfds")) == 3
    prepare.prepare("image_folder/lists", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "f", overwrite=True)
    assert set(records("image_folder/lists", "train", tmp_path / "tfds")) == {"img1"}


def test_depth_folder_matches_nyu_features(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "rooms"
    depths = {}
    for i in range(4):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "depth").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(root / "images" / f"r{i}.png")
        depth = rng.integers(0, 9000, (12, 16)).astype(np.uint16)
        depth[0, :3] = 0  # invalid
        Image.fromarray(depth).save(root / "depth" / f"r{i}.png")  # 16-bit grey PNG
        depths[f"r{i}"] = depth
    prepare.prepare("image_folder", data_dir=tmp_path / "tfds", manual_dir=root, task="depth", depth_scale=0.001)
    got = {
        **records("image_folder/rooms", "train", tmp_path / "tfds"),
        **records("image_folder/rooms", "val", tmp_path / "tfds"),
    }
    assert set(got) == set(depths)
    for stem, record in got.items():
        assert set(record) == {"image", "image_id", "depth"} and record["depth"].dtype == np.float32
        np.testing.assert_allclose(record["depth"], depths[stem] * np.float32(0.001), rtol=1e-6)
        assert (record["depth"][0, :3] == 0).all()


# ------------------------------------------------------------------------------------------ bad folders
def _no_mask(root):
    (root / "masks" / "img2.png").unlink()


def _wrong_size(root):
    Image.fromarray(np.zeros((20, 23), np.uint8)).save(root / "masks" / "img4.png")


def _bad_label(root):
    mask = np.zeros((20, 24), np.uint8)
    mask[3, 3] = 7
    Image.fromarray(mask).save(root / "masks" / "img1.png")


def _rgb_mask(root):
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(root / "masks" / "img3.png")


def _empty_split(root):
    (root / "train.txt").write_text("\n".join(f"img{i}" for i in range(6)))  # val = the rest = nothing


BAD_FOLDERS = {
    "image without mask": (_no_mask, r"img2\.png: no masks file for this image: expected .*masks/img2\.png"),
    "mask of another size": (
        _wrong_size,
        (
            r"masks/img4\.png: size 23x20 \(WxH\) differs from its image "
            r"img4\.png, 24x20"
        ),
    ),
    "label outside 0..K-1": (_bad_label, r"masks/img1\.png: labels \[7\] are outside 0\.\.2 and 255"),
    "RGB mask": (
        _rgb_mask,
        (
            r"masks/img3\.png: a mask must be a grey \(L\) or palette \(P\) PNG .* got mode "
            "RGB; colours are not class ids"
        ),
    ),
    "empty split": (_empty_split, r"split val of .* is empty"),
}


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
def test_bad_folder_names_the_first_bad_file(case, tmp_path):
    write_folder(tmp_path / "bad")
    spoil, message = BAD_FOLDERS[case]
    spoil(tmp_path / "bad")
    with pytest.raises(image_folder.ImageFolderError, match=message):
        prepare.prepare("image_folder", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "bad")
    assert not list(tmp_path.glob("tfds/**/*.array_record*"))  # checked before anything is written


def test_prepare_command_bad_folder_is_one_line_exit_2_and_good_folder_prints_splits(tmp_path):
    write_folder(tmp_path / "cmd")
    _bad_label(tmp_path / "cmd")
    cmd = [
        sys.executable,
        "-m",
        "fdn.data.prepare",
        "image_folder",
        f"--manual_dir={tmp_path / 'cmd'}",
        f"--data_dir={tmp_path / 'tfds'}",
        "--name=roads",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    bad = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr[-3000:]
    assert lines[-1].startswith("fdn.data.prepare: error: ") and "img1.png: labels [7]" in lines[-1]
    write_folder(tmp_path / "cmd")  # fixed
    good = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert good.returncode == 0, good.stderr[-3000:]
    assert "image_folder/roads/1.0.0 train: 5 examples" in good.stdout and "val: 1 examples" in good.stdout


def test_names_and_data_dirs(tmp_path):
    with pytest.raises(image_folder.ImageFolderError, match="bad NAME"):
        prepare.prepare("image_folder/a b", data_dir=tmp_path, manual_dir=tmp_path)
    with pytest.raises(image_folder.ImageFolderError, match="two names"):
        prepare.prepare("image_folder/a", data_dir=tmp_path, manual_dir=tmp_path, folder_name="b")
    with pytest.raises(image_folder.ImageFolderError, match="for image_folder only"):
        prepare.prepare("fdn_shapes", data_dir=tmp_path, task="depth")
    # auto_prepare (on in the demo configs) makes only fdn's generated data: a folder is found where it was put
    data = data_config("image_folder/x", "")
    assert catalog.resolve_data_dir(data, tmp_path) is None
    with pytest.raises(catalog.UnknownDatasetError, match="image_folder/x declares no class count"):
        catalog.num_classes_of(data_config("image_folder/x", tmp_path))


# ------------------------------------------------------------------------------ search and train on it
def voc_samples_folder(root):
    """The five real VOC samples as an image folder (VOC's 21 class names; palette masks as VOC ships them)."""
    if not VOC_SAMPLES.is_dir():
        pytest.skip(f"no VOC samples in {VOC_SAMPLES}")
    for stem in sorted(p.stem for p in VOC_SAMPLES.glob("*.jpg")):
        for suffix, sub in ((".jpg", "images"), (".png", "masks")):
            (root / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(VOC_SAMPLES / f"{stem}{suffix}", root / sub / f"{stem}{suffix}")
    (root / "classes.txt").write_text("\n".join(voc_sbd.CLASS_NAMES))
    return 21, list(voc_sbd.CLASS_NAMES)


def written_folder(root):
    write_folder(root, n=6, size=(40, 48))
    return 3, list(CLASSES)


FOLDERS = {"voc_samples": voc_samples_folder, "written": written_folder}


@pytest.fixture(scope="module", params=list(FOLDERS))
def prepared(request, tmp_path_factory):
    """(data_dir, dataset name, class count, class names) of a prepared image folder."""
    root = tmp_path_factory.mktemp(request.param)
    num_classes, names = FOLDERS[request.param](root / request.param)
    prepare.prepare("image_folder", data_dir=root / "tfds", manual_dir=root / request.param)
    return str(root / "tfds"), f"image_folder/{request.param}", num_classes, names


def test_search_reads_the_folder_and_its_class_count(prepared, tmp_path):
    """configs/voc.py:tiny with the stand-in trainer (seconds): the search reads the folder's train split and hands
    the trainer the folder's class count; only the dataset's name, place and split change."""
    from configs import voc
    from fdn.search import loop as search_loop
    from fdn.search import run_log
    from tests import fake_candidate

    data_dir, name, num_classes, _ = prepared
    seen = []

    def factory(config, classes, *args, **kwargs):
        seen.append(classes)
        return fake_candidate.CandidateTrainer(config, classes, *args, **kwargs)

    c = voc.get_config("tiny")
    c.data.name, c.data.data_dir, c.data.split = name, data_dir, "train"
    c.num_candidates = 2
    c.candidate.compilation_cache_dir = str(XLA_CACHE)  # the encoder's compile, shared with tests/test_search.py
    search_loop.run(c, tmp_path, trainer_factory=factory, progress=False, log=lambda *a: None)
    assert seen == [num_classes] and len(run_log.read(tmp_path)) == 2


@pytest.mark.slow
def test_search_on_an_image_folder(prepared, tmp_path):
    """configs/voc.py:tiny, real candidate trainer, stage 1 (its compile: ~1 min alone on 2 cores, 5 loaded): only
    the dataset's name, place and split change."""
    from configs import voc
    from fdn.candidate import CandidateTrainer
    from fdn.search import loop as search_loop
    from fdn.search import run_log

    data_dir, name, num_classes, _ = prepared
    c = voc.get_config("tiny")
    c.data.name, c.data.data_dir, c.data.split = name, data_dir, "train"
    c.num_candidates, c.max_stage = 1, 1
    c.candidate.compilation_cache_dir = str(XLA_CACHE)
    lines = []
    search_loop.run(c, tmp_path, trainer_factory=CandidateTrainer, progress=False, log=lines.append)
    assert any(f"{name}/train: meta-train" in line and f"{num_classes} classes" in line for line in lines), lines
    (record,) = run_log.read(tmp_path)
    assert record["failure"] is None and record["stage"] == 1 and 0.0 <= record["reward"] <= 1.0


@pytest.mark.slow
def test_train_on_an_image_folder(prepared, tmp_path):
    """configs/demo_train.py:tiny: the head gets the folder's class count, the checkpoint its class names."""
    import jax

    from configs import demo_train
    from fdn.serve import checkpoint
    from fdn.train import loop as train_loop

    jax.config.update("jax_compilation_cache_dir", str(XLA_CACHE))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    data_dir, name, num_classes, names = prepared
    c = demo_train.get_config("tiny")
    c.data.name, c.data.data_dir = name, data_dir
    result = train_loop.run(c, tmp_path, log=lambda *a: None)
    assert result["steps"] == 8 and np.isfinite(result["metrics"]["miou"])
    spec, _, info = checkpoint.load_model(tmp_path / "final_model")
    assert spec.decoder.num_classes == num_classes and info["metadata"]["class_names"] == names
