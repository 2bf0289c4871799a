"""fdn_shapes' records: rendered on every core yet in index order, and the PNG round-trips the image exactly."""

import io

import numpy as np
from PIL import Image

from fdn.data import shapes


def test_records_come_in_index_order_and_equal_the_serial_rendering():
    records = list(shapes._records("val", 7, window=3))  # three windows, the last one short
    assert [key for key, _ in records] == [shapes.image_id("val", i) for i in range(7)]
    for index, (_, record) in enumerate(records):
        expected = shapes.render("val", index)
        decoded = np.asarray(Image.open(io.BytesIO(record["image"])))
        np.testing.assert_array_equal(decoded, expected["image"])
        for name in ("segmentation", "depth", "keypoints"):
            np.testing.assert_array_equal(record[name], expected[name])
