"""The policy model: an ONNX file that carries its contract, verified before it is used.

The model I/O contract (what export must produce; the names are defined here only)::

    input   images          uint8   [B, N, H, W, 3]   N = len(cameras) * image_history,
                                                      H, W = image_height, image_width; RGB
    input   action_history  int64   [B, A]            A = action_history, oldest first
    output  logits          float32 [B, chunk_len, n_actions]
    metadata_props[METADATA_KEY] = Contract.to_json() of the contract it was trained on

and, only for a contract with an arm head (``contract.arm_dims`` > 0; zima.contract)::

    input   arm_state       float32 [B, ARM_STATE_DIMS]  commanded tool pose and opening
    output  arm_logits      float32 [B, chunk_len, arm_dims, n_arm_levels]  (second output)

    metadata_props[SAMPLES_KEY]  = optional: a few real observations (``zima export
                                   --samples``), :mod:`zima.onboard.model_samples`

B may be symbolic or 1; every other dimension must be static and equal to the contract's
(the ordering of the images is the contract's: camera-major, oldest to newest). A file
whose output is ``tracks`` was exported with the continuous head, which Zima no longer
has (``REMOVED_TRACKS_OUTPUT``): it is refused saying so.

**No action is taken from an output before** :func:`check_output` **passed it**: every
value finite and within +-``MAX_ABS_LOGIT``; the arm's logits likewise
(:func:`check_arm_output`) before any arm bin is chosen from them. (argmax of NaN logits
picks the first NaN's index, which can be FORWARD; softmax sampling of them silently
becomes STOP: neither may happen.)
The runner checks every inference this way (a bad one is a STOP with its reason, and a
few in a row make the model faulty: :mod:`zima.onboard.policy_runner`).

``load_model`` reads the file once (the sha256 and the session come from the same bytes),
opens an onnxruntime session (on the CPU provider unless told otherwise) and refuses,
with a ``ModelError`` naming what is wrong: a file that is missing or not ONNX, a model
without a contract or with another contract than the runtime's (each mismatching field
named), inputs or outputs that are not the I/O contract (an unknown or a second output
included), a model whose outputs on a random observation fail :func:`check_output` or differ between
two runs on the same input (random ops left in the graph, as a training-mode export can
leave; onnxruntime's optimizer already drops Dropout), and, when the file ships sample
observations, unreadable samples or a model whose output on any of them fails
:func:`check_output` (a model that is finite on random input but NaN on real frames).
``zima deploy`` verifies with ``load_model`` before it uploads, and the runtime's start
and ``reload`` load with it: all three run the shipped samples. Exceptions::

    PolicyError                 anything the policy raises
     +-- ModelError             a model file that cannot be used (a hot reload keeps the old)
     |    +-- ModelFileError         missing, unreadable, or not a model onnxruntime loads
     |    +-- NoContractError        no readable contract in metadata_props[METADATA_KEY]
     |    +-- ContractMismatchError  another contract; ``.mismatches`` lists the fields
     |    +-- ModelIOError           inputs, outputs or warm-up outputs not the I/O contract
     |    +-- SampleOutputError      shipped samples unreadable, or an output on one bad
     +-- BadOutputError         one inference's output no action may be taken from
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]

from zima.contract import ARM_STATE_DIMS, METADATA_KEY, Contract
from zima.onboard.model_samples import SAMPLES_KEY, decode_samples
from zima.onboard.ort_options import session_options

__all__ = [
    "ACTION_HISTORY_INPUT",
    "ARM_LOGITS_OUTPUT",
    "ARM_STATE_INPUT",
    "CPU_PROVIDERS",
    "IMAGES_INPUT",
    "LOGITS_OUTPUT",
    "MAX_ABS_LOGIT",
    "REMOVED_HEAD",
    "REMOVED_TRACKS_OUTPUT",
    "BadOutputError",
    "ContractMismatchError",
    "ModelError",
    "ModelFileError",
    "ModelIOError",
    "NoContractError",
    "PolicyError",
    "PolicyModel",
    "SampleOutputError",
    "arm_output_problem",
    "arm_output_shape",
    "check_arm_output",
    "check_output",
    "check_warmup",
    "io_names",
    "io_shapes",
    "load_model",
    "output_problem",
    "output_shape",
    "values_problem",
    "warmup_arm_state",
    "warmup_observation",
]

IMAGES_INPUT: Final = "images"
ACTION_HISTORY_INPUT: Final = "action_history"
LOGITS_OUTPUT: Final = "logits"
ARM_STATE_INPUT: Final = "arm_state"
ARM_LOGITS_OUTPUT: Final = "arm_logits"
REMOVED_TRACKS_OUTPUT: Final = "tracks"
"""The output of the removed continuous head (track speeds, mm/s): refused by name."""
REMOVED_HEAD: Final = (
    "the continuous head (output 'tracks', track speeds) was removed from Zima: its "
    "demonstrations only held the four discrete actions, and it drove them worse than the "
    "discrete head (78 % against 93 % on the held-out seeds); export a discrete policy "
    "(output 'logits')")
MAX_ABS_LOGIT: Final = 1e4
"""Logits beyond +-this are a broken model, not a confident one (softmax saturates far
below: a logit gap of 40 already gives the runner-up less than 1e-17)."""
CPU_PROVIDERS: Final = ("CPUExecutionProvider",)


class PolicyError(Exception):
    """Base of everything the policy raises."""


class ModelError(PolicyError):
    """A model file that cannot be used."""


class ModelFileError(ModelError):
    """Missing, unreadable, or not a model onnxruntime can load."""


class NoContractError(ModelError):
    """The model carries no readable contract."""


class ContractMismatchError(ModelError):
    """The model was made for another contract than the runtime's."""

    def __init__(self, message: str, mismatches: Sequence[str]) -> None:
        super().__init__(message)
        self.mismatches = tuple(mismatches)


class ModelIOError(ModelError):
    """Inputs or outputs are not the model I/O contract."""


class SampleOutputError(ModelError):
    """The sample observations shipped in the file are unreadable, or the model's output
    on one of them fails :func:`check_output`."""


class BadOutputError(PolicyError):
    """One inference's output that no action may be taken from (:func:`check_output`)."""


def values_problem(values: np.ndarray, name: str, limit: float) -> str | None:
    """Why ``values`` may not be acted on (a value not finite, or beyond +-``limit``),
    or None. The text is short whatever the size of ``values``."""
    with np.errstate(all="ignore"):
        array = np.asarray(values, np.float64)
        finite = np.isfinite(array)
        if not finite.all():
            nan = int(np.isnan(array).sum())
            return (f"{name} are not finite ({nan} NaN, {array.size - nan - int(finite.sum())} "
                    f"infinite of {array.size} values)")
        worst = float(np.abs(array).max()) if array.size else 0.0
    if worst > limit:
        return f"{name} are out of range (max |value| {worst:.4g} > {limit:g})"
    return None


def output_problem(out: np.ndarray, contract: Contract) -> str | None:
    """Why no action may be taken from one observation's logits ``out``, or None when
    they are fine: their dtype and shape, every value finite and within +-MAX_ABS_LOGIT."""
    want = output_shape(contract)
    if out.dtype != np.float32 or out.shape != want:
        return (f"{LOGITS_OUTPUT} are {out.dtype} {list(out.shape)}, "
                f"expected float32 {list(want)}")
    return values_problem(out, LOGITS_OUTPUT, MAX_ABS_LOGIT)


def arm_output_shape(contract: Contract) -> tuple[int, ...]:
    """Shape of one observation's arm logits, without the batch dimension."""
    return (contract.chunk_len, contract.arm_dims, contract.n_arm_levels)


def arm_output_problem(out: np.ndarray, contract: Contract) -> str | None:
    """Why no arm bin may be chosen from one observation's arm logits ``out``, or None:
    the :func:`output_problem` checks, for ``arm_logits``."""
    want = arm_output_shape(contract)
    if out.dtype != np.float32 or out.shape != want:
        return (f"{ARM_LOGITS_OUTPUT} are {out.dtype} {list(out.shape)}, "
                f"expected float32 {list(want)}")
    return values_problem(out, ARM_LOGITS_OUTPUT, MAX_ABS_LOGIT)


def check_arm_output(out: np.ndarray, contract: Contract) -> None:
    """Raise ``BadOutputError`` when :func:`arm_output_problem` finds one."""
    problem = arm_output_problem(out, contract)
    if problem is not None:
        raise BadOutputError(problem)


def check_output(out: np.ndarray, contract: Contract) -> None:
    """Raise ``BadOutputError`` when :func:`output_problem` finds one."""
    problem = output_problem(out, contract)
    if problem is not None:
        raise BadOutputError(problem)


def output_shape(contract: Contract) -> tuple[int, ...]:
    """Shape of one observation's logits, without the batch dimension."""
    return (contract.chunk_len, contract.n_actions)


def io_shapes(contract: Contract) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Name -> (onnxruntime type, shape without the batch dimension) of every input and
    the output, for ``contract``."""
    shapes = {
        IMAGES_INPUT: ("tensor(uint8)", contract.image_shape),
        ACTION_HISTORY_INPUT: ("tensor(int64)", (contract.action_history,)),
        LOGITS_OUTPUT: ("tensor(float)", output_shape(contract)),
    }
    if contract.arm_dims:
        shapes[ARM_STATE_INPUT] = ("tensor(float)", (ARM_STATE_DIMS,))
        shapes[ARM_LOGITS_OUTPUT] = ("tensor(float)", arm_output_shape(contract))
    return shapes


def io_names(contract: Contract) -> tuple[list[str], list[str]]:
    """The model's input names and its output names, in order, for ``contract``."""
    if contract.arm_dims:
        return ([IMAGES_INPUT, ACTION_HISTORY_INPUT, ARM_STATE_INPUT],
                [LOGITS_OUTPUT, ARM_LOGITS_OUTPUT])
    return [IMAGES_INPUT, ACTION_HISTORY_INPUT], [LOGITS_OUTPUT]


class PolicyModel:
    """A verified model: ``infer`` maps one observation to its logits."""

    def __init__(self, path: Path, sha256: str, contract: Contract, session: Any) -> None:
        self.path = path
        self.name = str(path)  # what log lines call it (a remote model: its server)
        self.sha256 = sha256  # of the file's bytes, for telemetry and deploy checks
        self.contract = contract
        self._session = session
        self.warmup_latency_s = 0.0  # the second warm-up run (the first allocates)
        self.samples_checked = 0  # shipped sample observations run and passed at load
        self.provider: str = session.get_providers()[0]  # the execution provider running it

    def infer(self, images: np.ndarray, action_history: np.ndarray) -> np.ndarray:
        """images [1, N, H, W, 3] uint8, action_history [1, A] int64 -> float32 logits
        [chunk_len, n_actions]. Thread-safe (onnxruntime's ``run`` is)."""
        feeds = {IMAGES_INPUT: images, ACTION_HISTORY_INPUT: action_history}
        if self.contract.arm_dims:
            raise TypeError(f"model {self.name} has an arm head: call infer_arm")
        (batch,) = self._session.run([LOGITS_OUTPUT], feeds)  # [1, chunk_len, n_actions]
        out: np.ndarray = np.asarray(batch)[0]  # [chunk_len, n_actions]
        return out

    def infer_arm(self, images: np.ndarray, action_history: np.ndarray,
                  arm_state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A model with an arm head: images [1, N, H, W, 3] uint8, action_history [1, A]
        int64, arm_state [1, ARM_STATE_DIMS] float32 -> (logits [chunk_len, n_actions],
        arm_logits [chunk_len, arm_dims, n_arm_levels]), both float32. Thread-safe."""
        feeds = {IMAGES_INPUT: images, ACTION_HISTORY_INPUT: action_history,
                 ARM_STATE_INPUT: arm_state}
        logits, arm_logits = self._session.run([LOGITS_OUTPUT, ARM_LOGITS_OUTPUT], feeds)
        return np.asarray(logits)[0], np.asarray(arm_logits)[0]


def load_model(path: Path, contract: Contract | None, intra_op_threads: int = 1,
               providers: Sequence[str] = CPU_PROVIDERS) -> PolicyModel:
    """Load and verify the model at ``path`` for the runtime's ``contract`` (None: the
    contract the model carries, which ``zima serve`` serves). ``providers``: onnxruntime's
    execution providers in order of preference (the robot: the CPU's only)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelFileError(f"model {path}: cannot read: {exc}") from exc
    options = session_options(intra_op_threads)  # leave cores to cameras and the link
    try:
        session = ort.InferenceSession(data, options, providers=list(providers))
    except Exception as exc:  # onnxruntime's errors share no other base
        raise ModelFileError(f"model {path}: not an ONNX model onnxruntime loads: {exc}") from exc
    text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if text is None:
        raise NoContractError(f"model {path}: no contract in metadata_props[{METADATA_KEY!r}] "
                              "(export writes it; a model without one is refused)")
    try:
        model_contract = Contract.from_json(text)
    except ValueError as exc:
        raise NoContractError(f"model {path}: unreadable contract: {exc}") from exc
    if contract is None:
        contract = model_contract
    mismatches = contract.mismatches(model_contract)
    if mismatches:
        raise ContractMismatchError(
            f"model {path} was made for another contract: {'; '.join(mismatches)}", mismatches)
    _check_io(path, session, contract)
    model = PolicyModel(Path(path), hashlib.sha256(data).hexdigest(), contract, session)
    _warm_up(model, contract)
    samples = session.get_modelmeta().custom_metadata_map.get(SAMPLES_KEY)
    if samples is not None:
        _run_samples(model, contract, samples)
    return model


def _check_io(path: Path, session: Any, contract: Contract) -> None:
    """Check the declared inputs and outputs."""
    declared = {a.name: (a.type, a.shape) for a in [*session.get_inputs(), *session.get_outputs()]}
    want_inputs, want_outputs = io_names(contract)
    inputs = sorted(a.name for a in session.get_inputs())
    if inputs != sorted(want_inputs):
        raise ModelIOError(f"model {path}: inputs {inputs}, expected {want_inputs}")
    outputs: list[str] = [a.name for a in session.get_outputs()]
    if outputs == [REMOVED_TRACKS_OUTPUT]:
        raise ModelIOError(f"model {path}: {REMOVED_HEAD}")
    if outputs != want_outputs:
        shapes = "[B, chunk_len, n_actions]" + (
            ", [B, chunk_len, arm_dims, n_arm_levels]" if contract.arm_dims else "")
        names = " and ".join(repr(name) for name in want_outputs)
        raise ModelIOError(f"model {path}: outputs {outputs}, expected exactly {names} "
                           f"{shapes}")
    expected = io_shapes(contract)
    problems = []
    for name, (want_type, want_shape) in expected.items():
        got_type, got_shape = declared[name]
        batch_ok = bool(got_shape) and (got_shape[0] == 1 or not isinstance(got_shape[0], int))
        if got_type != want_type or not batch_ok or tuple(got_shape[1:]) != want_shape:
            problems.append(f"{name} is {got_type} {list(got_shape)}, "
                            f"expected {want_type} [B, {', '.join(map(str, want_shape))}]")
    if problems:
        raise ModelIOError(f"model {path}: " + "; ".join(problems))


def warmup_observation(contract: Contract) -> tuple[np.ndarray, np.ndarray]:
    """The one random observation a model is warmed up on, local or remote (seeded: the
    same each time): images [N, H, W, 3] uint8, action history [A] int64."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, contract.image_shape, np.uint8)
    history = rng.integers(0, contract.n_actions, contract.action_history, np.int64)
    return images, history


def warmup_arm_state(contract: Contract) -> np.ndarray:
    """The ``arm_state`` of the warm-up observation (a model with an arm head): the tool
    ahead of the deck, pitched down, the gripper half open; [ARM_STATE_DIMS] float32."""
    del contract  # one arm: the same for every contract with an arm head
    return np.array([0.15, 0.0, 0.0, 1.0, 0.0, 0.017], np.float32)


def check_warmup(first: np.ndarray, second: np.ndarray, contract: Contract, where: str) -> None:
    """The checks of a model's two runs on :func:`warmup_observation`, for a file and for a
    server alike: the right shape, finite, and the same both times (``ModelIOError``)."""
    problem = output_problem(first, contract)
    if problem is not None:
        raise ModelIOError(f"{where}: on a random observation its {problem}")
    if not np.array_equal(first, second):
        raise ModelIOError(f"{where}: two runs on the same input differ "
                           "(random ops in the graph: exported in training mode? model.eval())")


def _warm_up(model: PolicyModel, contract: Contract) -> None:
    """Two runs on one random observation (:func:`check_warmup`), the second one timed;
    the arm's logits checked the same way."""
    images, history = warmup_observation(contract)
    if not contract.arm_dims:
        first = model.infer(images[None], history[None])  # [1, N, H, W, 3], [1, A]
        start_s = time.perf_counter()
        second = model.infer(images[None], history[None])
        model.warmup_latency_s = time.perf_counter() - start_s
        check_warmup(first, second, contract, f"model {model.path}")
        return
    state = warmup_arm_state(contract)[None]  # [1, ARM_STATE_DIMS]
    first, arm_first = model.infer_arm(images[None], history[None], state)
    start_s = time.perf_counter()
    second, arm_second = model.infer_arm(images[None], history[None], state)
    model.warmup_latency_s = time.perf_counter() - start_s
    check_warmup(first, second, contract, f"model {model.path}")
    problem = arm_output_problem(arm_first, contract)
    if problem is not None:
        raise ModelIOError(f"model {model.path}: on a random observation its {problem}")
    if not np.array_equal(arm_first, arm_second):
        raise ModelIOError(f"model {model.path}: two runs on the same input differ in "
                           f"{ARM_LOGITS_OUTPUT} (random ops in the graph?)")


def _run_samples(model: PolicyModel, contract: Contract, text: str) -> None:
    """Run the model on every shipped sample observation; each output must pass
    :func:`check_output`."""
    try:
        samples = decode_samples(text, contract)
    except ValueError as exc:
        raise SampleOutputError(f"model {model.path}: {exc}") from None
    for i in range(len(samples)):
        images, history = samples.images[i : i + 1], samples.action_history[i : i + 1]
        try:
            if contract.arm_dims:  # samples carry no arm state: the warm-up's
                out, arm_out = model.infer_arm(images, history,
                                               warmup_arm_state(contract)[None])
            else:
                out, arm_out = model.infer(images, history), None
        except Exception as exc:  # onnxruntime's errors share no other base
            raise SampleOutputError(f"model {model.path}: inference failed on shipped "
                                    f"sample {i + 1} of {len(samples)}: {exc}") from exc
        problem = output_problem(out, contract)
        if problem is None and arm_out is not None:
            problem = arm_output_problem(arm_out, contract)
        if problem is not None:
            raise SampleOutputError(
                f"model {model.path}: bad output on shipped sample {i + 1} of {len(samples)} "
                f"(real frames from its export): its {problem}")
    model.samples_checked = len(samples)
