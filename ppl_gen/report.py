"""A self-contained HTML report of a run folder (``ppl-gen report DIR``).

One file that opens anywhere, offline: the run's warnings first (an unreliable result says
so before anything else), its diagnostics, the parameter table with the cells that failed a
check marked, the configuration, and every plot of the folder inlined as a PNG data URI.
No script, no stylesheet or font from the network: the page's Content-Security-Policy
forbids every fetch but its own inline images and styles.

Works on both kinds of folder ppl_gen writes: a fit (``summary.json``) and a VI-vs-MCMC
comparison (``comparison.json``).
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
import os
from pathlib import Path
from typing import Any

from ._files import atomic_write
from .io import RUN_MARKER, run_status

__all__ = ["write_report", "render_report", "REPORT_NAME"]

#: The report's file name inside the run folder.
REPORT_NAME = "report.html"
#: Marks a file ppl_gen wrote, so that a user's own report.html is never overwritten.
_GENERATOR = "ppl_gen report"

#: Thresholds the table marks (the same as the sampler checks in diagnostics/checks.py).
_RHAT_LIMIT, _ESS_LIMIT, _KHAT_LIMIT = 1.01, 100, 0.7

_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2430;
       margin: 0 auto; max-width: 1100px; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 32px 0 8px;
     border-bottom: 1px solid #d7dce3; padding-bottom: 4px; }
.sub { color: #5b6574; margin: 0 0 16px; }
.box { border-radius: 6px; padding: 12px 16px; margin: 16px 0; }
.bad { background: #fdecea; border: 1px solid #e5a39b; }
.good { background: #e9f6ec; border: 1px solid #9fd2ab; }
.box ul { margin: 6px 0 0 18px; padding: 0; } .box li { margin: 4px 0; }
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d7dce3; padding: 4px 10px; text-align: right; }
th { background: #f2f4f7; } td.name, th.name { text-align: left; font-family: monospace; }
td.flag { background: #fdecea; color: #8a1c10; font-weight: 600; }
figure { margin: 12px 0 24px; } figure img { max-width: 100%; border: 1px solid #d7dce3; }
figcaption { color: #5b6574; font-size: 13px; }
details { margin: 8px 0; } summary { cursor: pointer; color: #2a5db0; }
code { font-size: 13px; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}"
    return _e(value)


def _read_json(folder: Path, name: str) -> Any:
    path = folder / name
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} cannot be read as JSON ({error}); the run folder is "
                         "damaged: rerun the fit into a new folder") from None


def _warnings_box(warnings: list[tuple[str, str]]) -> str:
    if not warnings:
        return ('<div class="box good"><strong>Every check passed.</strong> No diagnostic '
                "of this run failed its threshold.</div>")
    items = "".join(f"<li><strong>{_e(source)}:</strong> {_e(text)}</li>"
                    for source, text in warnings)
    return (f'<div class="box bad"><strong>This result may be unreliable: '
            f"{len(warnings)} check(s) failed.</strong><ul>{items}</ul></div>")


def _key_values(rows: dict[str, Any]) -> str:
    body = "".join(f'<tr><td class="name">{_e(k)}</td><td>{_value_cell(v)}</td></tr>'
                   for k, v in rows.items())
    return f"<table><tbody>{body}</tbody></table>"


def _value_cell(value: Any) -> str:
    if isinstance(value, (dict, list)):
        text = json.dumps(value, indent=1, default=str)
        if len(text) > 200:
            return f"<details><summary>{len(text):,} characters</summary><pre>{_e(text)}" \
                   "</pre></details>"
        return f"<code>{_e(text)}</code>"
    return _number(value)


def _flagged(column: str, value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    if column == "r_hat":
        return value > _RHAT_LIMIT or math.isnan(value)
    if column.startswith("ess"):
        return value < _ESS_LIMIT
    if column.endswith("khat"):
        return value > _KHAT_LIMIT
    return False


def _table(rows: list[dict[str, Any]], columns: list[str], name_column: str) -> str:
    head = f'<th class="name">{_e(name_column)}</th>' + "".join(
        f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = [f'<td class="name">{_e(row.get(name_column, ""))}</td>']
        for column in columns:
            value = row.get(column)
            css = ' class="flag"' if _flagged(column, value) else ""
            cells.append(f"<td{css}>{_number(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figures(folder: Path) -> str:
    parts = []
    for path in sorted(folder.glob("*.png")):
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f'<figure><img alt="{_e(path.stem)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{_e(path.name)}</figcaption></figure>")
    return "".join(parts) or "<p>This folder has no plots.</p>"


def _fit_sections(folder: Path, summary: dict[str, Any]) -> tuple[str, str, list]:
    title = f"{summary.get('model', '?')} — {summary.get('engine', '?')}"
    warnings = [("check", w) for w in summary.get("warnings", [])]
    diag: dict[str, Any] = {"engine": summary.get("engine"), "kind": summary.get("kind"),
                            "seed": summary.get("seed")}
    for key in ("divergences", "divergences_per_chain", "max_r_hat", "min_ess_bulk",
                "min_ess_tail", "max_nested_r_hat", "e_bfmi_per_chain"):
        if key in summary:
            diag[key] = summary[key]
    psis = summary.get("psis") or {}
    for key in ("khat", "verdict", "skipped"):
        if key in psis:
            diag[f"psis_{key}"] = psis[key]
    info = summary.get("info") or {}
    for key in ("wall_time", "num_steps", "final_loss", "compiled", "num_divergences"):
        if key in info:
            diag[key] = info[key]
    convergence = info.get("convergence")
    if isinstance(convergence, dict):
        diag["converged"] = convergence.get("converged")
    parameters = summary.get("parameters") or {}
    rows = [{"parameter": name, **values} for name, values in parameters.items()]
    columns = [c for c in ("mean", "sd", "psis_mean", "psis_sd", "mcse_mean", "ess_bulk",
                           "ess_tail", "r_hat") if any(c in r for r in rows)]
    sections = ["<h2>Diagnostics</h2>", _key_values(diag), "<h2>Parameters</h2>"]
    if rows:
        sections.append(_table(rows, columns, "parameter"))
        if summary.get("kind") == "sampler":
            sections.append(f"<p class='sub'>Marked: r_hat above {_RHAT_LIMIT}, bulk or tail "
                            f"ESS below {_ESS_LIMIT}.</p>")
    else:
        sections.append("<p>No parameter summary (a maximum-likelihood fit with no latent "
                        "sites, or local latents only).</p>")
    if summary.get("not_summarised"):
        sections.append(f"<p>Not summarised: {_e(summary['not_summarised'])}</p>")
    trace = summary.get("elbo") or summary.get("log_likelihood")
    if isinstance(trace, list) and trace:
        label = "ELBO" if "elbo" in summary else "log-likelihood per datum"
        sections.append(f"<p>{label}: first {_number(trace[0])}, last {_number(trace[-1])} "
                        f"({len(trace):,} recorded steps).</p>")
    sections += ["<h2>Configuration</h2>", _key_values(summary.get("config") or {}),
                 "<details><summary>Run info</summary>", _key_values(info), "</details>"]
    return title, "".join(sections), warnings


def _compare_sections(folder: Path, comparison: dict[str, Any]) -> tuple[str, str, list]:
    mcmc = comparison.get("mcmc") or {}
    title = f"{mcmc.get('model_name', '?')} — VI vs MCMC ({mcmc.get('engine', '?')})"
    warnings: list[tuple[str, str]] = [(f"MCMC reference ({mcmc.get('engine', '?')})", w)
                                       for w in mcmc.get("warnings", [])]
    rows = []
    for name, values in (comparison.get("approximations") or {}).items():
        warnings += [(f"VI ({name})", w) for w in values.get("warnings", [])]
        if isinstance(values.get("khat"), (int, float)) and values["khat"] > _KHAT_LIMIT:
            warnings.append((f"VI ({name})", f"PSIS k-hat {values['khat']:.2f} > "
                             f"{_KHAT_LIMIT}: {values.get('khat_verdict', 'unreliable')}"))
        rows.append({"approximation": name, **{k: v for k, v in values.items()
                                               if k != "warnings"}})
    columns = ["khat", "khat_verdict", "max_abs_std_mean_diff", "min_sd_ratio",
               "max_sd_ratio"]
    params = comparison.get("parameters") or []
    param_columns = [c for c in ("parameter", "vi_mean", "psis_mean", "mcmc_mean", "vi_sd",
                                 "psis_sd", "mcmc_sd", "std_mean_diff", "sd_ratio",
                                 "wasserstein") if any(c in r for r in params)]
    sections = ["<h2>Approximations</h2>", _table(rows, columns, "approximation"),
                "<p class='sub'>k-hat below 0.5: good; 0.5-0.7: ok; above 0.7: the "
                "approximation is unreliable (Yao et al. 2018).</p>",
                "<h2>Parameters</h2>",
                _table(params, [c for c in param_columns if c != "parameter"],
                       "approximation") if params else "<p>No parameters.</p>",
                "<h2>MCMC reference</h2>", _key_values(mcmc)]
    return title, "".join(sections), warnings


def render_report(folder: str | os.PathLike[str]) -> str:
    """The report of the run folder ``folder`` as one HTML string."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; give the run folder that 'ppl-gen fit' "
                         "or 'ppl-gen compare' wrote")
    status = run_status(folder)
    if status is None:
        raise ValueError(f"{folder} is not a ppl_gen run folder (no {RUN_MARKER}); give "
                         "the folder that 'ppl-gen fit --out' or 'ppl-gen compare --out' wrote")
    if status == "partial":
        raise ValueError(f"{folder} holds an interrupted fit, not a finished run; finish it "
                         f"first with: ppl-gen fit --resume {folder}")
    summary = _read_json(folder, "summary.json")
    comparison = _read_json(folder, "comparison.json")
    if comparison is not None:
        title, body, warnings = _compare_sections(folder, comparison)
    elif summary is not None:
        title, body, warnings = _fit_sections(folder, summary)
    else:
        raise ValueError(f"{folder} has neither summary.json nor comparison.json; the run "
                         "was saved without a summary (save_run(..., summary=summarize("
                         "result))) or is damaged")
    from . import __version__

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        f'<meta name="generator" content="{_GENERATOR} {_e(__version__)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1><p class='sub'>Run folder <code>{_e(folder.resolve())}</code>"
        f" · report written {stamp} by ppl_gen {_e(__version__)}</p>"
        f"{_warnings_box(warnings)}{body}<h2>Plots</h2>{_figures(folder)}"
        "</body></html>\n")


def _is_ours(path: Path) -> bool:
    try:
        head = path.read_text(errors="replace")[:2000]
    except OSError:
        return False
    return f'name="generator" content="{_GENERATOR}' in head


def write_report(folder: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                 *, overwrite: bool = False) -> Path:
    """Write the report of run folder ``folder`` to ``out`` (default
    ``folder/report.html``) and return its path. An earlier ppl_gen report there is
    replaced; any other file is kept unless ``overwrite=True``."""
    html_text = render_report(folder)
    target = Path(out) if out is not None else Path(folder) / REPORT_NAME
    if target.is_dir():
        raise ValueError(f"{target} is a folder; give a file name for the report "
                         f"(e.g. {target / REPORT_NAME})")
    if not target.parent.is_dir():
        raise ValueError(f"cannot write {target}: the folder {target.parent} does not exist")
    if target.exists() and not overwrite and not _is_ours(target):
        raise ValueError(f"{target} exists and is not a ppl_gen report; it is left as it "
                         "is: choose another --out, or pass --overwrite to replace it")
    atomic_write(target, lambda tmp: Path(tmp).write_text(html_text, encoding="utf-8"))
    return target
