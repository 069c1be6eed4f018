"""Where an eager GPU step spends its host time (issue #17), for a session lent a GPU.

    python bench/gpu_profile.py [--steps 30] [--top 30]

For the seed ConvNet at batch 64 and the 784-1024-1024-10 MLP at batch 1024 it
prints: the step's wall time with a synchronisation after every step; the time to
enqueue the same steps without one (the host's share); the GPU's own time from
CUDA events; and a cProfile of the enqueueing, by own time. Then the host cost of
single launches (CuPy elementwise, a raw kernel, our GEMM, an autograd op), which
bounds what fusing can win. PyTorch's figures are printed beside ours when it is
importable.
"""

import argparse
import cProfile
import io
import os
import pstats
import sys
import time


def timed(fn, steps, sync):
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    enqueued = time.perf_counter() - start
    sync()
    return enqueued / steps * 1e3, (time.perf_counter() - start) / steps * 1e3


def steps_for(lib):
    """step_time.py's eager ConvNet (batch 64) and MLP (batch 1024) steps."""
    import step_time
    wanted = {"ConvNet train step, batch 64": "ConvNet b64", "MLP 784-1024-1024-10, batch 1024": "MLP b1024"}
    cases = step_time.build_cases(lib, argparse.Namespace(device="cuda"))
    return [(wanted[name], make()) for name, make in cases if name in wanted]


def gpu_ms(step, steps, lib):
    start, end = lib.cuda.Event(enable_timing=True), lib.cuda.Event(enable_timing=True)
    lib.cuda.synchronize()
    start.record()
    for _ in range(steps):
        step()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / steps


def launches(cupy, distnn):
    """Host microseconds per call of single small launches."""
    from distnn import cublas
    a = cupy.ones((64, 128), cupy.float32)
    b = cupy.ones((128, 64), cupy.float32)
    k = cupy.ElementwiseKernel("T x, T y", "T z", "z = x + y", "distnn_profile_add")
    raw = cupy.RawKernel(r'extern "C" __global__ void f(float* x) { x[threadIdx.x] += 1.0f; }', "f")
    t = distnn.ones(64, 128, device="cuda", requires_grad=True)
    u = distnn.ones(64, 128, device="cuda")
    w = distnn.ones(64, 128, device="cuda", requires_grad=True)
    lib = cublas._library()
    handle = lib.handle(a.device.id, cupy.cuda.get_current_stream().ptr)
    out = cupy.empty((64, 64), cupy.float32)
    one, zero = lib.scalars["f"](1.0), lib.scalars["f"](0.0)
    import ctypes

    def sgemm_only():
        lib.gemm_one["f"](handle, 0, 0, 64, 64, 128, ctypes.byref(one), b.data.ptr, 64, a.data.ptr, 128,
                          ctypes.byref(zero), out.data.ptr, 64)
    cases = {
        "cublasSgemm (ctypes) only": sgemm_only,
        "cupy a + a": lambda: a + a,
        "cupy.empty": lambda: cupy.empty((64, 128), cupy.float32),
        "ElementwiseKernel": lambda: k(a, a),
        "RawKernel": lambda: raw((1,), (32,), (a,)),
        "cupy.matmul": lambda: cupy.matmul(a, b),
        "distnn cublas.matmul": lambda: cublas.matmul(a, b),
        "a.sum(axis=0)": lambda: a.sum(axis=0),
        "distnn t + u (grad)": lambda: t + u,
        "distnn t.relu() (grad)": lambda: t.relu(),
        "distnn F.linear (grad)": lambda: distnn.nn.functional.linear(t, w),
    }
    try:
        import torch
        ta, tb = torch.ones(64, 128, device="cuda"), torch.ones(128, 64, device="cuda")
        tw = torch.ones(64, 128, device="cuda", requires_grad=True)
        cases.update({"torch a + a": lambda: ta + ta, "torch.mm": lambda: torch.mm(ta, tb),
                      "torch F.linear (grad)": lambda: torch.nn.functional.linear(tw, tw)})
    except ImportError:
        pass
    for name, fn in cases.items():
        for _ in range(50):
            fn()
        cupy.cuda.Device().synchronize()
        n = 2000
        start = time.perf_counter()
        for _ in range(n):
            fn()
        us = (time.perf_counter() - start) / n * 1e6
        cupy.cuda.Device().synchronize()
        print(f"  {name:24s} {us:7.1f} us")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import cupy
    import distnn
    libs = [("distnn", distnn)]
    try:
        import torch
        libs.append(("torch", torch))
    except ImportError:
        pass
    print("ms per step: synchronised wall | enqueue only (host) | GPU time (events)")
    profiles = []
    for name, lib in libs:
        for case, step in steps_for(lib):
            for _ in range(5):
                step()
            host, wall = timed(step, args.steps, lib.cuda.synchronize)
            print(f"  {name:7s} {case:12s} {wall:7.2f} | {host:7.2f} | {gpu_ms(step, args.steps, lib):7.2f}")
            if lib is distnn:
                profiles.append((case, step))
    for case, step in profiles:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.steps):
            step()
        prof.disable()
        cupy.cuda.Device().synchronize()
        text = io.StringIO()
        stats = pstats.Stats(prof, stream=text)
        stats.sort_stats("tottime").print_stats(args.top)
        print(f"\n=== cProfile, distnn {case}, {args.steps} steps, by own time ===")
        print("\n".join(line for line in text.getvalue().splitlines()[6:] if line.strip()))
    print("\nhost cost of one launch:")
    launches(cupy, distnn)


if __name__ == "__main__":
    main()
