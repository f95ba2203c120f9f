"""Run outputs for people: report.md, history.csv, matplotlib figures, TensorBoard rows and progress lines. What
they show is data from `nets.results` (results.json, statistics, provenance).

`write_run` is the one report path: from the runs and the experiment's headline summary it writes every standard
file; an experiment adds only its declared sections, figures and named records.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import threading
import warnings
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use('Agg')  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nets.results import (  # noqa: E402
    SPLIT_PREFIXES,
    diverged_members,
    is_primary,
    member_statistics,
    variant_statistics,
    write_results,
    written_atomically,
)


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
    with written_atomically(path, newline='') as f:
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


@contextlib.contextmanager
def figure(path: str, rows: int = 1, columns: int = 1, **options):
    """`with figure(path, rows, columns, figsize=...) as (figure, axes)`: a figure whose axes are always a 2-D array,
    saved to `path` (laid out tight, 120 dpi) and closed when the block ends."""
    drawn, axes = plt.subplots(rows, columns, squeeze=False, **options)
    try:
        yield drawn, axes
        drawn.tight_layout()
        if is_primary():
            with written_atomically(path, 'wb') as file:
                drawn.savefig(file, dpi=120, format=os.path.splitext(path)[1][1:] or 'png')
    finally:
        plt.close(drawn)


def plot_curves(
    path: str, runs: Mapping[str, Any], metrics: Sequence[str] = ('train_loss', 'val_loss'), title: str = ''
) -> str:
    """One panel per metric: the mean over members of every variant against the epoch, with their range shaded.

    Members that stopped early count until their last epoch (the mean is over the members still training).
    """
    if not is_primary():
        return path
    with figure(path, 1, len(metrics), figsize=(5 * len(metrics), 3.6)) as (drawn, axes):
        _plot_metrics(axes[0], runs, metrics)
        if title:
            drawn.suptitle(title)
    return path


def _plot_metrics(axes, runs: Mapping[str, Any], metrics: Sequence[str]) -> None:
    for axis, metric in zip(axes, metrics):
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
    with written_atomically(path) as f:
        f.write(f'# {title}\n\n' + '\n\n'.join(sections) + '\n')
    return path


def write_run(
    workdir: str,
    title: str,
    *,
    summary: Mapping[str, Any],
    config: Mapping[str, Any],
    runs: Mapping[str, Mapping[str, Any]],
    sections: Sequence[str] = (),
    curves: Sequence[str] | None = None,
    figures: Sequence[str] = (),
    claims: Sequence[Mapping[str, Any]] = (),
    records: Mapping[str, Any] | None = None,
) -> dict:
    """The standard report of an experiment: results.json (with per-variant statistics), history.csv, curves.png
    and report.md (description, headline summary, per-variant and per-member tables, curves, then the
    experiment's own sections, then its `figures`, files in the workdir). `claims` (`nets.results.claim` entries) go
    into results.json and a table after the summary; `records` are the experiment's own named blocks of
    results.json. Returns the per-variant statistics."""
    statistics = variant_statistics(runs)
    # The run's own seeds, the confirmation seeds (not a development stage's, nor a control's offset seeds); a config
    # without them records the seeds its runs trained.
    seeds = list(config.get('seeds') or ()) or sorted(
        {run.get('seed') for by_member in runs.values() for run in by_member.values()},
        key=lambda seed: (seed is None, seed),
    )
    records = {'statistics': statistics, 'claims': list(claims), **dict(records or {})}
    write_results(workdir, summary, config, seeds, runs, records)
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
            *claims_table(claims),
            *choices_table(records.get('choices', ())),
            *divergence,
            '## Variants (mean, and min–max over members)',
            markdown_table(['variant', 'members', *names], variant_rows),
            '## Members',
            markdown_table(['variant', 'member', *member_names], member_rows),
            *figure,
            *(f'![{os.path.splitext(os.path.basename(path))[0]}]({os.path.basename(path)})' for path in figures),
        ],
    )
    return statistics


def choices_table(choices: Sequence[Mapping[str, Any]]) -> list[str]:
    """'## Choices' and one row a choice the run made (never on test): what, the chosen candidate, by which metric
    and rule, among how many, and whether it lies at an end of its grid."""
    if not choices:
        return []
    edge = lambda entry: {True: '**yes**', False: 'no'}.get(entry.get('at_edge'), '')
    rows = [
        [entry['choice'], entry['chosen'], f'{entry["rule"]} {entry["metric"]}', len(entry['values']), edge(entry)]
        for entry in choices
    ]
    header = ['choice', 'chosen', 'by', 'candidates', 'at an end of its grid']
    return ['## Choices (never on test)', markdown_table(header, rows)]


def claims_table(claims: Sequence[Mapping[str, Any]]) -> list[str]:
    """'## Claims' and one row a claim: the difference, what the claim expects of it, its mean over seeds, its
    interval, the seeds and the verdict."""
    if not claims:
        return []
    number = lambda value: 'none' if value is None else f'{value:+.4f}'
    expects = lambda entry: {'greater': '> 0', 'less': '< 0'}.get(entry['expected']) or f'within ±{entry["margin"]:g}'
    # Against a number: 'a − 2 (source)'; between variants: 'a − b'.
    difference = lambda entry: (
        f'{entry["variants"][0]} − {entry["reference"]:g} ({entry["variants"][1]})'
        if 'reference' in entry
        else ' − '.join(entry['variants'])
    )
    rows = [
        [
            entry['claim'],
            f'{entry["metric"]}: {difference(entry)} {expects(entry)}',
            number(entry['value']),
            f'{entry["confidence"]:.0%} {entry["method"]}: [{", ".join(map(number, entry["interval"]))}]',
            entry['seeds'],
            f'**{entry["verdict"]}**',
        ]
        for entry in claims
    ]
    return ['## Claims', markdown_table(['claim', 'difference', 'value', 'interval', 'seeds', 'verdict'], rows)]


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

    def close(self, timeout: float | None = None) -> None:
        """Flushes and closes the writers, waiting at most `timeout` seconds (None: as long as it takes); a writer
        that does not finish in time is left to its thread, and its last rows may be lost (results.json has them)."""

        def close_all():
            for writer in self._writers:
                with contextlib.suppress(OSError):  # a full disk: the run's own error says so, once
                    writer.close()

        closing = threading.Thread(target=close_all, daemon=True)
        closing.start()
        closing.join(timeout)
