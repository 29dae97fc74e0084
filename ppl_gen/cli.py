"""``ppl-gen``: list, fit, compare and demo, as thin wrappers over the Python API."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser"]

# Named flags that map onto engine config fields (any field also works via --option).
_SHORTCUTS = {
    "num_steps": int, "learning_rate": float, "final_learning_rate": float, "guide": str,
    "loss": str, "num_particles": int, "batch_size": int, "num_warmup": int,
    "num_samples": int, "num_chains": int, "target_accept_prob": float, "max_iter": int,
    "tol": float, "init": str,
}


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse turns the ValueError into a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _parse_value(text: str, annotation: str) -> Any:
    """Parse ``text`` for a dataclass field annotated ``annotation`` (a string)."""
    if "None" in annotation and text.lower() in ("none", "null"):
        return None
    alternatives = "str" in annotation  # a union such as ``bool | str``: a word passes on
    if "bool" in annotation:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        if not alternatives:
            raise ValueError(f"expected true/false, got {text!r}")
    if "tuple" in annotation:
        try:
            return tuple(float(v) for v in text.strip("()").split(","))
        except ValueError:
            raise ValueError(f"expected numbers separated by commas, got {text!r}") from None
    for number in (int, float):
        if number.__name__ in annotation:
            try:
                return number(text)
            except ValueError:
                if not alternatives:
                    raise ValueError(f"expected {'an integer' if number is int else 'a number'}"
                                     f", got {text!r}") from None
    return text


def _literal(text: str) -> Any:
    """Best-effort literal for dataset/model options: int, float, bool, None, a tuple or
    list of those (``hidden_dims=(64,64)``, ``[64,64]``) or a string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.strip()[:1] in "([" and text.strip():
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError(f"option value {text!r} looks like a tuple or list but does "
                             "not parse; write it like (64, 64) or [64, 64]") from None
        return tuple(value) if isinstance(value, (tuple, list)) else value
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def _key_values(pairs: Sequence[str] | None, what: str) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"{what} {pair!r} must look like KEY=VALUE")
        key, value = pair.split("=", 1)
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def _engine_options(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    from .config import CONFIGS

    fields = {f.name: str(f.type) for f in dataclasses.fields(CONFIGS[engine])}
    raw = _key_values(args.option, "--option")
    options: dict[str, Any] = {}
    for key, text in raw.items():
        if key not in fields:
            raise ValueError(f"unknown {engine} option {key!r}; valid options are: "
                             f"{', '.join(sorted(fields))}")
        try:
            options[key] = _parse_value(text, fields[key])
        except ValueError as error:
            raise ValueError(f"--option {key}={text}: {error}") from None
    for key in _SHORTCUTS:
        value = getattr(args, key, None)
        if value is not None:
            if key not in fields:
                raise ValueError(f"--{key.replace('_', '-')} does not apply to engine "
                                 f"{engine!r}; its options are: {', '.join(sorted(fields))}")
            options[key] = value
    if _show_progress(args) and "progress_bar" in fields:
        options["progress_bar"] = True
    return options


def _show_progress(args: argparse.Namespace) -> bool:
    """Progress bars when asked, or by default when a person watches the terminal."""
    return bool(getattr(args, "progress", False)) or sys.stderr.isatty()


def _load(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """(dataset, model, the config.json entries that let load_run rebuild them)."""
    from .data import load_dataset
    from .models import DEFAULT_DATASETS, MODELS, build_model

    MODELS[args.model]  # unknown names fail here with the list of valid ones
    data_name = args.data or DEFAULT_DATASETS.get(args.model)
    if data_name is None:
        raise ValueError(f"model {args.model!r} has no default dataset; pass --data")
    data_options = {k: _literal(v) for k, v in _key_values(args.data_option,
                                                           "--data-option").items()}
    dataset_kwargs = {"split": args.split, **data_options}
    dataset = load_dataset(data_name, **dataset_kwargs)
    model_options = {k: _literal(v) for k, v in _key_values(args.model_option,
                                                            "--model-option").items()}
    model = build_model(args.model, dataset, **model_options)
    record = {"model_name": args.model, "dataset": data_name,
              "dataset_options": dataset_kwargs, "model_options": model_options}
    return dataset, model, record


def _cmd_list(args: argparse.Namespace) -> int:
    from .data import DATASETS
    from .inference import ENGINES
    from .models import DEFAULT_DATASETS, MODELS

    sections = [("models", MODELS.descriptions), ("datasets", DATASETS.descriptions),
                ("engines", ENGINES.descriptions)]
    for title, table in sections:
        print(f"{title}:")
        width = max(map(len, table))
        for name, description in table.items():
            suffix = f"  [default data: {DEFAULT_DATASETS[name]}]" if title == "models" else ""
            print(f"  {name:<{width}}  {description}{suffix}")
        print()
    return 0


#: What ``cli.json`` of a partial run records (the arguments that rebuild the fit).
_RECORDED = ("model", "data", "split", "data_option", "model_option", "engine", "option",
             "seed", "device", "vi_draws", "overwrite", "checkpoint_every",
             "checkpoint_seconds", *_SHORTCUTS)


def _resume_args(args: argparse.Namespace) -> tuple[argparse.Namespace, Path]:
    """The recorded arguments of the partial run in ``--resume DIR``."""
    from .io import read_partial_run

    record = read_partial_run(args.resume)
    recorded = argparse.Namespace(**{k: record.get(k) for k in _RECORDED},
                                  out=record["out"], progress=args.progress,
                                  resume=args.resume, command="fit")
    return recorded, Path(args.resume).expanduser().absolute()


def _fit_and_save(args: argparse.Namespace) -> Path:
    from . import diagnostics, plots
    from .inference import ENGINES, fit
    from .inference.distributed import launched_rank, launched_world_size
    from .io import check_run_target, make_partial_run, partial_run_dir, save_run

    partial: Path | None = None
    if args.resume:
        args, partial = _resume_args(args)
    ENGINES[args.engine]  # unknown names fail here with the list of valid ones
    options = _engine_options(args, args.engine)
    # Distributed NUTS/HMC keep no checkpoint (each process holds its own chains); ChEES
    # does (every rank holds the whole batch: rank 0's checkpoint resumes them all).
    runner = ENGINES[args.engine]
    resumable = runner.resumable and not (
        options.get("distributed") and runner.kind == "sampler" and not runner.lockstep)
    if partial is None:
        check_run_target(args.out, overwrite=args.overwrite)  # fail before any work
        if resumable:
            partial = partial_run_dir(args.out, overwrite=args.overwrite)
    world = launched_world_size()
    if world > 1 and not options.get("distributed"):
        raise ValueError(f"this process is one of {world} that torchrun started, but the "
                         "fit is not distributed: every process would fit the whole "
                         "problem and write --out; add --option distributed=true (engine "
                         "svi), or run one process")
    dataset, model, record = _load(args)
    loop: dict[str, Any] = {}
    if resumable:
        assert partial is not None
        cli_record = {k: getattr(args, k, None) for k in _RECORDED}
        cli_record["out"] = str(Path(args.out).expanduser().absolute())
        loop = {"checkpoint": partial / "resume.pt",
                "checkpoint_every": args.checkpoint_every,
                "checkpoint_seconds": args.checkpoint_seconds,
                "resume": partial / "resume.pt" if args.resume else None,
                "_loop": {"prepare": lambda: make_partial_run(partial, cli_record)}}
    verb = "resuming" if args.resume else "fitting"
    if launched_rank() == 0:
        ranks = f" on {world} processes" if world > 1 else ""
        print(f"{verb} {args.model} on {record['dataset']} with {args.engine}{ranks} ...",
              flush=True)
    try:
        with warnings.catch_warnings():  # printed as WARNING: lines with the summary
            warnings.simplefilter("ignore", diagnostics.ReliabilityWarning)
            result = fit(model, dataset, engine=args.engine, device=args.device,
                         seed=args.seed, **loop, **options)
    except KeyboardInterrupt as error:
        if partial is not None and (partial / "resume.pt").exists():
            raise KeyboardInterrupt(f"{error}; continue with: ppl-gen fit --resume "
                                    f"{partial}") from None
        raise
    except FloatingPointError as error:
        if partial is not None and (partial / "resume.pt").exists():
            raise FloatingPointError(f"{error}; after fixing the cause start afresh, or "
                                     f"continue with ppl-gen fit --resume {partial}") from None
        raise
    if launched_rank() != 0:  # distributed: rank 0 alone summarises and writes the run folder
        return Path(args.out).expanduser().absolute()
    print("summarising (draws, ArviZ conversion, plots) ...", flush=True)
    idata = diagnostics.to_inference_data(result, num_samples=args.vi_draws, seed=args.seed)
    summary = diagnostics.summarize(result, idata=idata)
    figures = {"history": plots.plot_history(result)}
    if result.samples is not None:
        diverging = (result.sample_stats or {}).get("diverging")  # Pathfinder: none
        figures["trace"] = plots.plot_trace(result.samples, diverging=diverging)
        figures["pair"] = plots.plot_pair(result.samples, diverging=diverging)
    figures.update(_sample_figures(result, dataset))
    target = Path(args.out).expanduser().absolute()
    in_place = partial is not None and partial == target
    out = save_run(args.out, result, summary=summary, idata=idata, figures=figures,
                   extra_config=record, overwrite=args.overwrite or in_place)
    if partial is not None and not in_place and partial.exists():
        shutil.rmtree(partial, ignore_errors=True)  # the sibling of a replaced run
    _print_summary(summary)
    print(f"wrote {out}/: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return out


def _sample_figures(result: Any, dataset: Any) -> dict[str, Any]:
    """Samples of a two-player model (GAN, AAE) or of one that asks (DDPM): an image
    grid, or 2-D points over the data's density — people would rather look at these than
    read a loss."""
    from . import plots

    module = result.problem.module
    if module is None or not hasattr(module, "sample") or not (
            result.kind == "two-player" or getattr(module, "sample_figure", False)):
        return {}
    x = result.problem.data.get(module.observed)
    shape = (getattr(module, "image_shape", None)
             or (getattr(dataset, "meta", {}) or {}).get("image_shape"))
    try:
        if shape is not None:
            return {"samples": plots.plot_images(
                {"generated": module.sample(16), "data": x[:16]}, tuple(shape))}
        if x is not None and x.shape[-1] == 2:
            return {"samples": plots.plot_samples_2d(module.sample(2000), x)}
    except (NotImplementedError, ValueError, RuntimeError):
        return {}
    return {}


def _print_summary(summary: dict[str, Any], limit: int = 12) -> None:
    params = summary.get("parameters", {})
    keys = ["mean", "sd", "r_hat", "ess_bulk"]
    psis = summary.get("psis") or {}
    corrected = "khat" in psis and summary.get("kind") == "optimiser"
    if corrected:  # VI: the PSIS-corrected numbers beside the guide's own
        keys = ["mean", "sd", "psis_mean", "psis_sd", "psis_mcse_mean"]
    elif summary.get("kind") == "approximation":  # Pathfinder: draws already resampled
        keys = ["mean", "sd"]
    shown = list(params.items())[:limit]
    if shown:
        widths = [max(12, len(k) + 2) for k in keys]
        print(f"{'parameter':<20}" + "".join(f"{k:>{w}}" for k, w in zip(keys, widths)))
        for name, row in shown:
            cells = "".join(f"{row[k]:>{w}.4g}" if row.get(k) is not None else f"{'':>{w}}"
                            for k, w in zip(keys, widths))
            print(f"{name:<20}{cells}")
        if len(params) > limit:
            print(f"... {len(params) - limit} more in summary.json")
    if "divergences" in summary:
        print(f"divergences: {summary['divergences']}")
    if "khat" in psis:
        what = ("psis_* columns: the guide's draws reweighted towards the posterior"
                if corrected else "the draws above are PSIS-resampled from the paths' draws")
        print(f"PSIS k-hat: {psis['khat']:.2f} ({psis['verdict']}; < 0.5 good, 0.5-0.7 ok, "
              f"> 0.7 unreliable; {psis['num_draws']} draws, {psis['seconds']:.1f} s); "
              f"{what}")
    elif psis.get("skipped"):
        print(f"PSIS k-hat: not computed ({psis['skipped']})")
    for message in summary.get("warnings", []):
        print(f"WARNING: {message}")
    if summary.get("engine") == "em":
        print(f"log-likelihood per datum: {summary['log_likelihood'][-1]:.6g} after "
              f"{summary['info']['num_iterations']} iterations")
    if summary.get("engine") == "svi":
        print(f"final ELBO: {summary['elbo'][-1]:.6g}")


def _cmd_fit(args: argparse.Namespace) -> int:
    _fit_and_save(args)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from . import diagnostics, plots
    from .diagnostics import ReliabilityWarning
    from .inference import fit
    from .io import check_run_target, staged_run_dir, write_json

    check_run_target(args.out, overwrite=args.overwrite)
    dataset, model, record = _load(args)
    vi_options = {"num_steps": args.vi_steps, "learning_rate": args.learning_rate,
                  # Decay to 1% of the step size: removes Adam's jitter, which otherwise
                  # inflates k-hat even for an exact family (see SVIConfig).
                  "final_learning_rate": args.learning_rate / 100,
                  "progress_bar": _show_progress(args)}
    vi = {}
    for name, guide in (("meanfield", "normal"), ("fullrank", "mvn")):
        print(f"fitting {args.model} by VI ({name}) ...", flush=True)
        with warnings.catch_warnings():  # printed as sentences below
            warnings.simplefilter("ignore", ReliabilityWarning)
            vi[name] = fit(model, dataset, engine="svi", guide=guide, device=args.device,
                           seed=args.seed, **vi_options)
        for message in vi[name].warnings:
            print(f"WARNING (VI, {name}): {message}")
    engine = getattr(args, "mcmc_engine", "nuts")
    print(f"fitting {args.model} by {engine.upper()} ({args.num_chains} chains, "
          f"{args.num_warmup} + {args.num_samples}) ...", flush=True)
    started = time.perf_counter()
    with warnings.catch_warnings():  # printed below, as sentences, not as a traceback line
        warnings.simplefilter("ignore", ReliabilityWarning)
        mcmc = fit(model, dataset, engine=engine, device=args.device, seed=args.seed,
                   num_warmup=args.num_warmup, num_samples=args.num_samples,
                   num_chains=args.num_chains, target_accept_prob=args.target_accept_prob,
                   progress_bar=_show_progress(args))
    print(f"  {time.perf_counter() - started:.1f} s", flush=True)
    for message in mcmc.warnings:
        print(f"WARNING (MCMC reference): {message}")
    with warnings.catch_warnings():  # the reference's warnings are printed above
        warnings.simplefilter("ignore", ReliabilityWarning)
        comparison = diagnostics.compare_posteriors(vi, mcmc, num_samples=args.vi_draws,
                                                    seed=args.seed)
    result = comparison.to_dict()
    for name, fitted in vi.items():
        result["approximations"][name]["warnings"] = list(fitted.warnings)
    result["mcmc"] = {"engine": engine, "divergences": mcmc.info["num_divergences"],
                      "warnings": list(mcmc.warnings),
                      **{k: record[k] for k in ("model_name", "dataset")}}
    with staged_run_dir(args.out, overwrite=args.overwrite, kind="compare") as stage:
        write_json(stage / "comparison.json", result)
        (stage / "comparison.md").write_text(comparison.to_markdown())
        plots.save_figure(plots.plot_comparison(comparison), stage / "comparison.png")
        write_json(stage / "config.json", {**record, "seed": args.seed, "vi": vi_options,
                                           engine: {"num_warmup": args.num_warmup,
                                                    "num_samples": args.num_samples,
                                                    "num_chains": args.num_chains}})
    out = Path(args.out)
    print(comparison.to_markdown())
    print(f"wrote {out}/: comparison.json, comparison.md, comparison.png, config.json")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Eight schools, non-centered: VI (mean-field and full-rank) against NUTS."""
    smoke = args.smoke
    demo = argparse.Namespace(
        model="eight_schools", data="eight_schools", split="all", data_option=None,
        model_option=None, out=args.out, overwrite=args.overwrite, device=args.device,
        seed=args.seed, vi_steps=300 if smoke else 4000, learning_rate=0.02,
        num_warmup=100 if smoke else 500, num_samples=100 if smoke else 500,
        num_chains=4 if smoke else 16, target_accept_prob=0.9, mcmc_engine="chees",
        vi_draws=200 if smoke else 2000, progress=False)
    print("ppl-gen demo: eight schools (Rubin 1981), VI vs MCMC (ChEES-HMC)\n")
    return _cmd_compare(demo)


def _cmd_report(args: argparse.Namespace) -> int:
    """A self-contained HTML report of a run folder."""
    from .report import write_report

    target = write_report(args.folder, args.out, overwrite=args.overwrite)
    print(f"wrote {target}")
    return 0


def _add_common(p: argparse.ArgumentParser, *, resumable: bool = False) -> None:
    if resumable:
        p.add_argument("model", nargs="?", help="registered model name (ppl-gen list)")
    else:
        p.add_argument("model", help="registered model name (ppl-gen list)")
    p.add_argument("--data", help="registered dataset name (default: the model's own)")
    p.add_argument("--split", default="all", help="train, test or all (default: all)")
    p.add_argument("--data-option", action="append", metavar="KEY=VALUE",
                   help="dataset option, e.g. correlation=0.9 (repeatable)")
    p.add_argument("--model-option", action="append", metavar="KEY=VALUE",
                   help="model constructor option, e.g. num_components=4 (repeatable)")
    p.add_argument("--out", required=not resumable, help="run folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true",
                   help="show progress bars (default: when stderr is a terminal)")
    p.add_argument("--vi-draws", type=_positive_int, default=1000,
                   help="draws from a fitted guide for summaries (default: 1000)")


def _torch_version() -> str:
    import torch

    return torch.__version__


def _pyro_version() -> str:
    import pyro

    return pyro.__version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppl-gen", description="Deep generative models as Pyro programs: fit, compare "
        "VI with MCMC, diagnose with ArviZ.")
    from . import __version__

    parser.add_argument("--version", action="version",
                        version=f"ppl-gen {__version__} (torch {_torch_version()}, pyro "
                        f"{_pyro_version()})")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="registered models, datasets and engines")

    p_fit = sub.add_parser("fit", help="fit a model and write a run folder")
    _add_common(p_fit, resumable=True)
    p_fit.add_argument("--resume", metavar="DIR",
                       help="continue an interrupted fit from its folder (the model, data "
                       "and options are read from it)")
    p_fit.add_argument("--checkpoint-every", type=_positive_int, default=None, metavar="N",
                       help="write a resume checkpoint every N steps (default: every "
                       "--checkpoint-seconds)")
    p_fit.add_argument("--checkpoint-seconds", type=float, default=60.0, metavar="S",
                       help="write a resume checkpoint every S seconds (default: 60)")
    p_fit.add_argument("--engine", default="svi",
                       help="svi, em, nuts, hmc, chees or adversarial (default: svi)")
    p_fit.add_argument("--option", action="append", metavar="KEY=VALUE",
                       help="any engine config field, e.g. num_chains=2 (repeatable)")
    for key, cast in _SHORTCUTS.items():
        p_fit.add_argument(f"--{key.replace('_', '-')}", type=cast, default=None,
                           help=argparse.SUPPRESS if key in ("init", "tol") else None)

    p_cmp = sub.add_parser("compare", help="VI (mean-field, full-rank) vs MCMC on one model")
    _add_common(p_cmp)
    p_cmp.add_argument("--vi-steps", type=int, default=4000)
    p_cmp.add_argument("--learning-rate", type=float, default=0.02)
    p_cmp.add_argument("--num-warmup", type=int, default=1000)
    p_cmp.add_argument("--num-samples", type=int, default=1000)
    p_cmp.add_argument("--mcmc-engine", choices=["chees", "nuts"], default="chees",
                       help="the MCMC reference (default: chees, 16 chains as one batch)")
    p_cmp.add_argument("--num-chains", type=int, default=16)
    p_cmp.add_argument("--target-accept-prob", type=float, default=0.9)

    p_report = sub.add_parser("report", help="a self-contained HTML report of a run folder "
                              "(warnings, diagnostics, tables, plots; opens offline)")
    p_report.add_argument("folder", help="a run folder written by fit, compare or demo")
    p_report.add_argument("--out", default=None,
                          help="the HTML file to write (default: FOLDER/report.html)")
    p_report.add_argument("--overwrite", action="store_true",
                          help="replace --out even if it is not an earlier ppl_gen report")

    p_demo = sub.add_parser("demo", help="the main job on embedded data: eight schools, "
                            "VI vs MCMC")
    p_demo.add_argument("--out", default="ppl_gen_demo", help="folder (default: ppl_gen_demo)")
    p_demo.add_argument("--overwrite", action="store_true")
    p_demo.add_argument("--device", default="auto")
    p_demo.add_argument("--seed", type=int, default=0)
    p_demo.add_argument("--smoke", action="store_true", help="tiny run (seconds)")
    return parser


_COMMANDS = {"list": _cmd_list, "fit": _cmd_fit, "compare": _cmd_compare, "demo": _cmd_demo,
             "report": _cmd_report}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ppl-gen``; user errors print one line and exit with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "fit":
        if args.resume and (args.model or args.out):
            parser.error("--resume DIR reads the model and --out from DIR; give only "
                         "--resume (and --progress)")
        if not args.resume and (args.model is None or args.out is None):
            parser.error("fit needs a model and --out (or --resume DIR)")
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt as error:
        detail = str(error) or "no partial run was written; --out is as it was"
        print(f"ppl-gen: interrupted: {detail}", file=sys.stderr)
        return 130
    except ArithmeticError as error:  # FloatingPointError: a NaN/inf objective
        print(f"ppl-gen: error: {error}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, KeyError, RuntimeError, OSError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"ppl-gen: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
