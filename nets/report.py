"""Run outputs: results.json, history.csv, report.md, matplotlib figures, TensorBoard rows and progress lines.

`runs` everywhere is {variant: {label: {'seed', 'hparams', 'history': [rows], 'test': {metric: value}}}}, one history
row per epoch, where a label names the member's seed and swept values ('seed=0,optimizer.learning_rate=0.01').
`write_run` is the one report path: from the runs and the experiment's headline summary it writes every standard
file, so that an experiment adds only its own prose and figures.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import subprocess
import warnings
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use('Agg')  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SPLIT_PREFIXES = ('train_', 'val_')


def versions() -> dict[str, str]:
    """Library versions, the code's git commit and the backend that produced the numbers."""
    from importlib import metadata

    import jax

    packages = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy', 'tensorflow-datasets', 'ml-collections')
    installed = {}
    for package in packages:
        try:
            installed[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            installed[package] = ''
    return {
        **installed,
        **git_revision(),
        'python': platform.python_version(),
        'backend': jax.default_backend(),
        'device': jax.devices()[0].device_kind,
        'device_count': str(jax.device_count()),
    }


def git_revision(root: str | None = None) -> dict[str, str]:
    """The commit of the code that ran and whether its tree had uncommitted changes ('' where git cannot tell);
    results/, where runs write their outputs, does not count."""
    root = root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    git = lambda *args: subprocess.run(['git', '-C', root, *args], capture_output=True, text=True, timeout=10)
    try:
        commit = git('rev-parse', 'HEAD')
        status = git('status', '--porcelain', '--untracked-files=no', '--', '.', ':(exclude)results')
    except (OSError, subprocess.SubprocessError):
        return {'git_commit': '', 'git_dirty': ''}
    if commit.returncode != 0:
        return {'git_commit': '', 'git_dirty': ''}
    return {'git_commit': commit.stdout.strip(), 'git_dirty': str(bool(status.stdout.strip())).lower()}


def diverged_members(runs: Mapping[str, Any], prefix: str = '') -> dict[str, int]:
    """{'variant/label': epoch} for every run (found at any depth of `runs`) whose training loss turned
    non-finite."""
    found = {}
    for key, value in runs.items():
        if isinstance(value, Mapping):
            if 'diverged_epoch' in value:
                found[f'{prefix}{key}'] = int(value['diverged_epoch'])
            else:
                found |= diverged_members(value, f'{prefix}{key}/')
    return found


def member_history(history: Sequence[Mapping[str, Any]], index: int) -> list[dict[str, Any]]:
    """The history of member `index` of a sweep (per-member lists picked apart; shared values kept)."""
    return [{key: value[index] if isinstance(value, list) else value for key, value in row.items()} for row in history]


def steady_epoch_seconds(history: Sequence[Mapping[str, Any]]) -> float:
    """Median epoch seconds after the first (which follows the compile), or the only epoch's."""
    seconds = [row['seconds'] for row in history]
    return float(np.median(seconds[1:] if len(seconds) > 1 else seconds))


def log(message: str) -> None:
    """The one way to print progress: a line on standard output, from process 0 only, flushed at once."""
    if is_primary():
        print(message, flush=True)


def _nanmean(value) -> float:
    """The mean over members, ignoring stopped members' NaN (NaN when every member has stopped)."""
    value = np.asarray(value, dtype=np.float64)
    return float(np.mean(value[~np.isnan(value)])) if np.any(~np.isnan(value)) else float('nan')


def epoch_line(label: str, row: Mapping[str, Any]) -> str:
    """One progress line: epoch, the task's metrics (member means for a sweep) and seconds."""
    parts = [f'{label} epoch {row["epoch"]:3d}']
    for key, value in row.items():
        if key.startswith(SPLIT_PREFIXES):
            parts.append(f'{key} {_nanmean(value):.4f}')
    parts.append(f'{row["seconds"]:.2f}s')
    if row.get('compile_seconds'):
        parts.append(f'(compile {row["compile_seconds"]:.2f}s)')
    return '  '.join(parts)


def is_primary() -> bool:
    """Whether this process writes reports: the only one, or process 0 of a multi-host run."""
    import jax

    return jax.process_index() == 0


def _strict(value: Any) -> Any:
    """NaN and infinities as null (a member's epochs after it stopped early are NaN), so that results.json is
    strict JSON that every parser reads."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return _strict(value.tolist())
    return value


def write_json(path: str, content: Any) -> None:
    """Writes strict JSON (non-finite numbers as null) atomically, so that an interrupted run never leaves half a
    file."""
    if not is_primary():
        return
    temporary = f'{path}.tmp'
    with open(temporary, 'w') as f:
        json.dump(_strict(content), f, indent=2, sort_keys=False, default=_json_default, allow_nan=False)
    os.replace(temporary, path)


def _json_default(value):
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f'not JSON serialisable: {type(value).__name__}')


def write_results(
    workdir: str,
    summary: Mapping[str, float],
    config: Mapping[str, Any],
    seeds: Sequence[int],
    runs: Mapping[str, Any],
    **extra: Any,
) -> str:
    """Writes DIR/results.json with summary, config, seeds, versions (with the git commit and the device), the
    members whose loss diverged ({'variant/label': epoch}, empty when none) and runs; returns its path."""
    path = os.path.join(workdir, 'results.json')
    write_json(
        path,
        {
            'summary': dict(summary),
            'config': dict(config),
            'seeds': list(seeds),
            'versions': versions(),
            'diverged': diverged_members(runs),
            'runs': runs,
            **extra,
        },
    )
    return path


def write_history_csv(workdir: str, runs: Mapping[str, Any]) -> str:
    """Writes DIR/history.csv: one row per variant, member and epoch, with the member's seed and swept values."""
    rows = [
        {'variant': variant, 'member': label, 'seed': run.get('seed', label), **run.get('hparams', {}), **row}
        for variant, by_member in runs.items()
        for label, run in by_member.items()
        for row in run['history']
    ]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    path = os.path.join(workdir, 'history.csv')
    if not is_primary():
        return path
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def plot_band(axis, x, curves, label: str, *style, **options):
    """The mean over members (rows of `curves`) as a line, and their min–max as a band of the line's colour; NaN
    (a member that stopped early) is left out. Returns the line."""
    curves = np.asarray(curves, dtype=np.float64)
    with np.errstate(all='ignore'), warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # points where every member has stopped
        line = axis.plot(x, np.nanmean(curves, 0), *style, label=label, **options)[0]
        axis.fill_between(x, np.nanmin(curves, 0), np.nanmax(curves, 0), color=line.get_color(), alpha=0.2)
    return line


def plot_curves(
    path: str, runs: Mapping[str, Any], metrics: Sequence[str] = ('train_loss', 'val_loss'), title: str = ''
) -> str:
    """One panel per metric: the mean over members of every variant against the epoch, with their range shaded.

    Members that stopped early count until their last epoch (the mean is over the members still training).
    """
    if not is_primary():
        return path
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        for variant, by_seed in runs.items():
            curves = [
                [row.get(metric, np.nan) for row in run['history']]
                for run in by_seed.values()
                if run['history'] and metric in run['history'][0]
            ]
            if not curves:
                continue
            length = max(len(curve) for curve in curves)
            curves = np.array([curve + [np.nan] * (length - len(curve)) for curve in curves], dtype=np.float64)
            epochs = np.arange(1, length + 1)
            plot_band(axis, epochs, curves, variant)
        axis.set_xlabel('epoch')
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats get four decimals, or three significant digits below 0.001 (a penalty
    strength of 1e-05 must not read 0.0000)."""
    small = lambda value: 0 < abs(value) < 1e-3
    cell = lambda value: (
        (f'{value:.3g}' if small(value) else f'{value:.4f}') if isinstance(value, float) else str(value)
    )
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(cell(value) for value in row) + ' |' for row in rows]
    return '\n'.join(lines)


def prose(text: str, first: int = 1, last: int | None = None) -> str:
    """Paragraphs [first:last] of a docstring (or any text with blank lines between paragraphs) as markdown: each
    paragraph on one line, its line breaks and indentation gone."""
    return '\n\n'.join(' '.join(paragraph.split()) for paragraph in text.split('\n\n')[first:last])


def write_report(workdir: str, title: str, sections: Sequence[str]) -> str:
    """Writes DIR/report.md from a title and markdown sections."""
    path = os.path.join(workdir, 'report.md')
    if not is_primary():
        return path
    with open(path, 'w') as f:
        f.write(f'# {title}\n\n' + '\n\n'.join(sections) + '\n')
    return path


def _maximized(metric: str) -> bool:
    """Whether larger is better for a metric (accuracies), as Keras's 'auto' mode decides."""
    return metric.endswith('accuracy')


def member_statistics(run: Mapping[str, Any]) -> dict[str, float]:
    """One member's headline values: test_<m> for each test metric, and from its history the final train_<m>,
    best_val_<m> with best_epoch (the epoch of the best first validation metric), and epochs trained."""
    # A stopped member's epochs are NaN (null once read back from results.json).
    missing = lambda value: value is None or (isinstance(value, float) and math.isnan(value))
    history = [
        {key: float('nan') if missing(value) else value for key, value in row.items()}
        for row in run['history']
        if not all(missing(row.get(key)) for key in row if key.startswith(SPLIT_PREFIXES))
    ]
    values = {f'test_{name}': float(value) for name, value in run.get('test', {}).items()}
    if not history:
        return values
    values['epochs'] = len(history)
    last = history[-1]
    values |= {f'final_{key}': float(value) for key, value in last.items() if key.startswith('train_')}
    validation = [key for key in history[0] if key.startswith('val_')]
    for key in validation:
        series = np.array([row[key] for row in history], dtype=np.float64)
        if np.all(np.isnan(series)):  # a member that diverged in its first epoch has no finite value
            continue
        values[f'best_{key}'] = float(np.nanmax(series) if _maximized(key) else np.nanmin(series))
    if validation and f'best_{validation[0]}' in values:
        key = validation[0]
        series = np.array([row[key] for row in history], dtype=np.float64)
        values['best_epoch'] = int(
            history[int(np.nanargmax(series) if _maximized(key) else np.nanargmin(series))]['epoch']
        )
    return values


def variant_statistics(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """{variant: {statistic: {'mean', 'min', 'max'}}} over the variant's members (see member_statistics)."""
    result = {}
    for variant, by_member in runs.items():
        per_member = [member_statistics(run) for run in by_member.values()]
        names = list(dict.fromkeys(name for values in per_member for name in values))
        result[variant] = {}
        for name in names:
            series = np.array([values[name] for values in per_member if name in values], dtype=np.float64)
            result[variant][name] = {
                'mean': float(np.mean(series)),
                'min': float(np.min(series)),
                'max': float(np.max(series)),
            }
    return result


def write_run(
    workdir: str,
    title: str,
    *,
    summary: Mapping[str, Any],
    config: Mapping[str, Any],
    runs: Mapping[str, Mapping[str, Any]],
    sections: Sequence[str] = (),
    curves: Sequence[str] | None = None,
    extra_sections: Sequence[str] = (),
    **extra: Any,
) -> dict:
    """The standard report of an experiment: results.json (with per-variant statistics), history.csv, curves.png
    and report.md (description, headline summary, per-variant and per-member tables, curves, then the
    experiment's own sections). Returns the per-variant statistics."""
    statistics = variant_statistics(runs)
    seeds = sorted(
        {run.get('seed') for by_member in runs.values() for run in by_member.values()},
        key=lambda seed: (seed is None, seed),
    )
    write_results(workdir, summary, config, seeds, runs, statistics=statistics, **extra)
    write_history_csv(workdir, runs)
    figure = []
    if curves is None:
        first = next(
            (run['history'][0] for by_member in runs.values() for run in by_member.values() if run['history']), {}
        )
        curves = [key for key in first if key.startswith(SPLIT_PREFIXES) and key.endswith(('loss', 'accuracy'))]
    if curves and any(run['history'] for by_member in runs.values() for run in by_member.values()):
        plot_curves(os.path.join(workdir, 'curves.png'), runs, curves, title=title)
        figure = ['![curves](curves.png)']
    names = list(dict.fromkeys(name for by_name in statistics.values() for name in by_name))
    variant_rows = [
        [variant, len(runs[variant])] + [_mean_range(by_name[name]) if name in by_name else '' for name in names]
        for variant, by_name in statistics.items()
    ]
    diverged = diverged_members(runs)
    divergence = (
        ['## Diverged', 'Training loss turned non-finite; these members froze at the weights of the epoch before: '
         + ', '.join(f'{member} in epoch {epoch}' for member, epoch in diverged.items()) + '.']
        if diverged else []
    )  # fmt: skip
    member_names = [name for name in names if name != 'epochs']
    member_rows = [
        [variant, label] + [member_statistics(run).get(name, '') for name in member_names]
        for variant, by_member in runs.items()
        for label, run in by_member.items()
    ]
    write_report(
        workdir,
        title,
        [
            *sections,
            '## Summary',
            markdown_table(['metric', 'value'], [[key, value] for key, value in summary.items()]),
            *divergence,
            '## Variants (mean, and min–max over members)',
            markdown_table(['variant', 'members', *names], variant_rows),
            '## Members',
            markdown_table(['variant', 'member', *member_names], member_rows),
            *figure,
            *extra_sections,
        ],
    )
    return statistics


def _mean_range(values: Mapping[str, float]) -> str:
    """'mean (min–max)', or the one value; counts (epochs) without decimals."""
    counts = all(float(values[key]).is_integer() for key in ('min', 'max'))
    cell = (lambda value: f'{value:g}') if counts else (lambda value: f'{value:.4f}')
    mean = f'{values["mean"]:.1f}' if counts and not float(values['mean']).is_integer() else cell(values['mean'])
    return mean if values['min'] == values['max'] else f'{mean} ({cell(values["min"])}–{cell(values["max"])})'


class TensorBoard:
    """Writes each epoch's rows as TensorBoard scalars: one run folder per member, DIR/VARIANT/LABEL, so that
    TensorBoard overlays the members and variants of a run. Needs only tensorboardX (no TensorFlow)."""

    def __init__(self, directory: str, variant: str, labels: Sequence[str]):
        self._writers = []
        if not is_primary():
            return
        from tensorboardX import SummaryWriter

        self._writers = [SummaryWriter(os.path.join(directory, variant, label)) for label in labels]

    def write(self, row: Mapping[str, Any]) -> None:
        """Adds the row's metrics and seconds at step = its epoch (a stopped member's NaN is left out)."""
        for index, writer in enumerate(self._writers):
            for key, value in row.items():
                if key == 'epoch' or isinstance(value, bool):
                    continue
                value = value[index] if isinstance(value, list) else value
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    writer.add_scalar(key, value, row['epoch'])
            writer.flush()

    def close(self) -> None:
        for writer in self._writers:
            writer.close()
