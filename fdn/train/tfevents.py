"""TensorBoard scalars without TensorFlow: a minimal ``events.out.tfevents.*`` writer.

The file is a sequence of TFRecord records, each ``uint64 length | uint32 masked_crc32c(length) | data |
uint32 masked_crc32c(data)`` (little endian), whose data is a serialised ``tensorflow.Event`` protobuf. The
first record carries ``file_version = "brain.Event:2"``; every later one ``wall_time``, ``step`` and a
``Summary`` with ``simple_value`` scalars. The protobuf fields are encoded by hand (field numbers from
tensorboard's ``event.proto`` / ``summary.proto``):

    Event:   1 wall_time (double), 2 step (int64), 3 file_version (string), 5 summary (Summary)
    Summary: 1 value (repeated Value)
    Value:   1 tag (string), 2 simple_value (float)

CRC-32C (Castagnoli) is computed in pure Python from a table: the records are small and few.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path


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


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 two's complement, as protobuf encodes negative int64s
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _bytes_field(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def scalar_value(tag: str, value: float) -> bytes:
    """A ``Summary.Value`` with ``tag`` and ``simple_value``."""
    return _bytes_field(1, tag.encode()) + _key(2, 5) + struct.pack("<f", float(value))


def event(wall_time: float, step: int | None = None, *, file_version: str | None = None,
          scalars: dict | None = None) -> bytes:
    """A serialised ``Event``."""
    out = _key(1, 1) + struct.pack("<d", wall_time)
    if step is not None:
        out += _key(2, 0) + _varint(int(step))
    if file_version is not None:
        out += _bytes_field(3, file_version.encode())
    if scalars:
        summary = b"".join(_bytes_field(1, scalar_value(k, v)) for k, v in scalars.items())
        out += _bytes_field(5, summary)
    return out


def record(data: bytes) -> bytes:
    """One TFRecord framing of ``data``."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


class EventWriter:
    """Appends scalar events to a new ``events.out.tfevents.<time>.<host>`` file in ``logdir``."""

    def __init__(self, logdir):
        logdir = Path(logdir)
        logdir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        self.path = logdir / f"events.out.tfevents.{int(now)}.{socket.gethostname()}"
        self._file = open(self.path, "ab")
        self._file.write(record(event(now, file_version="brain.Event:2")))
        self._file.flush()

    def scalars(self, step: int, values: dict) -> None:
        values = {k: float(v) for k, v in values.items()}
        self._file.write(record(event(time.time(), step, scalars=values)))
        self._file.flush()

    def close(self) -> None:
        self._file.close()
