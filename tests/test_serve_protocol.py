"""The Open Inference Protocol codec of aetk serve (aetk/serve/protocol.py), without HTTP:
round trips of requests and responses, JSON and binary, for every numeric datatype, and the
refusals (ProtocolError, with the HTTP status to answer)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aetk.serve.protocol import (DTYPES, ProtocolError, decode_infer_response, encode_infer_request,
                                 encode_infer_response, parse_infer_request)

MAX_JSON = 1 << 20
NUMERIC = [d for d in DTYPES.values()]


@st.composite
def tensors(draw):
    dtype = draw(st.sampled_from(NUMERIC))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5))
    elements = None
    if dtype.kind == "f":
        elements = st.floats(-1e4, 1e4, width=dtype.itemsize * 8)  # JSON cannot carry NaN faithfully
    return draw(hnp.arrays(dtype, shape, elements=elements))


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(st.text("abcxyz_", min_size=1, max_size=6), tensors(), min_size=1, max_size=3),
       st.booleans())
def test_request_round_trip(inputs, binary):
    body, header_length = encode_infer_request(inputs, binary=binary, request_id="q")
    req = parse_infer_request(body, header_length, MAX_JSON)
    assert req.id == "q" and list(req.inputs) == list(inputs)
    for name, arr in inputs.items():
        got = req.inputs[name]
        assert got.dtype == arr.dtype and got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(tensors(), st.booleans()), min_size=1, max_size=3))
def test_response_round_trip(outputs):
    named = [(f"out{i}", arr, binary) for i, (arr, binary) in enumerate(outputs)]
    pieces, header_length = encode_infer_response("m", "1", named, "id7")
    body = b"".join(bytes(p) for p in pieces)
    assert (header_length is None) == (not any(b for _, _, b in named))
    head = json.loads(body if header_length is None else body[:header_length])
    assert head["model_name"] == "m" and head["model_version"] == "1" and head["id"] == "id7"
    got = decode_infer_response(body, header_length)
    for name, arr, _ in named:
        assert got[name].dtype == arr.dtype and got[name].shape == arr.shape
        np.testing.assert_array_equal(got[name], arr)


def test_binary_inputs_are_views_of_the_body():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    body, hl = encode_infer_request({"x": x})
    body = bytearray(body)
    req = parse_infer_request(body, hl, MAX_JSON)
    assert not req.inputs["x"].flags.owndata  # no copy of large tensors


def test_nested_json_data_is_accepted():
    doc = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT32", "data": [[1, 2], [3, 4]]}],
           "outputs": [{"name": "y", "parameters": {"binary_data": True}}], "parameters": {"binary_data_output": False}}
    req = parse_infer_request(json.dumps(doc).encode(), None, MAX_JSON)
    np.testing.assert_array_equal(req.inputs["x"], [[1, 2], [3, 4]])
    assert req.outputs[0].name == "y" and req.outputs[0].binary is True and req.binary_output is False


def _req(inputs, **extra):
    return json.dumps({"inputs": inputs, **extra}).encode()


X = {"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0]}
BAD = [
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    (b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply|rectangular|object"),
    (_req([{**X, "shape": [3], "data": [[[[[[1.0]]]]]] * 2}]), "holds 2 values"),
    (_req([{**X, "datatype": "BYTES"}]), "not supported"),
    (_req([{**X, "datatype": "INT32", "data": [1.5, 2]}]), "fractions"),
    (_req([{**X, "data": [True, "a"]}]), "only numbers"),
    (_req([{**X, "data": [None, 1.0]}]), "only numbers"),
    (_req([{**X, "shape": [2, -1]}]), "non-negative"),
    (_req([{**X, "shape": [1] * 40}]), "at most 16"),
    (_req([{**X, "shape": "2"}]), "shape"),
    (_req([X, X]), "given twice"),
    (_req([{**X, "extra": 1}]), "unknown keys"),
    (_req([{**X, "parameters": {"binary_data_size": 8}}]), "not both"),
    (_req([{k: v for k, v in X.items() if k != "data"}]), "neither"),
    (_req([X], id=5), "'id' must be a string"),
    (_req([X], parameters={"binary_data_output": "yes"}), "binary_data_output"),
    (_req([X], outputs=[{"name": "y", "parameters": {"classification": 2}}]), "classification"),
    (_req([X], outputs="y"), "'outputs' must be a list"),
    (_req([]), "non-empty"),
    (b"[]", "must be a JSON object"),
    (b"\xff", "invalid JSON"),
]


@pytest.mark.parametrize("body,message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_requests_are_protocol_errors(body, message):
    with pytest.raises(ProtocolError, match=message) as err:
        parse_infer_request(body, None, MAX_JSON)
    assert err.value.status == 400


def test_binary_sizes_must_add_up():
    x = np.zeros((2, 3), np.float32)
    body, hl = encode_infer_request({"x": x})
    with pytest.raises(ProtocolError, match="ends before"):
        parse_infer_request(body[:-1], hl, MAX_JSON)
    with pytest.raises(ProtocolError, match="after the tensors"):
        parse_infer_request(body + b"\0", hl, MAX_JSON)
    with pytest.raises(ProtocolError, match="does not fit"):
        parse_infer_request(body, len(body) + 1, MAX_JSON)
    doc = json.loads(body[:hl])
    doc["inputs"][0]["parameters"]["binary_data_size"] = 20
    head = json.dumps(doc).encode()
    with pytest.raises(ProtocolError, match="does not match shape"):
        parse_infer_request(head + body[hl:], len(head), MAX_JSON)


def test_json_limit_is_a_413():
    body, _ = encode_infer_request({"x": np.zeros(1000, np.float32)}, binary=False)
    with pytest.raises(ProtocolError) as err:
        parse_infer_request(body, None, 100)
    assert err.value.status == 413 and "--max-json-mb" in str(err.value)
