"""Malformed safetensors files built byte by byte: (name, bytes) pairs.

A safetensors file is an 8-byte little-endian header length N, N bytes of UTF-8 JSON
({"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}),
then the tensor bytes, offsets relative to the end of the header.
"""

from __future__ import annotations

import json
import struct


def build(header: object, data: bytes = b"", raw_header: bytes | None = None) -> bytes:
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def tensor(dtype: str, shape: list[int], begin: object, end: object) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


GOOD_DATA = bytes(16)  # room for four float32 values


def corpus() -> list[tuple[str, bytes]]:
    """Every malformed shape of file the loader must refuse with its own error."""
    good = {"w": tensor("F32", [2, 2], 0, 16)}
    return [
        ("empty file", b""),
        ("7 bytes", b"\x08\x00\x00\x00\x00\x00\x00"),
        ("header length past the end", struct.pack("<Q", 1000) + b"{}"),
        ("huge header length", struct.pack("<Q", 2**63) + b"{}"),
        ("header length 0", struct.pack("<Q", 0)),
        ("non-UTF-8 header", build(None, GOOD_DATA, raw_header=b'{"\xff\xfe": 1}')),
        ("header not JSON", build(None, GOOD_DATA, raw_header=b"not json at all")),
        ("header a JSON list", build([1, 2, 3], GOOD_DATA)),
        ("trailing bytes", build(good, GOOD_DATA + b"extra")),
        ("missing bytes", build(good, GOOD_DATA[:10])),
        (
            "overlapping offsets",
            build({"a": tensor("F32", [2], 0, 8), "b": tensor("F32", [2], 4, 12)}, GOOD_DATA),
        ),
        (
            "offsets disagree with shape x dtype",
            build({"w": tensor("F32", [3, 2], 0, 16)}, GOOD_DATA),
        ),
        ("reversed offsets", build({"w": tensor("F32", [0], 16, 0)}, GOOD_DATA)),
        (
            "shape-product overflow",
            build({"w": tensor("F32", [2**62, 2**62, 16], 0, 16)}, GOOD_DATA),
        ),
        ("negative dimension", build({"w": tensor("F32", [-4], 0, 16)}, GOOD_DATA)),
        ("unknown dtype", build({"w": tensor("Q7", [4], 0, 16)}, GOOD_DATA)),
        (
            "duplicate names",
            build(
                None,
                GOOD_DATA,
                raw_header=b'{"w": {"dtype": "F32", "shape": [2], '
                b'"data_offsets": [0, 8]}, "w": {"dtype": "F32", "shape": [2], '
                b'"data_offsets": [8, 16]}}',
            ),
        ),
        ("non-string metadata", build({"__metadata__": {"step": 3}, **good}, GOOD_DATA)),
        ("metadata not an object", build({"__metadata__": [1], **good}, GOOD_DATA)),
        ("tensor entry not an object", build({"w": "F32"}, GOOD_DATA)),
        ("offsets not integers", build({"w": tensor("F32", [4], "0", "16")}, GOOD_DATA)),
        (
            "deeply nested header",
            build(None, GOOD_DATA, raw_header=b"[" * 100_000 + b"]" * 100_000),
        ),
        ("pickle payload", b"\x80\x04\x95" + bytes(40)),
        ("zip archive (torch.save)", b"PK\x03\x04" + bytes(60)),
    ]
