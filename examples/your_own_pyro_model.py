"""Example: bring your own Pyro model
====================================

Most statistical scripts already have a Pyro model. Pass it to ``ppl_gen.fit`` with its
data as keyword arguments — no subclassing — and get the same engines, ArviZ conversion
and VI-versus-MCMC comparison as the zoo models. The model here is a robust regression
with Student-t noise on the diabetes data (BMI against disease progression).

    python examples/your_own_pyro_model.py [--smoke]
"""

from __future__ import annotations

import argparse

import pyro
import pyro.distributions as dist
import torch

import ppl_gen
from ppl_gen.diagnostics import compare_posteriors, loo, summarize, to_inference_data


def robust_regression(x, y=None):
    """y_i ~ StudentT(nu, a + b x_i, sigma), with weakly informative priors."""
    a = pyro.sample("a", dist.Normal(0.0, 5.0))
    b = pyro.sample("b", dist.Normal(0.0, 5.0))
    sigma = pyro.sample("sigma", dist.HalfNormal(2.0))
    nu = pyro.sample("nu", dist.Gamma(2.0, 0.1))
    with pyro.plate("data", len(x)):
        pyro.sample("y", dist.StudentT(nu, a + b * x, sigma), obs=y)


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    table = ppl_gen.load_dataset("diabetes")
    data = {"x": table["x"][:, 2], "y": table["y"]}  # column 2 is BMI
    nuts = ppl_gen.fit(robust_regression, data, engine="nuts", device="cpu",
                       num_warmup=30 if args.smoke else 500,
                       num_samples=30 if args.smoke else 500, num_chains=2)
    vi = ppl_gen.fit(robust_regression, data, engine="svi", guide="mvn", device="cpu",
                     num_steps=100 if args.smoke else 3000, learning_rate=0.02,
                     final_learning_rate=2e-4)
    summary = summarize(nuts)
    for name, row in summary["parameters"].items():
        print(f"{name:6s} mean {row['mean']:+.3f}  sd {row['sd']:.3f}  r_hat {row['r_hat']:.3f}")
    print(f"PSIS-LOO elpd: {float(loo(to_inference_data(nuts)).elpd):.1f}")
    comparison = compare_posteriors(vi, nuts, num_samples=200 if args.smoke else 2000,
                                    num_psis_samples=100 if args.smoke else 1000)
    print(comparison.to_markdown())
    return {"khat": comparison.khat["vi"]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    main(parser.parse_args())
