"""TensorBoard event files of `MetricWriter` (written by tensorboardX): the TFRecord framing, masked CRC-32C
and the Event / Summary protobuf fields, read back by an independent minimal parser (own CRC, own protobuf
decoding; field numbers from tensorboard's ``event.proto`` / ``summary.proto``)."""

import math
import struct

import pytest

from fdn.train.metric_writer import MetricWriter


def _crc_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def parse_message(buf):
    """{field: [values]} of a protobuf message (wire types 0, 1, 2, 5)."""
    fields, i = {}, 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        fields.setdefault(field, []).append(value)
    return fields


def read_records(path):
    data = path.read_bytes()
    out, i = [], 0
    while i < len(data):
        header = data[i : i + 8]
        (length,) = struct.unpack("<Q", header)
        (hcrc,) = struct.unpack("<I", data[i + 8 : i + 12])
        assert hcrc == masked_crc32c(header)
        body = data[i + 12 : i + 12 + length]
        (bcrc,) = struct.unpack("<I", data[i + 12 + length : i + 16 + length])
        assert bcrc == masked_crc32c(body)
        out.append(body)
        i += 16 + length
    assert i == len(data)
    return out


def scalars_of(event_bytes):
    ev = parse_message(event_bytes)
    step = ev.get(2, [0])[0]
    values = {}
    for value in parse_message(ev[5][0]).get(1, []):
        v = parse_message(value)
        values[v[1][0].decode()] = struct.unpack("<f", v[2][0])[0]
    return step, values


def test_crc32c_known_values():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros


def test_event_file_parses(tmp_path):
    writer = MetricWriter(tmp_path)
    writer.write(7, "train", {"loss": 0.5, "miou": 0.25})
    writer.write(2**40, "eval", {"x": -3.0, "rmse": float("nan")})
    writer.close()
    (path,) = (tmp_path / "tensorboard").glob("events.out.tfevents.*")
    records = read_records(path)
    assert len(records) == 3
    first = parse_message(records[0])
    assert first[3] == [b"brain.Event:2"] and struct.unpack("<d", first[1][0])[0] > 1.6e9
    assert scalars_of(records[1]) == (7, {"train/loss": 0.5, "train/miou": 0.25})
    step, values = scalars_of(records[2])
    assert step == 2**40 and values["eval/x"] == -3.0 and math.isnan(values["eval/rmse"])
    assert set(values) == {"eval/x", "eval/rmse"}


def test_metric_writer_drops_lines_past_the_resumed_step(tmp_path):
    w = MetricWriter(tmp_path)
    for step in (1, 2, 3):
        w.write(step, "train", {"loss": float(step)})
    w.write(3, "eval", {"rmse": float("nan")})
    w.close()
    w = MetricWriter(tmp_path, resume_step=2)
    w.write(3, "train", {"loss": 30.0})
    w.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [line for line in lines] == [
        '{"step": 1, "kind": "train", "loss": 1.0}',
        '{"step": 2, "kind": "train", "loss": 2.0}',
        '{"step": 3, "kind": "train", "loss": 30.0}',
    ]
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) >= 1


if __name__ == "__main__":
    pytest.main([__file__])
