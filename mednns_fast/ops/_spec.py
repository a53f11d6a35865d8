"""One declarative spec per op: the single wiring of every op family (docs/architecture.md, "Adding an op
family").

An `OpSpec` names the op's schema (`torch.ops.mednns_fast.<name>`, declared in csrc/ops.cpp) and gives its
pure-PyTorch reference, its fake kernel(s) and its autograd formula. `define(spec)` registers the fake
kernels and the autograd formula on the C++ op (unless the C++ library registers that op's autograd itself,
csrc/autograd/). A Triton module implements the same contract by handing its
functions to `spec.add_triton(forward, backward)`: they become `torch.ops.mednns_fast_triton.<name>` (and
`<name>_backward`) with this spec's fake kernels, autograd formula and autocast policy, so every backend of
an op shares one set of them. A public wrapper calls `_backend.kernel(name, device)` and receives the
implementation the backend choice picks for that op.

Nothing here imports the Triton package: Triton kernels plug themselves in (ops never depend on them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from . import _library

CPP_NAMESPACE = "mednns_fast"
TRITON_NAMESPACE = "mednns_fast_triton"


@dataclass
class OpSpec:
    """How one op is wired.

    name: the schema name (``torch.ops.mednns_fast.<name>``; the Triton twin has the same name).
    reference: the pure-PyTorch path, called with the same arguments as the C++ op.
    fake: output metadata of the op for fake tensors (torch.compile), or None when it has no C++ schema.
    backward_with: ``ops_namespace -> backward(ctx, *grads)``; the formula calls ``<ns>.<name>_backward``
        of the namespace whose op is differentiated, so C++ and Triton share one formula.
    setup_context: saves what `backward` needs (``torch.library.register_autograd``'s argument).
    backward_fake: fake kernel of the ``<name>_backward`` op.
    autocast: under torch.autocast, ``args -> args`` cast before the op runs with autocast off (for ops whose
        inputs must agree in dtype while autocast leaves them mixed); None: autocast falls through.
    composite: a Python composition of other ops (no schema of its own; its inner ops choose their own
        backends): it runs its reference only where "reference" is chosen for it.
    mutates: names of the arguments the op updates in place (the schema's ``(a!)`` annotations).
    """

    name: str
    reference: Callable
    fake: Callable | None = None
    backward_with: Callable[[object], Callable] | None = None
    setup_context: Callable | None = None
    backward_fake: Callable | None = None
    autocast: Callable | None = None
    composite: bool = False
    mutates: tuple[str, ...] = ()
    # Set by `add_triton`: whether a Triton kernel implements this op.
    triton: bool = field(default=False, init=False)

    def cpp_on(self, device_type: str) -> bool:
        """Whether the C++ library has a kernel for this op on `device_type` ("cpu"/"cuda")."""
        return _library.CPP_KERNELS.get((self.name, device_type), False)

    def add_triton(self, forward: Callable, backward: Callable | None = None) -> None:
        """Register Python functions that launch Triton kernels as ``mednns_fast_triton::<name>`` and, when
        given, ``<name>_backward`` (same signatures and type annotations as the C++ schemas), with this
        spec's fake kernels, autograd formula and autocast policy. The op's backend choice may then pick
        them. Called once, by the Triton module of the family.

        On a GPU each function becomes a `torch.library.triton_op` (torch.compile traces into its kernels
        through `wrap_triton`). Under Triton's interpreter (CPU tensors) `wrap_triton` hands back the
        interpreted kernel unwrapped, so a fake-tensor trace of a `triton_op` would run the kernel on fake
        tensors; there each function is an opaque `torch.library.custom_op` with the spec's fake kernel,
        which torch.compile, opcheck and gradcheck accept.
        """
        if self.triton:
            raise ValueError(f"op {self.name!r} already has a Triton kernel")
        _register_triton_op(self.name, forward, self.fake, self.mutates)
        if backward is not None:
            _register_triton_op(f"{self.name}_backward", backward, self.backward_fake, ())
        _register_autograd(self, TRITON_NAMESPACE)
        _register_autocast(self, TRITON_NAMESPACE)
        self.triton = True


SPECS: dict[str, OpSpec] = {}
_LIBRARIES: list[torch.library.Library] = []  # registrations live as long as their Library objects


def _register_autograd(spec: OpSpec, namespace: str) -> None:
    if spec.backward_with is not None:
        torch.library.register_autograd(f"{namespace}::{spec.name}",
                                        spec.backward_with(getattr(torch.ops, namespace)),
                                        setup_context=spec.setup_context)


def _register_autocast(spec: OpSpec, namespace: str) -> None:
    """Autocast kernels (CPU and CUDA) that apply `spec.autocast` to the arguments, then run the op with
    autocast excluded (as `torch.library.register_autocast` does, with a cast of our choosing)."""
    if spec.autocast is None:
        return
    op = getattr(getattr(torch.ops, namespace), spec.name).default
    lib = torch.library.Library(namespace, "IMPL")
    _LIBRARIES.append(lib)
    for device_type in ("cpu", "cuda"):
        key_name = "Autocast" + torch._C._dispatch_key_for_device(device_type)
        key = getattr(torch._C.DispatchKey, key_name)

        def run(*args, key=key):
            with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(key)):
                return op(*spec.autocast(*args))

        op.py_impl(key)(run)  # the Python dispatcher's path (tracing)
        lib.impl(spec.name, lambda _keyset, *args, run=run: run(*args), key_name, with_keyset=True)


def define(spec: OpSpec) -> OpSpec:
    """Record `spec` and register its fake kernels and autograd formula on the C++ op (when loaded)."""
    if spec.name in SPECS:
        raise ValueError(f"op {spec.name!r} is defined twice")
    SPECS[spec.name] = spec
    if _library.LOADED and spec.name in _library.registered_ops():
        if spec.fake is not None:
            torch.library.register_fake(f"{CPP_NAMESPACE}::{spec.name}")(spec.fake)
        if spec.backward_fake is not None:
            torch.library.register_fake(f"{CPP_NAMESPACE}::{spec.name}_backward")(spec.backward_fake)
        if spec.name not in _library.CPP_AUTOGRAD:  # else C++ registered the same formula (csrc/autograd/)
            _register_autograd(spec, CPP_NAMESPACE)
        _register_autocast(spec, CPP_NAMESPACE)
    return spec


def _register_triton_op(name: str, fn: Callable, fake: Callable | None, mutates: tuple[str, ...]) -> None:
    """``mednns_fast_triton::<name>`` running `fn` (see `OpSpec.add_triton` for which kind of op)."""
    qualname = f"{TRITON_NAMESPACE}::{name}"
    if fake is None:
        raise ValueError(f"{qualname} needs a fake kernel in its op spec")
    triton_op = getattr(torch.library, "triton_op", None)  # torch >= 2.6
    if triton_op is not None and not _library.TRITON_INTERPRET:
        triton_op(qualname, fn, mutates_args=mutates)
        return
    op = torch.library.custom_op(qualname, fn, mutates_args=mutates)
    op.register_fake(fake)
