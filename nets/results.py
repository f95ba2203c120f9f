"""What a run measured, as data: results.json in strict JSON with its provenance (library versions, the git commit,
the device), the members that diverged, and the per-member and per-variant statistics that reports and choices
read. `nets.report` turns these into report.md, figures and TensorBoard rows.

`runs` everywhere is {variant: {label: {'seed', 'hparams', 'history': [rows], 'test': {metric: value}}}}, one history
row per epoch, where a label names the member's seed and swept values ('seed=0,optimizer.learning_rate=0.01').

A verdict is a `claim`: the 95% interval over seeds of a difference (paired, when both sides were trained on the same
seeds, or against a fixed number), and `supported`, `contradicted` or `inconclusive` by where that interval lies:
beside 0 for a claim that one side is larger, inside or outside ±margin for a claim that the two are equivalent.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import subprocess
import tempfile
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from nets.registry import lookup

SPLIT_PREFIXES = ('train_', 'val_')


def is_primary() -> bool:
    """Whether this process writes reports: the only one, or process 0 of a multi-host run."""
    import jax

    return jax.process_index() == 0


def machine() -> dict[str, str]:
    """The CPU that timed the run (its model name, family and model numbers, cores, whether it has AVX-512: timings
    compare only within one CPU) and the load average over 1, 5 and 15 minutes as the results are written (other
    jobs on the machine slow a run)."""
    fields = {}
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get('model name') or platform.processor() or platform.machine()
    numbers = f' (family {fields["cpu family"]}, model {fields["model"]})' if 'cpu family' in fields else ''
    avx512 = 'yes' if 'avx512f' in fields.get('flags', '').split() else 'no' if 'flags' in fields else 'unknown'
    load = ' '.join(f'{value:.2f}' for value in os.getloadavg()) if hasattr(os, 'getloadavg') else ''
    return {'cpu': f'{name}{numbers}, {os.cpu_count()} cores, AVX-512: {avx512}', 'load_average': load}


_PINNED: dict[str, str] = {}  # the code's git revision as a run started (pin_revision)


def pin_revision() -> None:
    """Reads the code's git revision now, as a run starts: results.json then records the commit whose code the
    process loaded, not the one checked out when it ends (commits may land in the tree while a run trains)."""
    _PINNED.clear()
    _PINNED.update(git_revision())


def versions() -> dict[str, str]:
    """Library versions, the code's git commit (as pinned at the run's start, else now), the backend that produced
    the numbers and the `machine`."""
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
        **(_PINNED or git_revision()),
        'python': platform.python_version(),
        'backend': jax.default_backend(),
        'device': jax.devices()[0].device_kind,
        'device_count': str(jax.device_count()),
        **machine(),
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


def member_entries(values: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Member `index`'s entries of per-member results (each value a list over the members of a stacked sweep): its
    test metrics, its diagnostics."""
    return {key: value[index] for key, value in values.items()}


def steady_epoch_seconds(history: Sequence[Mapping[str, Any]]) -> float:
    """Median epoch seconds after the first (which follows the compile), or the only epoch's."""
    seconds = [row['seconds'] for row in history]
    return float(np.median(seconds[1:] if len(seconds) > 1 else seconds))


def mean_test(runs: Iterable[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]], metric: str = 'accuracy') -> float:
    """The mean over members of their final test `metric` ('error': one minus the accuracy); `runs` are run dicts,
    or {label: run}."""
    runs = runs.values() if isinstance(runs, Mapping) else runs
    if metric == 'error':
        return float(np.mean([1 - run['test']['accuracy'] for run in runs]))
    return float(np.mean([run['test'][metric] for run in runs]))


def mean_of(runs: Mapping[str, Mapping[str, Any]], key: Callable[[Mapping[str, Any]], float]) -> float:
    """The mean over one variant's members {label: run} of key(run) (a `by_seed` key: mean_of_last, after_epoch)."""
    return float(np.mean([key(run) for run in runs.values()]))


def mean_at(runs: Iterable[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]], metric: str, epoch: int = -1) -> float:
    """The mean over members of history `metric` at row `epoch` (0 is after the first epoch; -1 the last); `runs`
    are run dicts, or {label: run}."""
    runs = runs.values() if isinstance(runs, Mapping) else runs
    return float(np.mean([run['history'][epoch][metric] for run in runs]))


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


@contextlib.contextmanager
def written_atomically(path: str, mode: str = 'w', **options):
    """`with written_atomically(path) as file:` writes a new file, created exclusively beside `path` under a random
    name (tempfile.mkstemp: never an existing file, never through a planted link), then renamed onto `path`, which
    replaces a link there rather than following it. An interrupted write leaves `path` as it was."""
    descriptor, temporary = tempfile.mkstemp(dir=os.path.dirname(path) or '.', prefix=f'.{os.path.basename(path)}.')
    try:
        with os.fdopen(descriptor, mode, **options) as file:
            yield file
        os.chmod(temporary, 0o644)  # mkstemp's file is private; a run's outputs are for everyone who reads the workdir
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_json(path: str, content: Any) -> None:
    """Writes strict JSON (non-finite numbers as null) atomically (see written_atomically)."""
    if not is_primary():
        return
    with written_atomically(path) as f:
        json.dump(_strict(content), f, indent=2, sort_keys=False, default=_json_default, allow_nan=False)


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
    records: Mapping[str, Any] | None = None,
) -> str:
    """Writes DIR/results.json with summary, config, seeds, versions (with the git commit and the device), the
    members whose loss diverged ({'variant/label': epoch}, empty when none), runs, then `records`, where `claims`
    and `choices` are always present (empty lists when the run makes none); returns its path."""
    path = os.path.join(workdir, 'results.json')
    content = {
        'summary': dict(summary),
        'config': dict(config),
        'seeds': list(seeds),
        'versions': versions(),
        'diverged': diverged_members(runs),
        'runs': runs,
        **dict(records or {}),
    }
    write_json(path, {**content, 'claims': content.get('claims', []), 'choices': content.get('choices', [])})
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


INTERVAL_METHODS = ('t', 'bootstrap')


def interval(
    values: Sequence[float], *, confidence: float = 0.95, method: str = 't', resamples: int = 10_000, seed: int = 0
) -> dict[str, Any]:
    """The mean of `values` (one per seed) with its two-sided `confidence` interval: Student t ('t': mean ± t·s/√n,
    s with n − 1 degrees of freedom), or the percentile bootstrap of the mean ('bootstrap', `resamples` draws from a
    generator seeded by `seed`). With fewer than two values there is no interval: low and high are None."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    n, mean = len(values), float(np.mean(values)) if len(values) else float('nan')
    lookup(dict.fromkeys(INTERVAL_METHODS), method, 'interval method')
    low = high = None
    if n >= 2 and method == 't':
        half = stats.t.ppf(0.5 + confidence / 2, n - 1) * np.std(values, ddof=1) / math.sqrt(n)
        low, high = mean - float(half), mean + float(half)
    elif n >= 2:
        draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
        means = values[draws].mean(axis=1)
        low, high = (float(q) for q in np.quantile(means, [0.5 - confidence / 2, 0.5 + confidence / 2]))
    return {'mean': mean, 'low': low, 'high': high, 'n': n, 'confidence': confidence, 'method': method}


def paired_difference(a: Mapping[Any, float], b: Mapping[Any, float] | float, **kwargs: Any) -> dict[str, Any]:
    """The interval (see `interval`) of a − b over the seeds: `a` and `b` are {seed: value}, and every seed of one is a
    seed of the other (a difference between members of different seeds would not be paired); `b` may be one number,
    a published value, say."""
    if not isinstance(b, Mapping):
        return interval([value - float(b) for value in a.values()], **kwargs)
    if set(a) != set(b):
        raise ValueError(f'a paired difference needs the same seeds on both sides, got {sorted(a)} and {sorted(b)}')
    return interval([a[seed] - b[seed] for seed in a], **kwargs)


EXPECTATIONS = ('greater', 'less', 'within')


def verdict(difference: Mapping[str, Any], expected: str = 'greater', margin: float | None = None) -> str:
    """`supported` when the interval of a difference lies wholly on the `expected` side of 0 ('greater' or 'less'),
    `contradicted` when it lies wholly on the other, and `inconclusive` when it contains 0. 'within' is a claim of
    equivalence, that the difference is small: `supported` when the interval lies inside [-margin, margin] (a margin
    declared before the run), `contradicted` when it lies wholly outside, `inconclusive` when it straddles an end
    (with the 95% interval, stricter than the two one-sided tests' usual 90%).
    With no interval, or an end that is not finite (a diverged member's NaN decides nothing): `inconclusive`."""
    lookup(dict.fromkeys(EXPECTATIONS), expected, 'expected')
    if (expected == 'within') != (margin is not None) or (margin is not None and not margin > 0):
        raise ValueError(f"verdict: a positive margin goes with expected='within' only, got {expected!r}, {margin}")
    low, high = difference['low'], difference['high']
    if low is None or high is None or not math.isfinite(low) or not math.isfinite(high):
        return 'inconclusive'
    if expected == 'within':
        if -margin <= low and high <= margin:
            return 'supported'
        return 'contradicted' if high < -margin or low > margin else 'inconclusive'
    if low <= 0 <= high:
        return 'inconclusive'
    return 'supported' if (low > 0) == (expected == 'greater') else 'contradicted'


def by_seed(members: Mapping[str, Mapping[str, Any]], key: Any = None) -> dict[int, float]:
    """{seed: key(run)} over one variant's members {label: run} (default: the final test accuracy), the values a
    `claim` pairs; refuses two members of one seed (a sweep's members: keep the chosen value's first)."""
    key = key or (lambda run: run['test']['accuracy'])
    values = {}
    for label, run in members.items():
        if run['seed'] in values:
            raise ValueError(f'by_seed: two members of seed {run["seed"]} (the second is {label!r})')
        values[run['seed']] = float(key(run))
    return values


def mean_of_last(metric: str, epochs: int) -> Any:
    """A `by_seed` key: the mean of history `metric` over a member's last `epochs` epochs, a final number that one
    noisy epoch does not decide."""
    return lambda run: float(np.mean([row[metric] for row in run['history'][-epochs:]]))


def after_epoch(metric: str, epoch: int) -> Any:
    """A `by_seed` key: history `metric` after epoch `epoch` (1 is the first)."""
    return lambda run: float(run['history'][epoch - 1][metric])


def trailing_mean(values: Sequence[float], window: int) -> np.ndarray:
    """Each value averaged with the `window` − 1 before it (fewer at the start): a per-epoch curve smoothed without
    looking ahead, so that one noisy epoch does not decide when a target is reached."""
    values = np.asarray(values, dtype=np.float64)
    sums = np.concatenate([[0.0], np.cumsum(values)])
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def epochs_to_reach(curve: Sequence[float], target: float) -> float:
    """When a per-epoch `curve` (curve[i] after epoch i + 1; higher is better) first reaches `target`, in epochs:
    linearly interpolated between the epoch before and the one that reaches it, 1.0 when the first does, NaN when
    none does."""
    curve = np.asarray(curve, dtype=np.float64)
    reached = np.flatnonzero(curve >= target)
    if not len(reached):
        return float('nan')
    i = int(reached[0])
    return 1.0 if i == 0 else i + float((target - curve[i - 1]) / (curve[i] - curve[i - 1]))


def at_epochs(cumulative: Sequence[float], epochs: float) -> float:
    """A per-epoch cumulative quantity (seconds, steps, FLOPs after epoch i + 1) at a fractional epoch count,
    linearly interpolated; NaN stays NaN."""
    if not math.isfinite(epochs):
        return float('nan')
    return float(np.interp(epochs, np.arange(1, len(cumulative) + 1), cumulative))


def compare(text: str, runs: Mapping[str, Mapping], a: str, b: str, metric: str = 'test_accuracy', key=None, **kwargs):
    """The `claim` that variant `a` of `runs` ({variant: {label: run}}) has a larger (or, by `expected`, smaller or
    equivalent) `metric` than variant `b`: key(run) of each member (default: the final test accuracy), paired by
    seed."""
    return claim(text, metric, [a, b], by_seed(runs[a], key), by_seed(runs[b], key), **kwargs)


def claim(
    text: str,
    metric: str,
    variants: Sequence[str],
    a: Mapping[Any, float],
    b: Mapping[Any, float] | float,
    *,
    expected: str = 'greater',
    margin: float | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """One entry of results.json's `claims`: `text` says that `metric` of `variants[0]` (values `a`, {seed: value})
    is `expected` ('greater' or 'less') than that of `variants[1]` (`b`), or than the number `b` (then recorded as
    `reference`; `variants[1]` names its source), or, with expected 'within', that the two differ by at most
    `margin` either way. It holds the mean difference (`value`), its interval and the verdict."""
    difference = paired_difference(a, b, **kwargs)
    return {
        'claim': text,
        'metric': metric,
        'variants': list(variants),
        'expected': expected,
        'value': difference['mean'],
        'interval': [difference['low'], difference['high']],
        'method': difference['method'],
        'confidence': difference['confidence'],
        'seeds': len(a),
        'verdict': verdict(difference, expected, margin),
        **({} if margin is None else {'margin': margin}),
        **({} if isinstance(b, Mapping) else {'reference': float(b)}),
    }
