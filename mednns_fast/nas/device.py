"""Device and mixed precision of the training loops (supernets, zoo, meta-space, fine-tuning, IAC search).

Every pipeline function takes ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a `torch.device`) and ``amp``
(``"none"``, ``"bf16"``, ``"fp16"``) as arguments; nothing here is global. `resolve_device` checks the device
against the machine (one line naming it when it is absent). `Precision` is the loops' mixed precision:
`autocast()` around forward and loss, `backward(loss)` / `step(optimizer)` with a `torch.amp.GradScaler` under
fp16 (bf16 needs no scaling). With ``amp="none"`` every call is the plain one (`loss.backward()`,
`optimizer.step()`, no autocast): CPU results are those of the code before devices existed, bit for bit.

Data: the loops index in-memory tensors (the splits are already whole tensors in host memory), so `to_device`
moves a split to the device once; batches are then slices on the device, with no per-batch host-to-device copy
(index permutations are drawn by CPU generators, as on the CPU, and moved with the batch they index).
"""

from __future__ import annotations

import contextlib
import os

import torch

__all__ = ["AMP_MODES", "Precision", "on_cpu", "local_device", "resolve_device", "to_device"]

AMP_MODES = ("none", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """The `torch.device` for `device`; ValueError (one line, naming it) for a CUDA device this machine lacks
    or a device type the pipelines do not run on. ``"cuda"`` becomes the current CUDA device's index."""
    d = _parse(device)
    if d.type == "cpu":
        return torch.device("cpu")
    if d.type != "cuda":
        raise ValueError(f"device {device!s}: the pipelines run on cpu or cuda[:N]")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!s}: CUDA is not available on this machine")
    n = torch.cuda.device_count()
    index = torch.cuda.current_device() if d.index is None else d.index
    if index >= n:
        raise ValueError(f"device {device!s}: this machine has {n} CUDA device(s) (cuda:0 to cuda:{n - 1})")
    return torch.device("cuda", index)


def _parse(device: str | torch.device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!s}: not a device (the pipelines run on cpu or cuda[:N])") from None


def local_device(device: str | torch.device = "cpu") -> torch.device:
    """`resolve_device`, except that under torchrun (LOCAL_RANK set) a CUDA device is ``cuda:LOCAL_RANK``: each
    rank on its own GPU, whatever index was asked for."""
    d = _parse(device)
    if d.type == "cuda" and "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        d = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return resolve_device(d)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`t` on `device` (the same tensor when it is there already: no copy on the CPU)."""
    return t if t.device == device else t.to(device)


def on_cpu(obj):
    """`obj` (a tensor, or dicts / lists / tuples of them, e.g. a model's or an optimizer's state dict) with every
    tensor on the CPU: tensors elsewhere are copied there (checkpoints load on a machine without the GPU), CPU
    tensors are kept as they are (no copy: on the CPU a kept state is the live one, as without a device)."""
    if isinstance(obj, torch.Tensor):
        return obj if obj.device.type == "cpu" else obj.detach().cpu()
    if isinstance(obj, dict):
        return type(obj)((k, on_cpu(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(on_cpu(v) for v in obj)
    return obj


class Precision:
    """Mixed precision of one training loop on `device`: ``amp`` is "none", "bf16" or "fp16".

    ``with p.autocast(): loss = ...``; then ``p.backward(loss)``; ``p.unscale(opt)`` before gradient clipping;
    ``p.step(opt)`` (steps and updates the scale). fp16 uses a `torch.amp.GradScaler` (its `step` reads one
    flag from the device per step: torch's check for inf gradients); bf16 and none never read the device.
    """

    def __init__(self, device: str | torch.device = "cpu", amp: str = "none") -> None:
        if amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
        self.device = torch.device(device)
        self.amp = amp
        self.dtype = _DTYPES.get(amp)
        self.scaler = torch.amp.GradScaler(self.device.type) if amp == "fp16" else None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()
