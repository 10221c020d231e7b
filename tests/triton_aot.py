"""Compile every Triton kernel ahead of time for sm_90, once per launch signature the public
functions produce (issue 19) — no GPU, no driver: ``python -m tests.triton_aot``.

Run without ``TRITON_INTERPRET``. The public functions are called on CPU tensors with every
launch turned into a warm-up (Triton's own specialisation of the arguments, then
``compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))``: Triton IR → PTX → cubin with the
ptxas Triton ships) under a stand-in driver that names the target; nothing runs. Prints one JSON
line: the compiled signatures and what failed.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.runtime import driver
from triton.runtime.jit import JITFunction

TARGET = GPUTarget("cuda", 90, 32)


class _Sm90Driver:
    """Just what a warm-up asks the active driver: the target, a device and a stream."""

    def get_current_target(self) -> GPUTarget:
        return TARGET

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0


def cases() -> list[tuple[str, object]]:
    """(name, call) for every launch signature the public functions can produce: each dtype,
    batch 1 (B specialises to a constant) and several, odd and 16-aligned sizes (alignment
    specialises too), dropout off and on with a small and a 63-bit seed, forward and backward."""
    from gpucops.kernels import (
        edge_costs_from_logits,
        edge_feature_shift,
        node_costs_from_logits,
        perturb_costs,
    )

    calls = []
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        for batch, height, width in ((1, 32, 64), (3, 20, 36)):
            features = torch.zeros(batch, 4, height, width, dtype=dtype, requires_grad=True)

            def shift(features=features):
                maps = edge_feature_shift(features, (2, 4), implementation="triton")
                torch.autograd.grad(sum(m.sum() for m in maps), features)

            calls.append((f"edge_feature_shift {dtype} B={batch}", shift))
            for dropout, seed in ((0.0, 0), (0.1, 7), (0.1, 2**62 + 5)):
                logits = torch.zeros(batch, 6, height, width, dtype=dtype, requires_grad=True)

                def costs(logits=logits, dropout=dropout, seed=seed, dtype=dtype):
                    scales = torch.ones(3, dtype=dtype, requires_grad=True)
                    nodes = node_costs_from_logits(
                        logits, scales[0], scales[1], dropout, seed, implementation="triton"
                    )
                    edges = edge_costs_from_logits(
                        logits, scales, scales, dropout, seed, implementation="triton"
                    )
                    torch.autograd.grad(nodes.sum() + edges.sum(), (logits, scales))

                calls.append((f"costs {dtype} B={batch} p={dropout} seed={seed}", costs))
            costs_, grad = torch.zeros(2, batch * 19, height, width, dtype=dtype).unbind(0)
            lambdas = torch.ones(5, dtype=dtype)
            calls.append(
                (
                    f"perturb_costs {dtype} B={batch}",
                    lambda c=costs_, g=grad, la=lambdas: perturb_costs(c, g, la, "triton"),
                )
            )
    return calls


def main(only: tuple[str, ...] = ()) -> int:
    """Compile the cases whose name holds one of ``only`` (all by default); 0 when all
    compiled."""
    assert not os.environ.get("TRITON_INTERPRET"), "run without TRITON_INTERPRET"
    driver.set_active(_Sm90Driver())
    compiled: list[dict] = []
    compile_original = JITFunction._do_compile

    def do_compile(self, key, signature, device, constexprs, options, attrs, warmup):
        kernel = compile_original(self, key, signature, device, constexprs, options, attrs, True)
        compiled.append(
            {
                "kernel": self.fn.__name__,
                "signature": {k: str(v) for k, v in signature.items()},
                "cubin_bytes": len(kernel.asm.get("cubin", b"")),
            }
        )
        return kernel

    run_original = JITFunction.run
    JITFunction._do_compile = do_compile
    JITFunction.run = lambda self, *a, grid, warmup, **k: run_original(
        self, *a, grid=grid, warmup=True, **k
    )
    # the launchers choose Triton only for CUDA tensors (or the interpreter): here every call
    # goes to the kernel, whose launch is the warm-up above
    from gpucops.kernels import costs, perturb, shift

    for module in (costs, perturb, shift):
        module.use_triton = lambda tensor, implementation: True
    failures = []
    for name, call in cases():
        if only and not any(part in name for part in only):
            continue
        try:
            call()
        except Exception:  # report every failing signature, not just the first
            failures.append({"case": name, "error": traceback.format_exc(limit=3)[-2000:]})
    print(json.dumps({"triton": triton.__version__, "compiled": compiled, "failures": failures}))
    return 1 if failures or not compiled else 0


if __name__ == "__main__":
    sys.exit(main())
