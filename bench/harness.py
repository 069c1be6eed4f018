"""The timing harness the train-step benchmarks share: each case of each library
runs in a fresh process per round, distnn's and PyTorch's processes for a case
back to back (which goes first alternating by round), so a slow spell of a
shared machine hits both alike; the table shows the median over rounds of each
round's median step time. (One process per library running every case let the
two measurements of a case lie a minute apart, and this VM's slow spells, which
last seconds to minutes and slow a step by up to 30%, moved a row's ratio by
0.1-0.2 from run to run.)"""

import argparse
import json
import os
import subprocess
import sys
import time


def set_threads(n):
    # Must happen before numpy/torch load their BLAS.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def median_ms(step, repeat, sync, warmup=3):
    """Median wall time of ``step``; ``sync`` waits for queued GPU work, so a GPU
    step is timed to its end, not to its launch."""
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def run_library(name, build_cases, args):
    """{case: median ms} for one library, in this process."""
    set_threads(args.threads)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    if name == "distnn":
        import distnn as lib
    else:
        import torch as lib
        lib.set_num_threads(args.threads)
    lib.manual_seed(0)
    sync = lib.cuda.synchronize if args.device == "cuda" else (lambda: None)
    results = {}
    for case, make_step in build_cases(lib, args):
        if _selected(case, args):
            results[case] = median_ms(make_step(), args.repeat, sync)
    return results


def _selected(case, args):
    if args.exact:
        return case in args.exact
    return not args.case or any(c in case for c in args.case)


def _measure_in_subprocess(script, name, argv):
    """One library's results from a fresh process; None when it is not importable."""
    proc = subprocess.run([sys.executable, script, "--only", name, *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        if name == "torch" and "No module named 'torch'" in proc.stderr:
            return None
        raise RuntimeError(f"{name} benchmark failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median_over_rounds(results):
    return {case: sorted(r[case] for r in results)[len(results) // 2] for case in results[0]}


def main(script, doc, build_cases, repeat=30, rounds=3, argv=None):
    """Parse the common options, run the interleaved rounds and print the table.
    ``build_cases(lib, args)`` yields ``(name, make_step)``; ``make_step()``
    builds the model and returns a zero-argument train step."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=repeat)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: distnn on CuPy beside torch on CUDA, each step synchronized")
    parser.add_argument("--case", action="append", help="run only the cases whose name contains this (repeatable)")
    parser.add_argument("--only", choices=["distnn", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--exact", action="append", help=argparse.SUPPRESS)
    parser.add_argument("--list", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.list:  # the selected cases' names; no model is built
        import distnn
        print(json.dumps([case for case, _ in build_cases(distnn, args) if _selected(case, args)]))
        return
    if args.only:
        print(json.dumps(run_library(args.only, build_cases, args)))
        return
    forwarded = ["--repeat", str(args.repeat), "--threads", str(args.threads), "--device", args.device]
    for case in args.case or ():
        forwarded += ["--case", case]
    cases = _measure_in_subprocess(script, "distnn", forwarded + ["--list"])
    ours, theirs, have_torch = [], [], True
    for r in range(args.rounds):
        ours.append({})
        theirs.append({})
        for case in cases:
            for name in ("distnn", "torch") if r % 2 == 0 else ("torch", "distnn"):
                if name == "distnn":
                    ours[-1].update(_measure_in_subprocess(script, name, forwarded + ["--exact", case]))
                elif have_torch:
                    got = _measure_in_subprocess(script, name, forwarded + ["--exact", case])
                    have_torch = got is not None
                    theirs[-1].update(got or {})
            # progress on stderr, so a run cut short by a time limit still leaves its figures
            mine, other = ours[-1].get(case), theirs[-1].get(case)
            print(f"round {r + 1}/{args.rounds} {case}: distnn {mine if mine is None else f'{mine:.2f}'} ms, "
                  f"torch {other if other is None else f'{other:.2f}'} ms", file=sys.stderr, flush=True)
    ours = _median_over_rounds(ours)
    theirs = _median_over_rounds(theirs) if have_torch else {}
    width = max([36] + [len(name) for name in ours])
    print(f"{'case':<{width}} {'distnn ms':>10} {'torch ms':>10} {'ratio':>7}")
    for name, ms in ours.items():
        t = theirs.get(name)
        ratio = f"{ms / t:7.2f}" if t else "      -"
        print(f"{name:<{width}} {ms:10.2f} {(f'{t:10.2f}' if t else '         -')} {ratio}")
    blas = "OPENBLAS_CORETYPE=" + os.environ.get("OPENBLAS_CORETYPE", "(unset)")
    print(f"({args.device}, {args.threads} BLAS thread(s), {blas}, median of {args.repeat} steps, median of "
          f"{args.rounds} interleaved rounds, each case in a fresh process; ratio = distnn / torch, lower is better)")
