"""Optional int8: onnxruntime's dynamic quantisation of an exported float model.

Weights become 8-bit, activations are quantised on the fly (no calibration data needed).
Weights are unsigned (QUInt8): onnxruntime's CPU ConvInteger kernel is 3x slower with
signed int8 weights on x86 without VNNI (measured by bench/training_bench.py: the small
policy 5.8 ms signed vs 1.8 ms unsigned, resnet18 142 vs 47 ms; fp32 1.2 and 45 ms), and the
file is 4x smaller either way.
The contract and the other metadata are copied over, so the runtime verifies an int8
file exactly as it verifies the float one. Accuracy is judged as argmax agreement with
the float model, not with PyTorch (int8 logits are not expected to match to 1e-3).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]

from .onnx_export import save_atomic, set_metadata


def quantize_int8(float_path: str | os.PathLike[str], int8_path: str | os.PathLike[str]) -> Path:
    """Write the dynamic int8 quantisation of ``float_path`` to ``int8_path`` (atomically)."""
    int8_path = Path(int8_path)
    source = onnx.load(str(float_path))
    props = {p.key: p.value for p in source.metadata_props}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "int8.onnx"
        quantize_dynamic(str(float_path), str(out), weight_type=QuantType.QUInt8)
        proto = onnx.load(str(out))
    set_metadata(proto, props)
    save_atomic(proto, int8_path)
    return int8_path
