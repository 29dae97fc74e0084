"""Per-step cost of every engine, measured on two source trees side by side.

Used to check that a refactor of the engines (issue 11: the one run loop) made no step
slower. Each measurement runs in a fresh subprocess with ``PYTHONPATH`` set to one tree;
the trees alternate (A B B A A B ...) so drift and the neighbour's load favour neither,
and the table reports per-tree medians and the ratio of medians.

    python benchmarks/engine_ab.py --old /tmp/ppl_gen_old --new . [--repeats 5]

(``git worktree add /tmp/ppl_gen_old <commit>`` makes the old tree.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CASES = {
    "svi eight schools AutoNormal, 2000 steps: ms/step": """
ds = ppl_gen.load_dataset("eight_schools")
model = ppl_gen.MODELS["eight_schools"].from_dataset(ds)
r = ppl_gen.fit(model, ds, engine="svi", num_steps=2000, guide="normal", device="cpu",
                num_threads=1)
value = r.info["wall_time"] / 2000 * 1e3
""",
    "svi VAE 784-400-20 on MNIST, batch 100, 200 steps: ms/step": """
ds = ppl_gen.load_dataset("mnist")
model = ppl_gen.MODELS["vae"].from_dataset(ds)
r = ppl_gen.fit(model, ds, engine="svi", num_steps=200, device="cpu", num_threads=1)
value = r.info["wall_time"] / 200 * 1e3
""",
    "svi tiny VAE 16-8-3 (a step is all overhead), batch 16, 500 steps, eager: ms/step": """
x = torch.bernoulli(torch.rand(64, 16, generator=torch.Generator().manual_seed(0)))
model = ppl_gen.models.VAE(16, 3, hidden_dims=(8,))
r = ppl_gen.fit(model, {"x": x}, engine="svi", num_steps=500, batch_size=16,
                compile=False, device="cpu", num_threads=1, psis_draws=0)
value = r.info["wall_time"] / 500 * 1e3
""",
    "em GMM 600 x 2, K=3, 200 iterations: ms/iteration": """
ds = ppl_gen.load_dataset("gaussian_mixture")
model = ppl_gen.MODELS["gmm"].from_dataset(ds)
r = ppl_gen.fit(model, ds, engine="em", max_iter=200, tol=0.0, check_monotone=False,
                device="cpu")
value = r.info["wall_time"] / 200 * 1e3
""",
    "chees eight schools, 16 chains, 300+300, eager: ms/iteration": """
ds = ppl_gen.load_dataset("eight_schools")
model = ppl_gen.MODELS["eight_schools"].from_dataset(ds)
r = ppl_gen.fit(model, ds, engine="chees", num_warmup=300, num_samples=300, compile=False,
                device="cpu")
value = r.info["wall_time"] / 600 * 1e3
""",
    "nuts eight schools, 1 chain, 200+200: ms/iteration": """
ds = ppl_gen.load_dataset("eight_schools")
model = ppl_gen.MODELS["eight_schools"].from_dataset(ds)
r = ppl_gen.fit(model, ds, engine="nuts", num_warmup=200, num_samples=200, num_chains=1,
                device="cpu")
value = r.info["wall_time"] / 400 * 1e3
""",
    "adversarial AAE on MNIST, batch 100, 100 steps: ms/step": """
ds = ppl_gen.load_dataset("mnist")
model = ppl_gen.MODELS["aae"].from_dataset(ds)
r = ppl_gen.fit(model, ds, engine="adversarial", num_steps=100, device="cpu",
                num_threads=1)
value = r.info["wall_time"] / 100 * 1e3
""",
}

_PRELUDE = """
import json, warnings
warnings.simplefilter("ignore")
import torch
torch.manual_seed(0)
import ppl_gen
"""


def measure(tree: str, body: str) -> float:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(tree)}
    code = _PRELUDE + body + "\nprint(json.dumps(value))\n"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, cwd=os.path.abspath(tree))
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True)
    parser.add_argument("--new", default=".")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", nargs="*", help="substrings of case names to run")
    args = parser.parse_args()
    print("| engine step | old (median) | new (median) | new/old |")
    print("| --- | --- | --- | --- |")
    for name, body in CASES.items():
        if args.cases and not any(c in name for c in args.cases):
            continue
        results: dict[str, list[float]] = {"old": [], "new": []}
        for repeat in range(args.repeats):
            order = ("old", "new") if repeat % 2 == 0 else ("new", "old")
            for which in order:
                results[which].append(measure(getattr(args, which), body))
        old, new = (statistics.median(results[k]) for k in ("old", "new"))
        print(f"| {name} | {old:.3f} | {new:.3f} | {new / old:.3f} |", flush=True)
        print(json.dumps({"case": name, **results}), file=sys.stderr)


if __name__ == "__main__":
    main()
