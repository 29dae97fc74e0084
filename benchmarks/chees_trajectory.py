"""ChEES's adapted trajectory length against the optimum, over seeds (issue 10).

    python benchmarks/chees_trajectory.py [--seeds 5] [--chains 4 16 64]

The targets of ``tests/inference/test_chees.py::test_adapted_trajectory_length_is_near_the_
optimal_one`` (10-d Gaussians: isotropic, scales 0.01-100, correlation 0.9), 500 warmup
iterations, engine defaults: in the adapted metric each is a standard Gaussian, whose ChEES
optimum is T* = 2.25 in closed form. The test checks one seed; this prints T for many, so a
seed where the adaptation goes astray is seen (before the fix of this stop, seed 0 of the
ill-scaled target with 64 chains ended at T = 4.83).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ppl_gen  # noqa: E402
from tests.inference.test_chees import (  # noqa: E402
    _DIM,
    _TARGETS,
    _chees_optimal_length,
    _gaussian_model,  # noqa: E402
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--chains", type=int, nargs="+", default=[4, 16, 64])
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    optimum = _chees_optimal_length()
    print(f"optimum T* = {optimum:.2f}; the test's band is ({optimum / 2:.2f}, "
          f"{2 * optimum:.2f})\n")
    print("| target | chains | T per seed | outside the band |")
    print("| --- | --- | --- | --- |")
    for target, cov in _TARGETS.items():
        for chains in args.chains:
            lengths = []
            for seed in range(args.seeds):
                result = ppl_gen.fit(_gaussian_model(cov),
                                     {"y": torch.zeros(_DIM, dtype=torch.float64)},
                                     engine="chees", num_chains=chains, num_warmup=500,
                                     num_samples=100, seed=seed, device="cpu",
                                     compile=False)
                lengths.append(result.info["trajectory_length"])
            outside = int(np.sum([not optimum / 2 < t < 2 * optimum for t in lengths]))
            print(f"| {target} | {chains} | {', '.join(f'{t:.2f}' for t in lengths)} | "
                  f"{outside} |", flush=True)


if __name__ == "__main__":
    main()
