"""Sample observations shipped inside a model file: the codec, bounded both ways.

``zima export --samples EPISODE_DIR`` writes a few real observations from the episodes
into the ONNX file's ``metadata_props[SAMPLES_KEY]``; ``load_model`` (hence the runtime's
start and ``reload``, and ``zima deploy`` before it uploads) runs the model on each and
refuses a model whose outputs on them are not finite and in range. A model that is
finite on the random warm-up input but NaN on live frames is found before it drives.
Inside the model file rather than beside it: the samples travel wherever the file goes
(``deploy``'s content-addressed store, its atomic link switch and rollback, the int8
copy) and are read from the same bytes as the graph.

The value is compact JSON (keys sorted)::

    {"format": 1, "count": S,
     "image_shape": [N, H, W, 3],                  the contract's image_shape
     "images": "<base64 of zlib of uint8 [S, N, H, W, 3], C order>",
     "action_history": [[a, ...], ...]}            S rows of action_history ints

Pure (no onnxruntime): ``decode_samples`` takes any text and returns the samples or
raises ``ValueError`` saying what is wrong; the text's length, the count
(``MAX_SAMPLES``), the decompressed size and every action index are bounded before use.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import zlib
from dataclasses import dataclass
from typing import Final

import numpy as np

from zima.contract import Contract

__all__ = ["FORMAT", "MAX_SAMPLES", "SAMPLES_KEY", "ModelSamples", "decode_samples",
           "encode_samples"]

SAMPLES_KEY: Final = "zima_samples"
"""Key of the shipped samples in the ONNX file's metadata_props."""
FORMAT: Final = 1
MAX_SAMPLES: Final = 16  # a check, not a data set: keeps the model file small
_SLACK_CHARS: Final = 4096  # JSON keys, the action histories, zlib's header


@dataclass(frozen=True, slots=True)
class ModelSamples:
    """Observations: images uint8 [S, N, H, W, 3], action_history int64 [S, A]."""

    images: np.ndarray
    action_history: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


def encode_samples(images: np.ndarray, action_history: np.ndarray, contract: Contract) -> str:
    """The metadata value for ``images`` [S, N, H, W, 3] uint8 and ``action_history``
    [S, A] int (1 <= S <= MAX_SAMPLES, shapes of ``contract``)."""
    samples = _checked(np.asarray(images), np.asarray(action_history), contract)
    packed = zlib.compress(np.ascontiguousarray(samples.images).tobytes(), 9)
    return json.dumps({
        "format": FORMAT, "count": len(samples), "image_shape": list(contract.image_shape),
        "images": base64.b64encode(packed).decode("ascii"),
        "action_history": samples.action_history.tolist()}, sort_keys=True,
        separators=(",", ":"))


def decode_samples(text: str, contract: Contract) -> ModelSamples:
    """The samples in ``text`` (what :func:`encode_samples` wrote) for ``contract``;
    ``ValueError`` naming the problem for anything else."""
    image_bytes = math.prod(contract.image_shape)
    raw_limit = MAX_SAMPLES * image_bytes
    # base64 of zlib output: zlib adds at most ~0.1 % to incompressible data
    if len(text) > (raw_limit + raw_limit // 500) * 4 // 3 + _SLACK_CHARS:
        raise ValueError(f"shipped samples: {len(text)} characters, more than "
                         f"{MAX_SAMPLES} samples take")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: deep nesting
        raise ValueError(f"shipped samples are not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("shipped samples must be a JSON object")
    if data.get("format") != FORMAT:
        raise ValueError(f"shipped samples: format {data.get('format')!r}, expected {FORMAT}")
    count = data.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_SAMPLES:
        raise ValueError(f"shipped samples: count {count!r} must be 1..{MAX_SAMPLES}")
    if data.get("image_shape") != list(contract.image_shape):
        raise ValueError(f"shipped samples: image_shape {data.get('image_shape')!r}, "
                         f"the contract's is {list(contract.image_shape)}")
    packed = data.get("images")
    if not isinstance(packed, str):
        raise ValueError("shipped samples: images must be a base64 string")
    want = count * image_bytes
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(base64.b64decode(packed, validate=True), want + 1)
    except (binascii.Error, zlib.error) as exc:
        raise ValueError(f"shipped samples: images are not base64 of zlib data: {exc}") from None
    if len(raw) != want or not inflater.eof or inflater.unused_data:
        raise ValueError(f"shipped samples: images are not {want} bytes "
                         f"({count} x {list(contract.image_shape)} uint8)")
    history = data.get("action_history")
    rows_ok = isinstance(history, list) and len(history) == count and all(
        isinstance(row, list) and len(row) == contract.action_history
        and all(isinstance(a, int) and not isinstance(a, bool) for a in row)
        for row in history)
    if not rows_ok:
        raise ValueError(f"shipped samples: action_history must be {count} lists of "
                         f"{contract.action_history} ints")
    images = np.frombuffer(raw, np.uint8).reshape(count, *contract.image_shape)
    return _checked(images, np.array(history, np.int64).reshape(count, -1), contract)


def _checked(images: np.ndarray, history: np.ndarray, contract: Contract) -> ModelSamples:
    count = len(images)
    if not 1 <= count <= MAX_SAMPLES:
        raise ValueError(f"shipped samples: {count}, expected 1..{MAX_SAMPLES}")
    if images.dtype != np.uint8 or images.shape[1:] != contract.image_shape:
        raise ValueError(f"shipped sample images are {images.dtype} {list(images.shape)}, "
                         f"expected uint8 [S, {', '.join(map(str, contract.image_shape))}]")
    if history.shape != (count, contract.action_history) or history.dtype.kind not in "iu":
        raise ValueError(f"shipped sample action_history is {history.dtype} "
                         f"{list(history.shape)}, expected int [{count}, "
                         f"{contract.action_history}]")
    if history.size and not ((history >= 0) & (history < contract.n_actions)).all():
        raise ValueError(f"shipped sample action_history holds indices outside "
                         f"0..{contract.n_actions - 1}")
    return ModelSamples(images, history.astype(np.int64))
