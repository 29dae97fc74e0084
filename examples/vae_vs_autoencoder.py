"""Example: is an autoencoder a generative model? A VAE, a plain autoencoder and an AAE
===================================================================================

The seed's question, answered by measurement. All three models have an encoder, a decoder
and a 2-D code space; all reconstruct well. Only two of them can *generate*:

* the VAE's KL term pulls q(z | x) towards the prior N(0, I),
* the adversarial autoencoder's discriminator pushes the codes onto the prior,
* the plain autoencoder's codes go wherever reconstruction likes them, so decoding
  z ~ N(0, I) lands in places no training image was ever encoded to.

Printed: reconstruction error, and the energy distance between each model's codes and the
prior (0 when the codes follow the prior). Written: ``codes.png`` (codes coloured by digit
over prior draws) and ``images.png`` (data, reconstructions, samples from the prior).

    python examples/vae_vs_autoencoder.py [--smoke] [--num-steps 3000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import ppl_gen
from ppl_gen.models import energy_distance
from ppl_gen.plots import plot_images, plot_latent, save_figure


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "digits" if args.smoke else "mnist"
    train = ppl_gen.load_dataset(name, split="train", binarize=True)
    test = ppl_gen.load_dataset(name, split="test", binarize=True)
    steps = 200 if args.smoke else args.num_steps
    hidden = (64,) if args.smoke else (400,)

    vae = ppl_gen.MODELS["vae"].from_dataset(train, latent_dim=2, hidden_dims=hidden)
    ppl_gen.fit(vae, train, engine="svi", num_steps=steps, learning_rate=1e-3,
                progress_bar=not args.smoke)
    adversarial = {}
    for key in ("aae", "autoencoder"):
        model = ppl_gen.MODELS[key].from_dataset(train, hidden_dims=hidden + hidden)
        ppl_gen.fit(model, train, engine="adversarial", num_steps=steps,
                    learning_rate=1e-3, progress_bar=not args.smoke)
        adversarial[key] = model

    x, labels = test["x"], test["y"]
    prior = torch.randn(2000, 2)
    with torch.no_grad():
        codes = {"VAE (encoder means)": vae.encode(x)[0],
                 "adversarial autoencoder": adversarial["aae"].encode(x),
                 "plain autoencoder": adversarial["autoencoder"].encode(x)}
        reconstructions = {"VAE": vae.reconstruct(x),
                           "adversarial autoencoder": adversarial["aae"].decode(
                               codes["adversarial autoencoder"]),
                           "plain autoencoder": adversarial["autoencoder"].decode(
                               codes["plain autoencoder"])}
        samples = {"VAE": vae.sample(16, mean=True),
                   "adversarial autoencoder": adversarial["aae"].sample(16, mean=True),
                   "plain autoencoder": adversarial["autoencoder"].sample(16, mean=True)}
    results = {}
    print(f"{'model':26s}{'reconstruction error':>22s}{'codes vs prior (energy dist.)':>32s}")
    for z, (short, recon) in zip(codes.values(), reconstructions.items()):
        error = float((recon - x).abs().mean())
        distance = float(energy_distance(z, prior))
        results[short] = {"reconstruction_error": error, "prior_energy_distance": distance}
        print(f"{short:26s}{error:>22.3f}{distance:>32.3f}")
    print("\nThe autoencoder reconstructs as well as the others, but its codes are far from "
          "N(0, I):\ndecoding prior draws gives the blurred non-digits in the last rows of "
          "images.png.")

    shape = tuple(train.meta["image_shape"])
    save_figure(plot_latent(codes, labels.numpy(), prior_draws=prior.numpy()),
                out / "codes.png")
    rows = {"test images": x}
    rows.update({f"{k}: reconstruction": v for k, v in reconstructions.items()})
    rows.update({f"{k}: decoded prior draws": v for k, v in samples.items()})
    save_figure(plot_images(rows, shape), out / "images.png")
    print(f"\nwrote {out / 'codes.png'} and {out / 'images.png'}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    parser.add_argument("--num-steps", type=int, default=3000)
    parser.add_argument("--out", default="examples_out/vae_vs_autoencoder")
    main(parser.parse_args())
