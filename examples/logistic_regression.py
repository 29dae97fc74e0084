"""Example: Bayesian logistic regression on breast-cancer data
=============================================================

NUTS and full-rank VI on the 30 standardised Wisconsin features, trained on the fixed
training split. Reports the held-out accuracy and log predictive density of each posterior,
PSIS-LOO on the training data (ArviZ), and the largest coefficients with their 90%
intervals.

    python examples/logistic_regression.py [--smoke] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import ppl_gen
from ppl_gen.diagnostics import loo, summarize, to_inference_data
from ppl_gen.inference import draw_from_guide


def predictive(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray
               ) -> tuple[float, float]:
    """Accuracy of the posterior-mean probability, and the log pointwise predictive
    density log mean_s p(y | x, theta_s), per test point."""
    logits = x @ weight.T + bias  # (N, S)
    prob = 1 / (1 + np.exp(-logits))
    mean_prob = prob.mean(1)
    accuracy = float(((mean_prob > 0.5) == y).mean())
    likelihood = np.where(y[:, None] == 1, prob, 1 - prob)
    lppd = float(np.log(likelihood.mean(1) + 1e-300).mean())
    return accuracy, lppd


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = ppl_gen.load_dataset("breast_cancer", split="train")
    test = ppl_gen.load_dataset("breast_cancer", split="test")
    model = ppl_gen.MODELS["logistic_regression"].from_dataset(train)
    nuts = ppl_gen.fit(model, train, engine="nuts", jit_compile=True, device="cpu",
                       num_warmup=30 if args.smoke else 500,
                       num_samples=30 if args.smoke else 500, num_chains=2)
    vi = ppl_gen.fit(model, train, engine="svi", guide="mvn", device="cpu",
                     num_steps=200 if args.smoke else 5000, learning_rate=0.02,
                     final_learning_rate=2e-4)
    vi_draws = draw_from_guide(vi.problem, vi.guide, 200 if args.smoke else 2000,
                               param_state=vi.param_state)
    x, y = test["x"].numpy(), test["y"].numpy()
    results = {}
    for name, weight, bias in (
            ("NUTS", nuts.samples["weight"].reshape(-1, 30), nuts.samples["bias"].reshape(-1)),
            ("full-rank VI", vi_draws["weight"], vi_draws["bias"])):
        accuracy, lppd = predictive(weight.numpy(), bias.numpy(), x, y)
        results[name] = {"accuracy": accuracy, "lppd": lppd}
        print(f"{name:13s} held-out accuracy {accuracy:.3f}, log predictive density "
              f"{lppd:.4f} per point")
    idata = to_inference_data(nuts)
    print(f"PSIS-LOO on the training split (NUTS): elpd = {float(loo(idata).elpd):.1f}")
    summary = summarize(nuts, idata=idata)["parameters"]
    names = train.meta["feature_names"]
    weights = nuts.samples["weight"].reshape(-1, 30).numpy()
    order = np.argsort(-np.abs(weights.mean(0)))[:5]
    print("largest coefficients (posterior mean, 90% interval):")
    for i in order:
        lo, hi = np.percentile(weights[:, i], [5, 95])
        print(f"  {names[i]:25s} {summary[f'weight[{i}]']['mean']:+.2f}  [{lo:+.2f}, {hi:+.2f}]")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    parser.add_argument("--out", default="examples_out/logistic")
    main(parser.parse_args())
