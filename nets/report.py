"""Run outputs: results.json, history.csv, report.md, matplotlib figures, and the per-epoch progress line.

`runs` everywhere is {variant: {seed: {'history': [rows], 'test': {metric: value}}}}, one history row per epoch.
"""
from __future__ import annotations

import csv
import json
import os
import platform
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use('Agg')  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

METRICS = ('train_loss', 'train_accuracy', 'val_loss', 'val_accuracy')


def versions() -> dict[str, str]:
    """Library versions and the backend that produced the numbers."""
    import flax
    import jax
    import optax
    return {'jax': jax.__version__, 'jaxlib': jax.lib.__version__ if hasattr(jax.lib, '__version__') else '',
            'flax': flax.__version__, 'optax': optax.__version__, 'python': platform.python_version(),
            'backend': jax.default_backend(), 'device': jax.devices()[0].device_kind,
            'device_count': str(jax.device_count())}


def member_history(history: Sequence[Mapping[str, Any]], index: int) -> list[dict[str, Any]]:
    """The history of member `index` of a sweep (per-member lists picked apart; shared values kept)."""
    return [{key: value[index] if isinstance(value, list) else value for key, value in row.items()}
            for row in history]


def steady_epoch_seconds(history: Sequence[Mapping[str, Any]]) -> float:
    """Median epoch seconds after the first (which follows the compile), or the only epoch's."""
    seconds = [row['seconds'] for row in history]
    return float(np.median(seconds[1:] if len(seconds) > 1 else seconds))


def epoch_line(label: str, row: Mapping[str, Any]) -> str:
    """One progress line: epoch, losses, accuracies (member means for a sweep) and seconds."""
    mean = lambda value: float(np.nanmean(value))  # stopped members report NaN
    parts = [f'{label} epoch {row["epoch"]:3d}']
    for key in METRICS:
        if key in row:
            parts.append(f'{key} {mean(row[key]):.4f}')
    parts.append(f'{row["seconds"]:.2f}s')
    if row.get('compile_seconds'):
        parts.append(f'(compile {row["compile_seconds"]:.2f}s)')
    return '  '.join(parts)


def is_primary() -> bool:
    """Whether this process writes reports: the only one, or process 0 of a multi-host run."""
    import jax
    return jax.process_index() == 0


def write_json(path: str, content: Any) -> None:
    """Writes JSON atomically, so that an interrupted run never leaves half a file."""
    if not is_primary():
        return
    temporary = f'{path}.tmp'
    with open(temporary, 'w') as f:
        json.dump(content, f, indent=2, sort_keys=False, default=_json_default)
    os.replace(temporary, path)


def _json_default(value):
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f'not JSON serialisable: {type(value).__name__}')


def write_results(workdir: str, summary: Mapping[str, float], config: Mapping[str, Any], seeds: Sequence[int],
                  runs: Mapping[str, Any], **extra: Any) -> str:
    """Writes DIR/results.json with summary, config, seeds, versions and runs; returns its path."""
    path = os.path.join(workdir, 'results.json')
    write_json(path, {'summary': dict(summary), 'config': dict(config), 'seeds': list(seeds),
                      'versions': versions(), 'runs': runs, **extra})
    return path


def write_history_csv(workdir: str, runs: Mapping[str, Any]) -> str:
    """Writes DIR/history.csv: one row per variant, seed and epoch."""
    rows = [{'variant': variant, 'seed': seed, **row}
            for variant, by_seed in runs.items() for seed, run in by_seed.items() for row in run['history']]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    path = os.path.join(workdir, 'history.csv')
    if not is_primary():
        return path
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def plot_curves(path: str, runs: Mapping[str, Any], metrics: Sequence[str] = ('train_loss', 'val_loss'),
                title: str = '') -> str:
    """One panel per metric: the mean over seeds of every variant against the epoch, with the seed range shaded."""
    if not is_primary():
        return path
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        for variant, by_seed in runs.items():
            curves = np.array([[row[metric] for row in run['history']] for run in by_seed.values()
                               if run['history'] and metric in run['history'][0]])
            if curves.size == 0:
                continue
            epochs = np.arange(1, curves.shape[1] + 1)
            axis.plot(epochs, curves.mean(0), label=variant)
            axis.fill_between(epochs, curves.min(0), curves.max(0), alpha=0.2)
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
    """A GitHub markdown table; floats get four decimals."""
    cell = lambda value: f'{value:.4f}' if isinstance(value, float) else str(value)
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(cell(value) for value in row) + ' |' for row in rows]
    return '\n'.join(lines)


def write_report(workdir: str, title: str, sections: Sequence[str]) -> str:
    """Writes DIR/report.md from a title and markdown sections."""
    path = os.path.join(workdir, 'report.md')
    if not is_primary():
        return path
    with open(path, 'w') as f:
        f.write(f'# {title}\n\n' + '\n\n'.join(sections) + '\n')
    return path
