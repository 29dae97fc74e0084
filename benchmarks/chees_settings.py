"""ChEES's effective draws per gradient under other adaptation settings (issue 10).

Where ChEES loses to NUTS is effective draws per gradient; this measures what two of its
settings do to that, on eight schools (non-centred) and a logistic regression (breast
cancer, 31 parameters): 16 chains, 500 + 500, the traced leapfrog, ``--seeds`` seeds each.
Per setting: the median over seeds of the min bulk ESS over the parameters, of the
sampling gradient evaluations (leapfrog steps of the batch after warmup), of ESS per
1,000 gradients (with its range over seeds), the divergences summed over seeds, the
adapted T and the mean step size.

* ``target 0.8``: the default (Stan's, NumPyro's and Pyro's for NUTS);
* ``target 0.651``: BlackJAX's and TFP's ChEES default (Beskos et al. 2013's optimum for
  HMC in high dimensions), on the harmonic mean of the chains' acceptance there;
* ``chees_rate``: the ChEES criterion per unit of trajectory length (TFP's
  ``chees_rate_criterion``).

    python benchmarks/chees_settings.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import warnings

SETTINGS = {"target 0.8": {}, "target 0.651": {"target_accept_prob": 0.651},
            "chees_rate": {"trajectory_criterion": "chees_rate"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    import arviz as az
    import numpy as np
    import torch

    import ppl_gen

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    problems = {}
    for name, model, dataset in (("eight schools", "eight_schools", "eight_schools"),
                                 ("logistic regression", "logistic_regression",
                                  "breast_cancer")):
        data = ppl_gen.load_dataset(dataset)
        problems[name] = (ppl_gen.MODELS[model].from_dataset(data), data)
    print(f"{'posterior':20s} {'setting':13s} {'min ESS':>8s} {'gradients':>9s} "
          f"{'ESS/1000 grad':>14s} {'range':>13s} {'divergences':>11s} {'T':>5s} "
          f"{'step':>6s}")
    for name, (model, data) in problems.items():
        for label, options in SETTINGS.items():
            rows = []
            for seed in range(args.seeds):
                result = ppl_gen.fit(model, data, engine="chees", num_chains=16,
                                     num_warmup=500, num_samples=500, device="cpu",
                                     seed=seed, compile="fx", **options)
                latent = {k: v.cpu().numpy() for k, v in result.samples.items()
                          if k != "theta"}  # theta: deterministic
                ess = float(az.ess(az.from_dict(posterior=latent), method="bulk")
                            .to_array().min())
                grads = result.info["sampling_gradient_evaluations"]
                rows.append((ess, grads, 1000 * ess / grads, result.info["num_divergences"],
                             result.info["trajectory_length"],
                             float(np.mean(result.info["step_size_per_chain"]))))
            a = np.array(rows)
            print(f"{name:20s} {label:13s} {np.median(a[:, 0]):8.0f} "
                  f"{np.median(a[:, 1]):9.0f} {np.median(a[:, 2]):14.0f} "
                  f"{a[:, 2].min():6.0f}-{a[:, 2].max():<6.0f} {a[:, 3].sum():11.0f} "
                  f"{np.median(a[:, 4]):5.2f} {np.median(a[:, 5]):6.3f}", flush=True)


if __name__ == "__main__":
    main()
