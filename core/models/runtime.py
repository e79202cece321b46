"""Frozen passes — inference through layers that never train — on the fastest runtime this machine has.

The ``transfer`` features, the ``finetune`` prefix, the search indexes and each query's embedding are pure
inference. ONNX Runtime runs EfficientNet-Lite0 there about 3× faster than eager PyTorch with channels_last
on the fp32 path (BENCHMARKS.md, "Frozen passes"), with the same outputs; for ResNet18 the gain is small.
So the choice is measured, not assumed:

* ``runtime="auto"``: once per machine, module layout, image size and precision, both runtimes time a small
  batch; ONNX Runtime is adopted only when it is at least :data:`ADOPT_RATIO` times faster. The verdict is
  kept in ``<cache>/runtime/choices.json``.
* ``"torch"`` or ``"onnxruntime"``: as asked.

Whatever is chosen, anything that goes wrong on the way to ONNX Runtime (the package missing, the export
failing, outputs that differ from PyTorch's) falls back to PyTorch, and :attr:`FrozenPass.note` says why;
the engine puts it in the run's setup. Exported graphs are cached on disk by a fingerprint of the module's
layout and weights, like the decoded-tensor cache.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, Optional

import torch
from torch import nn

from core.errors import ConfigError
from core.files import atomic_path, write_json_atomic
from core.models.device import autocast_context, machine_id

RUNTIMES = ("auto", "torch", "onnxruntime")
ADOPT_RATIO = 1.5  # ONNX Runtime is used only when at least this much faster than PyTorch here
ATOL = 1e-3  # outputs must agree within ATOL * (1 + max |output|)
PROBE_BATCH = 8
ONNX_OPSET = 17

_lock = threading.Lock()  # exports and the choices file are shared by app sessions
_sessions: Dict[str, object] = {}


def check_runtime(runtime: str) -> str:
    """``runtime`` if it is one of :data:`RUNTIMES`; a :class:`ConfigError` saying so otherwise."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"Runtime must be one of {', '.join(RUNTIMES)}, got '{runtime}'.")
    return runtime


def module_layout(module: nn.Module) -> str:
    """A fingerprint of what a module computes, without its weights (its structure as printed)."""
    return hashlib.sha1(repr(module).encode()).hexdigest()[:16]


def hash_module(h, module: nn.Module) -> None:
    """Feed a module's layout, weights and buffers (non-persistent ones too: normalisation constants) to ``h``."""
    h.update(repr(module).encode())
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def module_fingerprint(module: nn.Module) -> str:
    """Changes with the module's layout or any of its weights or buffers."""
    h = hashlib.sha1()
    hash_module(h, module)
    return h.hexdigest()[:20]


def example_images(size: int, n: int = PROBE_BATCH) -> torch.Tensor:
    """A seeded random float batch to export, check and time a pass with when no real images are at hand."""
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


class FrozenPass:
    """``module(x)`` without gradients, for float32 NCHW batches on the CPU; returns float32."""

    runtime = "torch"

    def __init__(self, module: nn.Module, precision: str, device: torch.device, channels_last: bool, note: str = ""):
        self.module, self.precision, self.device, self.channels_last = module.eval(), precision, device, channels_last
        self.note = note

    @property
    def description(self) -> str:
        what = f"{self.runtime} ({self.precision if self.runtime == 'torch' else 'fp32'})"
        return f"{what}: {self.note}" if self.note else what

    @torch.no_grad()  # not inference_mode: a training suffix may take the output as its input
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_context(self.precision, self.device):
            y = self.module(x)
        return y.float().cpu()


class OnnxPass(FrozenPass):
    runtime = "onnxruntime"

    def __init__(self, module: nn.Module, session, note: str = ""):
        super().__init__(module, "fp32", torch.device("cpu"), False, note)
        self.session = session
        self._input = session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().float().contiguous().cpu()
        return torch.from_numpy(self.session.run(None, {self._input: x.numpy()})[0])


def _onnx_session(module: nn.Module, example: torch.Tensor, cache_dir: Optional[Path]):
    """An ONNX Runtime session for ``module`` (exported once, cached on disk and in memory)."""
    import onnxruntime as ort  # noqa: PLC0415 (optional: the caller falls back to PyTorch without it)

    key = f"{module_fingerprint(module)}-op{ONNX_OPSET}-torch{torch.__version__}"
    with _lock:
        if key in _sessions:
            return _sessions[key]
        folder = Path(cache_dir) / "runtime" if cache_dir is not None else None
        path = folder / f"{key}.onnx" if folder is not None else None
        if path is None or not path.is_file():
            path = (folder or Path(tempfile.mkdtemp(prefix="transferlab-onnx-"))) / f"{key}.onnx"
            with atomic_path(path, durable=False) as tmp, warnings.catch_warnings():  # a cache: checked on load
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module.float().eval(),
                    (example.float().contiguous(),),
                    str(tmp),
                    input_names=["x"],
                    output_names=["y"],
                    opset_version=ONNX_OPSET,
                    dynamic_axes={"x": {0: "n", 2: "h", 3: "w"} if example.dim() == 4 else {0: "n"}, "y": {0: "n"}},
                    dynamo=False,
                )
        so = ort.SessionOptions()
        so.intra_op_num_threads = torch.get_num_threads()
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting between runs: it would steal the cores from PyTorch's training steps in between
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        _sessions[key] = session
        return session


def best_seconds(fn: Callable[[], object], repeats: int = 3, warmup: int = 2) -> float:
    """The fastest of ``repeats`` timed calls after ``warmup`` untimed ones (first calls build kernels and
    fault memory in; the minimum is the least noisy estimate on a shared machine)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _choices_file(cache_dir: Optional[Path]) -> Optional[Path]:
    return Path(cache_dir) / "runtime" / "choices.json" if cache_dir is not None else None


def _read_choices(path: Optional[Path]) -> Dict:
    try:
        return json.loads(path.read_text()) if path is not None and path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _write_choice(path: Optional[Path], key: str, value: Dict) -> None:
    if path is None:
        return
    with _lock:
        choices = _read_choices(path)
        choices[key] = value
        try:
            write_json_atomic(path, choices, durable=False)
        except OSError:  # a read-only cache only costs a re-measure next time
            pass


def frozen_pass(
    module: nn.Module,
    example: torch.Tensor,
    precision: str = "fp32",
    device: Optional[torch.device] = None,
    channels_last: bool = True,
    choice: str = "auto",
    cache_dir: Optional[Path] = None,
    remeasure: bool = False,
) -> FrozenPass:
    """The pass to run ``module`` (frozen) with: ONNX Runtime or PyTorch, as :data:`choice` and this machine say.

    ``example`` is a float32 NCHW batch of the size the pass will see (its first few images are used to
    check that both runtimes agree and, for ``auto``, to time them; ``remeasure`` times them again instead of
    trusting the kept verdict).
    """
    device = device or torch.device("cpu")
    torch_pass = FrozenPass(module, precision, device, channels_last)
    if choice == "torch":
        return torch_pass
    if device.type != "cpu":
        torch_pass.note = f"onnxruntime is only used on the CPU; this runs on {device.type}"
        return torch_pass
    try:
        import onnxruntime  # noqa: F401, PLC0415 (optional: is it installed?)
    except ImportError:
        torch_pass.note = "onnxruntime is not installed (pip install onnxruntime onnx), so PyTorch runs it"
        return torch_pass
    probe = example[:PROBE_BATCH].float()
    try:
        session = _onnx_session(module, probe, cache_dir)
        onnx_pass = OnnxPass(module, session)
        ours, theirs = onnx_pass(probe), FrozenPass(module, "fp32", device, channels_last)(probe)
    except Exception as e:  # any export or runtime failure: PyTorch does the work
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}" if str(e) else type(e).__name__
        torch_pass.note = f"the ONNX export failed ({reason}), so PyTorch runs it"
        return torch_pass
    err = float((ours - theirs).abs().max()) if ours.shape == theirs.shape else float("inf")
    if not err <= ATOL * (1 + float(theirs.abs().max())):
        torch_pass.note = f"onnxruntime's outputs differ from PyTorch's (max difference {err:.2g}), so PyTorch runs it"
        return torch_pass
    if choice == "onnxruntime":
        return onnx_pass
    path = _choices_file(cache_dir)
    key = f"{machine_id()} | {module_layout(module)} | {tuple(probe.shape[1:])} | {precision}"
    verdict = None if remeasure else _read_choices(path).get(key)
    if verdict is None:
        t_torch = best_seconds(lambda: torch_pass(probe))
        t_onnx = best_seconds(lambda: onnx_pass(probe))
        verdict = {"torch_img_s": round(len(probe) / t_torch, 1), "onnxruntime_img_s": round(len(probe) / t_onnx, 1)}
        _write_choice(path, key, verdict)
    ratio = verdict["onnxruntime_img_s"] / max(verdict["torch_img_s"], 1e-9)
    if ratio >= ADOPT_RATIO:
        onnx_pass.note = f"{ratio:.1f}× PyTorch here"
        return onnx_pass
    torch_pass.note = f"onnxruntime is only {ratio:.2f}× PyTorch here (adopted from {ADOPT_RATIO}×)"
    return torch_pass
