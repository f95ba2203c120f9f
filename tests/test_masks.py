"""Masks by hand: which leaves a pattern chooses, kept counts with member axes, and masking a tree."""

import jax.numpy as jnp
import numpy as np

from nets import masks


def test_param_mask_chooses_leaves_by_their_path():
    params = {'dense_0': {'kernel': 1, 'bias': 2}, 'batch_norm_0': {'scale': 3}, 'output': {'kernel': 4}}
    assert masks.param_mask(masks.KERNELS)(params) == {
        'dense_0': {'kernel': True, 'bias': False}, 'batch_norm_0': {'scale': False}, 'output': {'kernel': True}
    }  # fmt: skip
    assert masks.param_mask('^dense_')(params)['dense_0'] == {'kernel': True, 'bias': True}


def test_count_kept_counts_kernel_weights_per_member_and_kept_by_layer_gives_fractions():
    tree = {
        'dense_0': {'kernel': jnp.array([[[1, 0], [1, 1]], [[0, 0], [0, 1]]], bool), 'bias': jnp.zeros((2, 2), bool)},
        'output': {'kernel': jnp.array([[[1], [1]], [[1], [0]]], bool), 'bias': jnp.ones((2, 1), bool)},
    }
    kept, total = masks.count_kept(tree)
    assert total == 6  # 2x2 + 2x1 kernel weights; biases do not count
    np.testing.assert_array_equal(kept, [5, 2])
    by_layer = masks.kept_by_layer(tree)
    np.testing.assert_allclose(by_layer['dense_0/kernel'], [0.75, 0.25])
    np.testing.assert_allclose(by_layer['output/kernel'], [1.0, 0.5])


def test_mask_tree_zeroes_the_removed_entries_and_leaves_none_masks_alone():
    tree = {'a': jnp.array([1.0, 2.0, 3.0]), 'b': jnp.array([4.0])}
    masked = masks.mask_tree(tree, {'a': jnp.array([True, False, True]), 'b': None})
    np.testing.assert_array_equal(masked['a'], [1.0, 0.0, 3.0])
    np.testing.assert_array_equal(masked['b'], [4.0])
