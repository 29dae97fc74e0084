"""Example: a conditional VAE as a classifier by Bayes' rule, which can refuse to answer
=====================================================================================

The seed: "assign labels, while rejecting outliers". A conditional VAE models p(x | y); with
a class prior p(y), Bayes' rule gives p(y | x) ∝ p(x | y) p(y), each p(x | y) estimated by
importance sampling. Unlike a discriminative classifier it also knows p(x) = Σ_y p(x, y), so
inputs that look like no class (here: random noise images, and digits with half the image
blanked) get a log-likelihood far below the test digits' and are rejected.

Prints test accuracy, the rejection threshold (1% quantile of held-out log p(x)) and the
rejection rates. Writes ``class_samples.png`` (one row of generated images per class).

    python examples/cvae_bayes_classifier.py [--smoke] [--num-steps 5000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import ppl_gen
from ppl_gen.plots import plot_images, save_figure


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "digits" if args.smoke else "mnist"
    train = ppl_gen.load_dataset(name, split="train", binarize=True)
    test = ppl_gen.load_dataset(name, split="test", binarize=True)
    cvae = ppl_gen.MODELS["cvae"].from_dataset(train, latent_dim=8 if args.smoke else 20,
                                               hidden_dims=(128,) if args.smoke else (400,))
    ppl_gen.fit(cvae, train, engine="svi", num_steps=300 if args.smoke else args.num_steps,
                learning_rate=3e-3, progress_bar=not args.smoke)
    k = 20 if args.smoke else args.num_samples
    half = test.num_data // 2
    reference, evaluation = test["x"][:half], test["x"][half:]
    labels = test["y"][half:]
    threshold = cvae.outlier_threshold(reference, quantile=0.01, num_samples=k)
    predicted = cvae.classify(evaluation, num_samples=k)
    accuracy = float((predicted == labels).float().mean())
    generator = torch.Generator().manual_seed(0)
    noise = torch.bernoulli(torch.full((200, train["x"].shape[1]), 0.3), generator=generator)
    blanked = evaluation[:200].clone()
    blanked[:, : blanked.shape[1] // 2] = 0.0  # the top half of each image removed
    rejected = {
        "test digits": float((cvae.classify(evaluation, threshold=threshold,
                                            num_samples=k) == -1).float().mean()),
        "noise images": float((cvae.classify(noise, threshold=threshold,
                                             num_samples=k) == -1).float().mean()),
        "half-blanked digits": float((cvae.classify(blanked, threshold=threshold,
                                                    num_samples=k) == -1).float().mean()),
    }
    print(f"Bayes-rule accuracy on {len(labels)} test digits: {accuracy:.3f} (chance 0.10)")
    print(f"rejection threshold: log p(x) < {threshold:.1f} nats (1% of held-out digits)")
    for key, rate in rejected.items():
        print(f"  rejected {key:20s} {rate:6.1%}")
    rows = {f"y = {c}": cvae.sample(12, y=c, mean=True) for c in range(cvae.num_classes)}
    save_figure(plot_images(rows, tuple(train.meta["image_shape"]), max_per_row=12),
                out / "class_samples.png")
    print(f"wrote {out / 'class_samples.png'}")
    return {"accuracy": accuracy, "threshold": threshold, "rejected": rejected}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    parser.add_argument("--num-steps", type=int, default=5000)
    parser.add_argument("--num-samples", type=int, default=100,
                        help="importance samples per class and image")
    parser.add_argument("--out", default="examples_out/cvae_bayes_classifier")
    main(parser.parse_args())
