"""A minimal protobuf wire-format walker, used to read an ONNX file without loading its weights.

It yields each field's number, wire type and byte span; length-delimited payloads are not copied, so
a multi-gigabyte ``raw_data`` costs nothing to skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


class WireError(Exception):
    """The bytes are not valid protobuf. ``truncated`` is True when the data simply ends too early."""

    def __init__(self, message: str, offset: int, truncated: bool = False) -> None:
        super().__init__(message)
        self.offset = offset
        self.truncated = truncated


@dataclass(frozen=True)
class Field:
    number: int
    wire_type: int
    start: int  # offset of the field's tag
    end: int  # offset just past the field
    value: int | None = None  # for varints
    payload_start: int = 0  # for length-delimited fields
    payload_end: int = 0


def read_varint(buf: Any, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise WireError("data ends inside a number", pos, truncated=True)
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("a number is longer than protobuf allows", pos)


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_length_field(number: int, payload: bytes) -> bytes:
    return encode_varint(number << 3 | LENGTH) + encode_varint(len(payload)) + payload


def iter_fields(buf: Any, start: int, end: int) -> Iterator[Field]:
    """Yield the fields of the message stored in ``buf[start:end]``."""
    pos = start
    while pos < end:
        fstart = pos
        key, pos = read_varint(buf, pos, end)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0 is not valid protobuf", fstart)
        if wire_type == VARINT:
            value, pos = read_varint(buf, pos, end)
            yield Field(number, wire_type, fstart, pos, value=value)
        elif wire_type == LENGTH:
            length, pos = read_varint(buf, pos, end)
            if pos + length > end:
                raise WireError(f"a field claims {length} bytes but only {end - pos} remain", fstart,
                                truncated=True)
            yield Field(number, wire_type, fstart, pos + length, payload_start=pos, payload_end=pos + length)
            pos += length
        elif wire_type in (FIXED64, FIXED32):
            pos += 8 if wire_type == FIXED64 else 4
            if pos > end:
                raise WireError("data ends inside a fixed-size number", fstart, truncated=True)
            yield Field(number, wire_type, fstart, pos)
        else:
            raise WireError(f"wire type {wire_type} is not used by ONNX", fstart)
