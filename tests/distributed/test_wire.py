"""The msgpack header format (distnn/distributed/wire.py): what decodes, what is
rejected as MalformedMessage, and mismatch errors that name the differing field."""

import os

import msgpack
import pytest

from distnn.distributed import DistributedError, wire

JOB = b"\x01\x02\x03\x04\x05\x06\x07\x08"
WORLD = 4


def good(**changes):
    header = {"job": JOB, "grp": 0, "op": "all_reduce.sum", "seq": 3, "src": 1, "dtype": "float32",
              "shape": [2, 5], "seg": 0, "nbytes": 40}
    header.update(changes)
    return header


def pack(header):
    return msgpack.packb(header, use_bin_type=True)


def test_round_trip():
    frame = wire.encode_header(JOB, 0, "all_reduce.sum", 3, 1, "float32", (2, 5), 0, 40)
    assert wire.decode_header(frame, JOB, WORLD) == good()


@pytest.mark.parametrize("dtype", sorted(wire.WIRE_DTYPES))
def test_every_wire_dtype_decodes(dtype):
    assert wire.decode_header(pack(good(dtype=dtype)), JOB, WORLD)["dtype"] == dtype


def test_abort_round_trip():
    header = wire.decode_header(wire.encode_abort(JOB, 2, "rank 2: boom"), JOB, WORLD)
    assert (header["op"], header["src"], header["dtype"]) == (wire.ABORT_OP, 2, "rank 2: boom")


def test_long_abort_reason_is_truncated_but_still_decodes():
    header = wire.decode_header(wire.encode_abort(JOB, 0, "x" * 10000), JOB, WORLD)
    assert header["dtype"] == "x" * 2000


def test_long_non_ascii_abort_reason_still_decodes():
    # The reason is cut to 2000 characters, but the decoder limits strings to 4096 *bytes*:
    # a reason in a non-Latin script (3 bytes per character in UTF-8) must still arrive.
    reason = "失敗" * 2000
    header = wire.decode_header(wire.encode_abort(JOB, 0, reason), JOB, WORLD)
    assert reason.startswith(header["dtype"]) and header["dtype"]


GARBAGE = [
    b"",
    b"\x00",
    b"\xc1",                                   # never-used msgpack byte
    os.urandom(64),
    b"GET / HTTP/1.1\r\n\r\n",
    pack([1, 2, 3]),
    pack("all_reduce"),
    pack(None),
    pack({"op": "all_reduce.sum"}),
    pack(good()) + b"trailing",
    pack({**good(), "extra": 1}),
    pack({k: v for k, v in good().items() if k != "nbytes"}),
    pack({1: 2}),
    b"\xdf\xff\xff\xff\xff",                    # map claiming 4 billion entries
    b"\xdd\xff\xff\xff\xff",                    # array claiming 4 billion entries
    pack(good(shape=list(range(100)))),         # more dimensions than any array has
]


@pytest.mark.parametrize("frame", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_is_malformed(frame):
    with pytest.raises(wire.MalformedMessage):
        wire.decode_header(frame, JOB, WORLD)


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_are_malformed(seed):
    import random
    rng = random.Random(seed)
    frame = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    with pytest.raises(wire.MalformedMessage):
        wire.decode_header(frame, JOB, WORLD)


@pytest.mark.parametrize("field, value", [
    ("job", "12345678"), ("grp", "0"), ("grp", 1.0), ("op", b"all_reduce"), ("op", 7), ("seq", "3"),
    ("seq", True), ("src", 1.0), ("src", None), ("dtype", 4), ("shape", "2,5"), ("shape", {"0": 2}),
    ("seg", False), ("nbytes", 40.0), ("nbytes", [40]),
])
def test_wrong_field_type_is_malformed_and_named(field, value):
    with pytest.raises(wire.MalformedMessage, match=repr(field)):
        wire.decode_header(pack(good(**{field: value})), JOB, WORLD)


@pytest.mark.parametrize("changes", [
    {"dtype": "object"}, {"dtype": "complex64"}, {"dtype": "<f4"}, {"dtype": "float128"},
    {"shape": [2, -5]}, {"shape": [2.0, 5]}, {"shape": ["2"]}, {"shape": [None]}, {"nbytes": -1},
])
def test_bad_dtype_shape_or_size_is_malformed(changes):
    with pytest.raises(wire.MalformedMessage):
        wire.decode_header(pack(good(**changes)), JOB, WORLD)


@pytest.mark.parametrize("job", [b"\x00" * 8, JOB[:7], JOB + b"\x00", b""])
def test_other_job_is_malformed(job):
    with pytest.raises(wire.MalformedMessage, match="another job"):
        wire.decode_header(pack(good(job=job)), JOB, WORLD)


@pytest.mark.parametrize("src", [-1, WORLD, WORLD + 100, 2 ** 40])
def test_foreign_sender_rank_is_malformed(src):
    with pytest.raises(wire.MalformedMessage, match=f"sender rank {src}"):
        wire.decode_header(pack(good(src=src)), JOB, WORLD)


@pytest.mark.parametrize("frame", [
    wire.encode_abort(b"\x00" * 8, 1, "forged"),       # abort from another job
    wire.encode_abort(JOB, WORLD, "forged"),           # abort from a rank outside the world
])
def test_forged_abort_is_malformed(frame):
    with pytest.raises(wire.MalformedMessage):
        wire.decode_header(frame, JOB, WORLD)


def expect(**changes):
    e = {"op": "all_reduce.sum", "seq": 3, "dtype": "float32", "shape": [2, 5], "seg": 0, "nbytes": 40}
    e.update(changes)
    return e


@pytest.mark.parametrize("field, mine, theirs", [
    ("op", "all_reduce.max", "all_reduce.sum"),
    ("op", "broadcast.from0", "all_reduce.sum"),
    ("dtype", "float64", "float32"),
    ("shape", [2, 6], [2, 5]),
    ("shape", [10], [2, 5]),
])
def test_check_expected_names_field_ranks_and_values(field, mine, theirs):
    with pytest.raises(DistributedError) as info:
        wire.check_expected(good(), expect(**{field: mine}), my_rank=3)
    message = str(info.value)
    for part in ("rank 3", "rank 1", f"{field} differs", repr(mine), repr(theirs), "sequence 3"):
        assert part in message, message


@pytest.mark.parametrize("mine, theirs, argument", [
    ("broadcast.from0", "broadcast.from2", "src differs: this rank has 0, the peer has 2"),
    ("gather.to1", "gather.to0", "dst differs: this rank has 1, the peer has 0"),
    ("all_reduce.max", "all_reduce.sum", "reduce op differs: this rank has max, the peer has sum"),
])
def test_mismatch_names_the_argument_that_differs(mine, theirs, argument):
    header = dict(expect(op=theirs), src=1)
    message = str(wire.mismatch(header, expect(op=mine), 3, 3))
    assert "op differs" in message and argument in message, message


def test_check_expected_names_byte_count():
    with pytest.raises(DistributedError) as info:
        wire.check_expected(good(nbytes=36), expect(), my_rank=0)
    for part in ("rank 0", "rank 1", "36", "40"):
        assert part in str(info.value)


def test_check_expected_accepts_match():
    wire.check_expected(good(), expect(), my_rank=0)
