"""GAN training speed through ppl_gen's adversarial engine against a hand-written PyTorch
loop with the same networks, optimisers, losses and minibatch sizes (issue 12's target:
at most 1.10x the plain loop's time).

Both sides start from the same initial weights; runs alternate (engine, loop, loop,
engine, ...) and the table gives medians of wall time per step and their ratio.

    python benchmarks/gan_speed.py [--steps 500] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings

import torch
import torch.nn.functional as F

import ppl_gen


def engine_run(model, data, steps: int, batch: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ppl_gen.fit(model, data, engine="adversarial", num_steps=steps,
                             batch_size=batch, learning_rate=2e-4, num_threads=1,
                             device="cpu")
    return result.info["wall_time"] / steps


def plain_run(model, data, steps: int, batch: int) -> float:
    """What a user writes by hand: two Adams, a randperm minibatch per phase, the
    non-saturating losses on the same networks (data already in network space)."""
    torch.set_num_threads(1)
    x_all = model._to_unit(data["x"])
    generator_net, critic = model.generator, model.discriminator
    d_opt = torch.optim.Adam(critic.parameters(), lr=2e-4, betas=(0.5, 0.9))
    g_opt = torch.optim.Adam(generator_net.parameters(), lr=2e-4, betas=(0.5, 0.9))
    rows = torch.Generator().manual_seed(0)
    tanh = model.data_range is not None
    started = time.perf_counter()
    for _ in range(steps):
        real = x_all[torch.randperm(len(x_all), generator=rows)[:batch]]
        z = torch.randn(batch, model.latent_dim)
        with torch.no_grad():
            fake = generator_net(z)
            fake = torch.tanh(fake) if tanh else fake
        critic.zero_grad(set_to_none=True)
        d_loss = F.softplus(-critic(real)).mean() + F.softplus(critic(fake)).mean()
        d_loss.backward()
        d_opt.step()
        generator_net.zero_grad(set_to_none=True)
        real = x_all[torch.randperm(len(x_all), generator=rows)[:batch]]  # as the engine
        z = torch.randn(batch, model.latent_dim)
        fake = generator_net(z)
        fake = torch.tanh(fake) if tanh else fake
        g_loss = F.softplus(-critic(fake)).mean()
        g_loss.backward()
        g_opt.step()
        float(d_loss), float(g_loss)  # the engine reads both losses every step
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cases = {
        "MLP GAN, 2-D ring, batch 100": ("gan", ppl_gen.load_dataset("gaussian_ring"), 100),
        "DCGAN, 8x8 digits, batch 64": ("dcgan", ppl_gen.load_dataset("digits"), 64),
    }
    print("| case | engine ms/step | plain PyTorch ms/step | ratio |")
    print("| --- | --- | --- | --- |")
    for label, (name, ds, batch) in cases.items():
        torch.manual_seed(0)
        template = ppl_gen.MODELS[name].from_dataset(ds)
        times = {"engine": [], "plain": []}
        for repeat in range(args.repeats):
            order = ("engine", "plain") if repeat % 2 == 0 else ("plain", "engine")
            for which in order:
                model = copy.deepcopy(template)
                run = engine_run if which == "engine" else plain_run
                times[which].append(run(model, ds.tensors, args.steps, batch))
        engine, plain = (statistics.median(times[k]) * 1e3 for k in ("engine", "plain"))
        print(f"| {label} | {engine:.3f} | {plain:.3f} | {engine / plain:.3f} |", flush=True)


if __name__ == "__main__":
    main()
