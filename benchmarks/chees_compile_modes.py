"""ChEES's ``compile`` settings on one fit, phase by phase (issue 10: "compile='auto' must
not cost more than it saves").

Eight schools, 16 chains, 300 + 300, one thread, a fresh process per setting and repeat
(``compile=False``: eager Pyro every step; ``"fx"``: traced at init; ``"auto"``: eager for 10
iterations, then traced or compiled as the timing says). Prints the sampler's wall time
and compile seconds, and milliseconds per gradient in iterations 0-10, 10-100, 100-300
(warmup) and 300-600 (draws), from a callback's timestamps.

    python benchmarks/chees_compile_modes.py [--repeats 2]

Measured 2026-12-02 (this machine), before commit c28e290: fx 0.63-0.67 ms per
gradient from the start; auto traced at iteration 10 after importing torch._inductor for
its cache check (~0.5 s: 47-52 ms per gradient in iterations 0-10), then ran ~1.0-1.2 ms
per gradient through warmup and 0.62-0.79 in the draws, so auto's whole fit (4.5-5.8 s)
was slower than both fx (4.0-4.5 s, 1.4-1.5 s of it tracing and checking) and eager
(3.8-4.6 s). With the cache check no longer importing torch._inductor, auto stays eager
to iteration 300 and traces there (1.2-1.4 s, the imports now in the trace): 4.4-4.9 s.
The trace costs ~1.3 s in a fresh process, not the 0.5 s ``TRACE_SECONDS`` assumes; the
slower warmup steps after the mid-run trace are not explained yet.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

WORKER = """
import time, warnings
warnings.simplefilter("ignore")
import numpy as np, torch, ppl_gen
setting = {"false": False, "fx": "fx", "auto": "auto"}[SETTING]
data = ppl_gen.load_dataset("eight_schools")
model = ppl_gen.MODELS["eight_schools"].from_dataset(data)
stamps = []
def callback(index, state, info):
    stamps.append((time.perf_counter(), state.gradient_evaluations))
result = ppl_gen.fit(model, data, engine="chees", num_warmup=300, num_samples=300,
                     device="cpu", compile=setting, callback=callback)
t = np.array(stamps)
phases = []
for a, b in ((0, 10), (10, 100), (100, 300), (300, 599)):
    phases.append(1e3 * (t[b, 0] - t[a, 0]) / max(t[b, 1] - t[a, 1], 1))
print(f"{SETTING:6s} wall {result.info['wall_time']:5.2f} s, compile "
      f"{result.info['compile_seconds']:.2f} s ({result.info['compiled']}); ms per gradient "
      + " / ".join(f"{p:.3f}" for p in phases))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print("setting: wall, compile; ms per gradient in iterations 0-10 / 10-100 / 100-300 / "
          "300-600")
    for _ in range(args.repeats):
        for setting in ("false", "fx", "auto"):
            code = WORKER.replace("SETTING", repr(setting))
            out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                 text=True, check=True)
            print(out.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
