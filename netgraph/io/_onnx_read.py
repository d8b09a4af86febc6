"""ONNX files as untrusted input: size and node limits before and after parsing, external
data that must stay in the model's folder, stored bytes checked against declared shapes.
Every refusal is one :class:`~netgraph.errors.BadCheckpoint` line.  ``onnx`` is imported on
first use."""

from __future__ import annotations

import math
import os

import numpy as np

from ..errors import BadCheckpoint, NetgraphError

__all__ = ["MAX_ONNX_BYTES", "MAX_NODES", "onnx_module", "parse", "tensor"]

#: protobuf cannot hold a message of 2 GiB or more; bigger files use external data.
MAX_ONNX_BYTES = 2**31 - 1
#: refuse graphs with more nodes than this (a hostile file would otherwise cost minutes).
MAX_NODES = 200_000


def onnx_module():
    try:
        import onnx
    except ImportError:
        raise NetgraphError(
            "reading .onnx files needs the onnx package: pip install onnx "
            "(or pip install 'netgraph-topology[onnx]')") from None
    return onnx



def parse(path: str):
    onnx = onnx_module()
    try:
        st = os.stat(path)
    except OSError as exc:
        raise BadCheckpoint(f"{path}: cannot read ({exc.strerror})") from None
    import stat as _stat

    if not _stat.S_ISREG(st.st_mode):
        raise BadCheckpoint(f"{path}: not a regular file")
    if st.st_size > MAX_ONNX_BYTES:
        raise BadCheckpoint(f"{path}: {st.st_size} bytes; an ONNX protobuf holds less than 2 GiB "
                            "(bigger models keep their weights as external data)")
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise BadCheckpoint(f"{path}: not a valid ONNX protobuf ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else 'parse error'})") from None
    if not model.HasField("graph"):
        raise BadCheckpoint(f"{path}: the ONNX model has no graph")
    if len(model.graph.node) > MAX_NODES:
        raise BadCheckpoint(f"{path}: {len(model.graph.node)} nodes; at most {MAX_NODES} are read")
    _load_external(model, path)
    return model


def _load_external(model, path: str) -> None:
    """Load external tensor data, refusing locations outside the model's folder."""
    onnx = onnx_module()
    base = os.path.dirname(os.path.abspath(path))
    real_base = os.path.realpath(base)
    for init in model.graph.initializer:
        if init.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in init.external_data}
        loc = info.get("location", "")
        target = os.path.realpath(os.path.join(base, loc))
        if not loc or os.path.isabs(loc) or os.path.commonpath([real_base, target]) != real_base:
            raise BadCheckpoint(f"{path}: initializer {init.name!r} keeps its data at {loc!r}, "
                                "outside the model's folder; refused")
        if not os.path.isfile(target):
            raise BadCheckpoint(f"{path}: initializer {init.name!r}: external data file {loc!r} is missing")
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else os.path.getsize(target) - offset
        except ValueError:
            raise BadCheckpoint(f"{path}: initializer {init.name!r}: external offset/length are not integers") from None
        if offset < 0 or length < 0 or offset + length > os.path.getsize(target):
            raise BadCheckpoint(f"{path}: initializer {init.name!r}: external data runs past the end of {loc!r}")
        with open(target, "rb") as fh:
            fh.seek(offset)
            init.raw_data = fh.read(length)
        del init.external_data[:]
        init.data_location = onnx.TensorProto.DEFAULT


def tensor(init, path: str) -> np.ndarray:
    """An initializer / Constant value as numpy, its stored size checked against its shape."""
    onnx = onnx_module()
    from onnx import numpy_helper

    dims = [int(d) for d in init.dims]
    if any(d < 0 for d in dims):
        raise BadCheckpoint(f"{path}: tensor {init.name!r} has negative dimensions {dims}")
    n = math.prod(dims)
    if init.data_type == onnx.TensorProto.STRING:
        raise BadCheckpoint(f"{path}: tensor {init.name!r} holds strings; not a numeric weight")
    if init.HasField("raw_data"):
        try:
            itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
        except Exception:
            raise BadCheckpoint(f"{path}: tensor {init.name!r} has unknown data type {init.data_type}") from None
        if len(init.raw_data) != n * itemsize:
            raise BadCheckpoint(f"{path}: tensor {init.name!r} declares shape {dims} ({n * itemsize} bytes) "
                                f"but stores {len(init.raw_data)} bytes")
    else:
        stored = max(len(init.float_data), len(init.int32_data), len(init.int64_data),
                     len(init.double_data), len(init.uint64_data))
        if stored != n and not (stored == 0 and n == 0):
            raise BadCheckpoint(f"{path}: tensor {init.name!r} declares shape {dims} ({n} values) "
                                f"but stores {stored}")
    try:
        return np.array(numpy_helper.to_array(init))
    except Exception as exc:
        raise BadCheckpoint(f"{path}: tensor {init.name!r} cannot be read ({type(exc).__name__})") from None

