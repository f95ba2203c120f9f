"""Kill and resume everywhere: launch.py is SIGKILLed at a checkpoint, or while orbax writes one, then relaunched
with --resume until it completes, and must end bit for bit where an uninterrupted run ends.

Covered: the baseline, and the experiments whose state changes shape or masks between epochs (growth: hidden units
added into masked spare capacity; pruning: masks, pruned weights, a pruning state, neuron removal that shrinks the
layers). Each runs :quick with overrides that give several checkpoints (every epoch of every variant). Compared with
the uninterrupted reference: results.json (everything but wall-clock timings and what is chosen by them) and every
array and metadata item of every checkpoint kept on disk, by their bytes.

A kill point is 'VARIANT/EPOCH': kill once that checkpoint is on disk (the process is then somewhere in the next
epoch or its save), or 'VARIANT/EPOCH:writing': kill while orbax writes it (its temporary directory
EPOCH.orbax-checkpoint-tmp* exists; if the write finishes between two polls, the kill lands just after it, and the
line printed says so). The suite kills one workdir per experiment at the kill points of EXPERIMENTS in turn. A longer
sweep by hand (-s prints a line per killed run: where each kill landed, where each variant resumed, what differs):

    KILL_POINTS=all pytest -s tests/test_kill.py   # every epoch boundary and every write, one killed run each
    KILL_POINTS=net2net/2:writing,neurons/1 pytest -s tests/test_kill.py   # these, where the variant exists
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.reliability]  # every test here kills and resumes a launch.py subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TMP_SUFFIX = '.orbax-checkpoint-tmp'  # orbax writes a step into EPOCH.orbax-checkpoint-tmp*, then renames it
# Wall-clock timings and what is derived from them (growth's time ratios and the strategy they pick, pruning's
# inference speed-up), and the machine's load average as results.json is written, differ between any two runs;
# everything else must not.
TIMING = re.compile(r'seconds|time_ratio|speedup|best_strategy|load_average')

# Per experiment: the :quick overrides that give several kill points, and the suite's kill points, killed in turn
# in one workdir. Each resume restores a state whose shapes or masks differ from the freshly built one.
EXPERIMENTS = {
    # Six checkpoints: three epochs of the validation run, three of the refit.
    'baseline': (['--config.epochs=3'], ['baseline/2', 'refit/1:writing']),
    # Every epoch checkpointed (the config's checkpoint_every is 10); the growing nets grow 4 -> 8 -> 12 -> 16 units
    # in capacity buckets 4 -> 8 -> 16, so a resume restores a grown, masked state.
    'growth': (['--config.checkpoint_every=1'], ['random_subsample/2', 'net2net/2:writing']),
    # Already every epoch. Two of the five criteria: the other three prune the same kind of state, at ~5 s a run;
    # killed in a masked ladder rung (resumed from rung 1's pruned state) and in the neuron-removal run (resumed from
    # the first cut's shrunk layers).
    'pruning': (["--config.criteria=('exact','obd')"], ['prune_exact/2:writing', 'neurons/2:writing']),
}


def _strip(tree):
    """`tree` without the timing entries (see TIMING) and the claims on a timing, at any depth, and without the
    checkpoint metadata's own checksum, which hashes those timings (the arrays' checksum stays compared)."""
    if isinstance(tree, dict):
        tree = {k: ({**v, 'metadata': None} if k == 'checksum' and isinstance(v, dict) else v) for k, v in tree.items()}
        return {k: _strip(v) for k, v in tree.items() if not (isinstance(k, str) and TIMING.search(k))}
    if isinstance(tree, (list, tuple)):  # and without claims on a timing (growth's time ratios)
        return [_strip(v) for v in tree if not (isinstance(v, dict) and TIMING.search(str(v.get('metric', ''))))]
    return tree


def _canonical(tree) -> str:
    """A JSON text that is equal for equal trees, floats by their exact repr and NaN included."""
    return json.dumps(_strip(tree), sort_keys=True, allow_nan=True)


def _steps(directory):
    """The finished checkpoint steps and the leftover temporary directories in a variant's checkpoint folder."""
    names = os.listdir(directory) if os.path.isdir(directory) else []
    return sorted(int(name) for name in names if name.isdigit()), sorted(name for name in names if TMP_SUFFIX in name)


class KillPoint:
    """'VARIANT/EPOCH' or 'VARIANT/EPOCH:writing' (see the module's docstring); `order`: the variants as they
    train."""

    def __init__(self, text: str, order: list[str]):
        variant, _, rest = text.partition('/')
        epoch, _, when = rest.partition(':')
        if variant not in order or when not in ('', 'writing'):
            raise ValueError(f'kill point {text!r}: want VARIANT/EPOCH[:writing] with a variant of {order}')
        self.text, self.variant, self.epoch, self.writing = text, variant, int(epoch), when == 'writing'
        self.later = order[order.index(variant) + 1 :]

    def passed(self, checkpoints) -> bool:
        """The run is already past this point (its checkpoint, a later one or a later variant's is on disk)."""
        steps, _ = _steps(os.path.join(checkpoints, self.variant))
        later = any(os.path.isdir(os.path.join(checkpoints, v)) for v in self.later)
        return later or any(step >= self.epoch for step in steps)

    def writing_now(self, checkpoints, stale) -> bool:
        """Orbax is writing this point's checkpoint: its temporary directory exists, and is not one that a killed
        run left (`stale`, see `_temporaries`)."""
        directory = os.path.join(checkpoints, self.variant)
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return False
        prefix = f'{self.epoch}{TMP_SUFFIX}'
        for entry in entries:
            if entry.name.startswith(prefix):
                try:
                    if (entry.path, entry.stat().st_ctime_ns) not in stale:
                        return True
                except FileNotFoundError:
                    pass
        return False


@pytest.fixture(scope='module')
def compilation_cache(tmp_path_factory):
    return tmp_path_factory.mktemp('compilation_cache')


@pytest.fixture(scope='module')
def command(data_dir, compilation_cache):
    def build(experiment, workdir, *flags):
        return [
            sys.executable,
            'launch.py',
            f'--config=experiments/{experiment}.py:quick',
            f'--workdir={workdir}',
            f'--data_dir={data_dir}',
            f'--compilation_cache_dir={compilation_cache}',
            *EXPERIMENTS[experiment][0],
            *flags,
        ]

    return build


def _temporaries(checkpoints) -> set[tuple[str, int]]:
    """The temporary directories of unfinished checkpoint writes, as (path, ctime): a new write of the same step
    replaces its directory, so it has another ctime."""
    found = set()
    for variant in os.listdir(checkpoints) if checkpoints and os.path.isdir(checkpoints) else []:
        for name in _steps(os.path.join(checkpoints, variant))[1]:
            path = os.path.join(checkpoints, variant, name)
            try:
                found.add((path, os.stat(path).st_ctime_ns))
            except FileNotFoundError:
                pass
    return found


def _run(command, log_path, point: KillPoint | None, checkpoints, timeout=600.0):
    """Runs `command` (output appended to `log_path`); kills it at `point`. Returns 'done', or what the kill hit:
    'write' (it left a new temporary directory: the kill interrupted a checkpoint write) or 'between'."""
    stale = _temporaries(checkpoints)
    with open(log_path, 'a') as log:
        log.write(f'\n$ {" ".join(command)}  # kill at {point.text if point else "-"}\n')
        log.flush()
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        try:
            while process.poll() is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f'{" ".join(command)} ran past {timeout}s')
                if point is not None and (
                    (point.writing and point.writing_now(checkpoints, stale)) or point.passed(checkpoints)
                ):
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait()
                    return 'write' if _temporaries(checkpoints) - stale else 'between'
                time.sleep(0.002)  # a checkpoint write lasts 60-120 ms here
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    if process.returncode != 0:
        with open(log_path) as f:
            raise AssertionError(f'{" ".join(command)} failed ({process.returncode}):\n{f.read()[-3000:]}')
    return 'done'


def _arrays_equal(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _restore(directory, step):
    """Every item of a checkpoint step, restored by orbax from what is on disk alone (no like-state)."""
    import orbax.checkpoint as ocp
    from absl import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)  # orbax warns that it restores items without their args
    manager = ocp.CheckpointManager(directory)
    try:
        return dict(manager.restore(step))
    finally:
        manager.close()
        logging.set_verbosity(verbosity)


def _checkpoint_differences(reference, resumed) -> list[str]:
    """What differs between two workdirs' checkpoints: the steps kept, any leftover temporary directory, and every
    array (by its bytes) and JSON item (timings aside) of every step the reference keeps.

    A kill between a save and the clean-up after it leaves one older step behind; the resume removes it (after a
    variant's last epoch no later save would), so the resumed workdir keeps exactly the reference's steps."""
    import jax

    differences = []
    variants = sorted(os.listdir(os.path.join(reference, 'checkpoints')))
    if sorted(os.listdir(os.path.join(resumed, 'checkpoints'))) != variants:
        differences.append(f'variants {sorted(os.listdir(os.path.join(resumed, "checkpoints")))} != {variants}')
    for variant in variants:
        ours, theirs = (os.path.join(workdir, 'checkpoints', variant) for workdir in (resumed, reference))
        (steps, tmps), (expected, _) = _steps(ours), _steps(theirs)
        if steps != expected or tmps:
            differences.append(f'{variant}: steps {steps} and leftovers {tmps}, the reference keeps {expected}')
            continue
        for step in expected:
            a, b = _restore(ours, step), _restore(theirs, step)
            for item in sorted(set(a) | set(b)):
                leaves_a, tree_a = jax.tree.flatten(_strip(a.get(item)))
                leaves_b, tree_b = jax.tree.flatten(_strip(b.get(item)))
                if tree_a != tree_b:
                    differences.append(f'{variant}/{step}/{item}: another structure')
                    continue
                paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(_strip(a[item]))[0]]
                for path, x, y in zip(paths, leaves_a, leaves_b):
                    same = _arrays_equal(x, y) if hasattr(x, 'dtype') else repr(x) == repr(y)
                    if not same:
                        differences.append(f'{variant}/{step}/{item}{path} differs')
    return differences


def _results_differences(reference, resumed) -> list[str]:
    """The top-level entries of results.json (per variant and member for runs) that differ, timings aside."""
    a, b = (json.loads((w / 'results.json').read_text()) for w in (resumed, reference))
    differences = []
    for key in sorted(set(a) | set(b)):
        if key == 'runs':
            continue
        if _canonical(a.get(key)) != _canonical(b.get(key)):
            differences.append(f'results.json {key}')
    for variant in sorted(set(a['runs']) | set(b['runs'])):
        for member in sorted(set(a['runs'].get(variant, {})) | set(b['runs'].get(variant, {}))):
            x, y = a['runs'].get(variant, {}).get(member), b['runs'].get(variant, {}).get(member)
            for part in sorted(set(x or {}) | set(y or {})):
                if _canonical((x or {}).get(part)) != _canonical((y or {}).get(part)):
                    differences.append(f'results.json runs/{variant}/{member}/{part}')
    return differences


def _plans(experiment, reference) -> tuple[list[str], list[list[str]]]:
    """The variants in the order they train and the kill plans: lists of kill points, killed in turn in one
    workdir each."""
    runs = json.loads((reference / 'results.json').read_text())['runs']
    order = list(runs)
    wanted = os.environ.get('KILL_POINTS', '')
    if not wanted:
        return order, [EXPERIMENTS[experiment][1]]
    if wanted == 'all':
        epochs = {v: [row['epoch'] for row in next(iter(runs[v].values()))['history']] for v in order}
        return order, [[f'{v}/{e}{when}'] for v in order for e in epochs[v] for when in (':writing', '')]
    points = [p for p in wanted.split(',') if p.partition('/')[0] in order]
    return order, [[p] for p in points]


# Each test here may run on its own xdist worker (tests/conftest.py's scheduler).
@pytest.mark.parametrize('experiment', list(EXPERIMENTS))
def test_sigkill_and_resume_ends_bit_identical(experiment, command, tmp_path):
    reference = tmp_path / 'reference'
    _run(command(experiment, reference), tmp_path / 'reference.log', None, None)
    order, plans = _plans(experiment, reference)
    if not plans:
        pytest.skip(f'no kill point of KILL_POINTS={os.environ.get("KILL_POINTS")} in {experiment}')
    failures = []
    for index, plan in enumerate(plans):
        workdir, log = tmp_path / f'killed_{index}', tmp_path / f'killed_{index}.log'
        checkpoints = str(workdir / 'checkpoints')
        points, hits, launches = [KillPoint(text, order) for text in plan], [], 0
        flags = []
        while True:
            point = next((p for p in points if not (os.path.isdir(checkpoints) and p.passed(checkpoints))), None)
            points = points[points.index(point) + 1 :] if point is not None else []
            launches += 1
            outcome = _run(command(experiment, workdir, *flags), log, point, checkpoints)
            if outcome == 'done':
                if point is not None:
                    hits.append(f'{point.text}->never reached')
                break
            missed = 'missed the write, killed after it' if point.writing else 'killed after the write'
            hits.append(f'{point.text}->{"killed mid-write" if outcome == "write" else missed}')
            flags = ['--resume']
            assert launches < 20, f'{experiment} {plan}: no end after {launches} launches'
        resumed = re.findall(r'^(\S+): resumed after epoch (\d+)$', log.read_text(), re.M)
        differences = _checkpoint_differences(reference, workdir)
        differences = _results_differences(reference, workdir) + differences
        line = (
            f'{experiment} {",".join(plan)}: {"; ".join(hits) or "never killed"}; resumed '
            f'{", ".join(f"{v}@{e}" for v, e in resumed) or "nothing"}: '
            + ('identical' if not differences else f'DIFFERENT: {"; ".join(differences[:12])}')
        )
        print(line)
        if differences or not hits or any('never reached' in hit for hit in hits):
            failures.append(line)
    print(f'{experiment}: {len(plans)} killed runs compared bit for bit, {len(plans) - len(failures)} identical')
    assert not failures, '\n'.join(failures)


def test_sigint_and_sigterm_stop_at_an_epoch_end_release_the_lock_and_resume_bit_identical(command, tmp_path):
    """Signals at random times, SIGINT and SIGTERM in turn, some sent twice: each run ends within seconds with one
    line and 130 or 143, holds no lock after, and the relaunches end where an uninterrupted run ends."""
    import fcntl

    longer = '--config.epochs=20'  # 40 epochs, each with its checkpoint: a few seconds of training after the start
    reference = tmp_path / 'reference'
    _run(command('baseline', reference, longer), tmp_path / 'reference.log', None, None)
    started = time.monotonic()  # timed again with the programs compiled and cached, as the relaunches find them
    _run(command('baseline', tmp_path / 'timed', longer), tmp_path / 'timed.log', None, None)
    seconds = time.monotonic() - started
    workdir, rng, outcomes = tmp_path / 'interrupted', np.random.default_rng(0), []
    for attempt in range(20):
        flags = [longer, '--resume'] if (workdir / 'checkpoints').is_dir() else [longer]
        process = subprocess.Popen(command('baseline', workdir, *flags), cwd=REPO, stderr=subprocess.PIPE, text=True)
        number = (signal.SIGINT, signal.SIGTERM)[attempt % 2]
        try:
            # The start (imports, data) takes about half of `seconds`: a signal early in training leaves a resumed
            # run enough to train for the next one (late ones let a quiet, fast machine finish after one signal).
            process.wait(timeout=rng.uniform(0.3, 0.6) * seconds)
        except subprocess.TimeoutExpired:
            process.send_signal(number)
            if attempt % 3 == 2:  # a second signal stops at once, wherever it lands
                time.sleep(rng.uniform(0.0, 0.3))
                process.send_signal(number)
        try:
            _, stderr = process.communicate(timeout=60)  # an epoch here lasts well under a second
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError(f'attempt {attempt}: no exit within 60 s of {number.name}') from None
        if process.returncode == 0:
            outcomes.append('done')
            break
        lines = stderr.strip().splitlines()
        assert process.returncode == 128 + number, stderr[-3000:]
        assert 'Traceback' not in stderr and f'launch.py: stopped by {number.name}' in lines[-1], stderr[-3000:]
        assert sum('launch.py:' in line for line in lines) == 1, stderr[-3000:]
        if workdir.is_dir():  # the lock is free: a next run may start at once
            with open(workdir / '.lock', 'a+') as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        outcomes.append(number.name)
    print(f'stopped by {", ".join(outcomes[:-1])}, then done')
    # At least one signal must have stopped a run; how many land before a resumed run ends depends on the machine's
    # speed (a quiet machine once finished after one), so more is not demanded.
    assert outcomes[-1] == 'done' and len(outcomes) >= 2, outcomes
    differences = _results_differences(reference, workdir) + _checkpoint_differences(reference, workdir)
    assert not differences, differences
