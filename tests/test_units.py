"""Hidden-unit surgery on params-like trees, by hand on small arrays with a member axis: widen, keep, write and the
masks of active units, against NumPy slicing."""

import jax.numpy as jnp
import numpy as np

from nets import units


def _tree(members=2):
    """Params of 3-4-5-2 with batch norm on layer 0, values that tell every entry apart, member axis leading."""
    rng = np.random.default_rng(0)
    shapes = {'dense_0': {'kernel': (3, 4), 'bias': (4,)}, 'batch_norm_0': {'scale': (4,), 'bias': (4,)},
              'dense_1': {'kernel': (4, 5), 'bias': (5,)}, 'output': {'kernel': (5, 2), 'bias': (2,)}}  # fmt: skip
    return {m: {leaf: jnp.asarray(rng.normal(size=(members, *shape)), jnp.float32) for leaf, shape in leaves.items()}
            for m, leaves in shapes.items()}  # fmt: skip


def test_keep_takes_each_members_units_from_every_leaf_that_holds_them():
    tree = _tree()
    keep = jnp.array([[0, 2], [1, 3]])  # member 0 keeps units 0 and 2 of layer 0, member 1 units 1 and 3
    kept = units.keep(tree, 0, keep)
    for member, chosen in enumerate(np.asarray(keep)):
        np.testing.assert_array_equal(
            kept['dense_0']['kernel'][member], np.asarray(tree['dense_0']['kernel'][member])[:, chosen]
        )
        for leaf in ('bias',):
            np.testing.assert_array_equal(
                kept['dense_0'][leaf][member], np.asarray(tree['dense_0'][leaf][member])[chosen]
            )
        for leaf in ('scale', 'bias'):
            np.testing.assert_array_equal(
                kept['batch_norm_0'][leaf][member], np.asarray(tree['batch_norm_0'][leaf][member])[chosen]
            )
        np.testing.assert_array_equal(
            kept['dense_1']['kernel'][member], np.asarray(tree['dense_1']['kernel'][member])[chosen]
        )
    np.testing.assert_array_equal(kept['dense_1']['bias'], tree['dense_1']['bias'])  # no units of layer 0 there
    np.testing.assert_array_equal(kept['output']['kernel'], tree['output']['kernel'])
    # The last hidden layer's units are read by the output layer.
    last = units.keep(tree, 1, jnp.array([[4, 0, 1], [2, 3, 4]]))
    np.testing.assert_array_equal(last['output']['kernel'][0], np.asarray(tree['output']['kernel'][0])[[4, 0, 1]])


def test_widen_appends_the_fill_on_each_leafs_unit_axis_and_keep_undoes_it():
    tree = _tree()
    grown = units.widen(tree, 1, lambda module, leaf, array, axis: units.new_entries(array, 3, axis, 7.0))
    assert grown['dense_1']['kernel'].shape == (2, 4, 8) and grown['output']['kernel'].shape == (2, 8, 2)
    assert np.all(np.asarray(grown['dense_1']['bias'])[:, 5:] == 7.0)
    assert np.all(np.asarray(grown['output']['kernel'])[:, 5:, :] == 7.0)
    np.testing.assert_array_equal(grown['output']['bias'], tree['output']['bias'])
    back = units.keep(grown, 1, jnp.tile(jnp.arange(5), (2, 1)))
    for module in tree:
        for leaf in tree[module]:
            np.testing.assert_array_equal(back[module][leaf], tree[module][leaf])


def test_write_overwrites_only_the_slice_of_units():
    tree = _tree(members=1)
    written = units.write(tree, 0, 1, 2, lambda module, leaf: -1.0)
    kernel, old = np.asarray(written['dense_0']['kernel'][0]), np.asarray(tree['dense_0']['kernel'][0])
    assert np.all(kernel[:, 1:3] == -1.0)
    np.testing.assert_array_equal(kernel[:, [0, 3]], old[:, [0, 3]])
    following = np.asarray(written['dense_1']['kernel'][0])
    assert np.all(following[1:3] == -1.0) and np.array_equal(
        following[[0, 3]], np.asarray(tree['dense_1']['kernel'][0])[[0, 3]]
    )


def test_unit_masks_keep_the_active_units_and_everything_else():
    params = {m: {leaf: value[0] for leaf, value in leaves.items()} for m, leaves in _tree().items()}
    masks = units.unit_masks(params, 0, 3)
    np.testing.assert_array_equal(masks['dense_0']['bias'], [True, True, True, False])
    np.testing.assert_array_equal(masks['dense_1']['kernel'].all(1), [True, True, True, False])
    assert np.all(masks['output']['kernel']) and np.all(masks['batch_norm_0']['scale'])


def test_unit_masks_keep_each_members_own_number_of_units():
    masks = units.unit_masks(_tree(), 0, np.array([1, 3]))
    np.testing.assert_array_equal(masks['dense_0']['bias'], [[True, False, False, False], [True, True, True, False]])
    np.testing.assert_array_equal(masks['dense_0']['kernel'].all(-2), masks['dense_0']['bias'])
    np.testing.assert_array_equal(masks['dense_1']['kernel'].all(-1), masks['dense_0']['bias'])
    assert np.all(masks['output']['kernel']) and np.all(masks['batch_norm_0']['scale'])
