"""What a ChEES fit costs after sampling: the whole ``fit`` call against the sampler's own
wall time, and the process's peak memory, on a large-data model (commit 997988a).

A Bayesian logistic regression on 100,000 synthetic rows x 30 covariates (the data of
``benchmarks/distributed_chees.py``), 16 chains, 30 warmup + 300 draws (4,800 draws), the
traced leapfrog. Before commit 997988a the fit evaluated the model at every draw for its
deterministic sites although it has none: 31.8 s for the call against 11.7 s of sampler,
6.3 GB peak; after, 12.8 s against 12.6 s, 0.7 GB (2026-12-02, one thread).

    python benchmarks/mcmc_finish.py
"""

from __future__ import annotations

import resource
import sys
import time
import warnings
from pathlib import Path


def main() -> None:
    import torch

    import ppl_gen

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from distributed_chees import data

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    dataset = data(100_000, 30)
    model = ppl_gen.MODELS["logistic_regression"].from_dataset(dataset)
    started = time.perf_counter()
    result = ppl_gen.fit(model, dataset, engine="chees", num_chains=16, num_warmup=30,
                         num_samples=300, device="cpu", seed=1, compile="fx")
    call = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"fit call {call:.1f} s, sampler wall time {result.info['wall_time']:.1f} s, "
          f"peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
