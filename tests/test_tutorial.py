"""docs/tutorial.md cannot rot: every code block runs, in the order a reader meets it.

Python blocks run in one namespace, as in one interactive session; bash blocks run in one shell (so `export` carries
over) from the repository root, with `python` the interpreter running the tests. Two rewrites keep the run self-
contained: the tutorial's `runs/tutorial` becomes a temporary folder and its MNIST path becomes the test's.
"""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

TUTORIAL = os.path.join(REPO, 'docs', 'tutorial.md')
DATA_PATH = '../shared/data/tensorflow_datasets'


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r'^```(\w*)\n(.*?)^```$', text, re.S | re.M)]


def test_code_blocks_are_found_and_cover_the_tutorials_topics():
    blocks = code_blocks(open(TUTORIAL).read())
    assert {language for language, _ in blocks} == {'python', 'bash'}
    python = '\n'.join(code for language, code in blocks if language == 'python')
    bash = '\n'.join(code for language, code in blocks if language == 'bash')
    for needle in ('jax.grad', 'jnp.', "rngs={'dropout'", "mutable=['batch_stats']", 'optax.chain', 'decay',
                   'train.run_epoch', 'train.fit', 'members=True'):  # fmt: skip
        assert needle in python, needle
    assert ':quick' in bash and '--config.' in bash and 'launch.py' in bash


@pytest.mark.slow
def test_every_block_runs_in_order(data_dir, tmp_path, monkeypatch):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'python').write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')  # a link would lose the venv
    (bin_dir / 'python').chmod(0o755)
    environment = {**os.environ, 'PATH': f'{bin_dir}{os.pathsep}{os.environ["PATH"]}'}
    rewrite = lambda code: code.replace('runs/tutorial', str(tmp_path / 'runs')).replace(DATA_PATH, data_dir)
    monkeypatch.chdir(REPO)
    namespace = {'__name__': '__tutorial__'}
    shell = []  # bash blocks so far: each runs after the ones before it, so an export carries over
    for index, (language, code) in enumerate(code_blocks(open(TUTORIAL).read())):
        code = rewrite(code)
        if language == 'python':
            exec(compile(code, f'{TUTORIAL} block {index}', 'exec'), namespace)
        elif language == 'bash':
            commands = [line for line in shell if line.startswith('export')] + [code]
            result = subprocess.run(['bash', '-ec', '\n'.join(commands)], cwd=REPO, env=environment,
                                    capture_output=True, text=True, timeout=600)  # fmt: skip
            assert result.returncode == 0, f'block {index}:\n{code}\n{result.stderr[-3000:]}'
            shell.append(code)
    assert (tmp_path / 'runs' / 'changed' / 'report.md').exists()
