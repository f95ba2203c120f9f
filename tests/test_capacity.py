"""The capacity experiment: parameter budgets that match the model, and headlines that are what the runs measured."""

import jax
import numpy as np
import pytest

from experiments import capacity
from nets import models


@pytest.mark.parametrize('depth', [1, 2, 5])
def test_parameter_count_is_the_models_and_the_budget_width_is_the_largest_that_fits(depth):
    width = capacity.width_for_budget(50_000, depth)
    model = models.MLP(hidden_widths=(width,) * depth)
    params = model.init(jax.random.PRNGKey(0), np.zeros((1, 784), np.float32), train=False)['params']
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == capacity.parameter_count(784, width, depth, 10)
    assert capacity.parameter_count(784, width, depth, 10) <= 50_000 < capacity.parameter_count(784, width + 1,
                                                                                                depth, 10)  # fmt: skip
