"""Dask arrays in, lazy results out: every loss against the same loss on the whole NumPy
arrays, for any chunking, and on a dask.distributed cluster."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import ALL_LOSSES, tiered
from reference import OPTION_CASES, ROWWISE, prepared

import fastloss as fl

da = pytest.importorskip("dask.array")


def _chunked(name, arrays, rows_chunk=2, cols_chunk=3):
    """Dask arrays cut into uneven chunks (the class axis whole for class-axis losses)."""
    out = []
    for a in arrays:
        if a.ndim == 0:
            out.append(da.from_array(a))
            continue
        chunks = (rows_chunk,) + tuple(-1 if name in ROWWISE else cols_chunk for _ in a.shape[1:])
        out.append(da.from_array(a, chunks=chunks))
    return out


def _reductions(name):
    return ("mean", "sum") if name == "root_mean_squared_error" else ("mean", "sum", "none")


@pytest.mark.parametrize("name", tiered(ALL_LOSSES))
def test_every_loss_matches_numpy(name, rng):
    arrays, options = prepared(name, OPTION_CASES[name][-1], rng)
    loss_shape = arrays[0].shape[:-1] if name in ROWWISE else arrays[0].shape
    weights = rng.uniform(0.5, 2.0, size=loss_shape)
    hessian = fl.losses()[name].hessian
    for reduction in _reductions(name):
        for w in (None, weights):
            want = fl.compute(name, *arrays, **options, reduction=reduction, sample_weight=w, hessian=hessian)
            lazy = fl.compute(name, *_chunked(name, arrays), **options, reduction=reduction, hessian=hessian,
                              sample_weight=None if w is None else da.from_array(w, chunks=3))
            assert isinstance(lazy.loss, da.Array)
            np.testing.assert_allclose(lazy.loss.compute(), want.loss, rtol=1e-12, atol=1e-14)
            got = lazy.grad if isinstance(lazy.grad, tuple) else (lazy.grad,)
            ref = want.grad if isinstance(want.grad, tuple) else (want.grad,)
            for g, r in zip(got, ref):
                assert isinstance(g, da.Array) and g.chunks == _chunked(name, arrays)[0].chunks
                np.testing.assert_allclose(g.compute(), r, rtol=1e-12, atol=1e-14)
            if hessian:
                np.testing.assert_allclose(lazy.hess.compute(), want.hess, rtol=1e-12, atol=1e-14)


def test_chunking_does_not_change_the_result(rng):
    z = rng.normal(size=(40, 6))
    labels = rng.integers(0, 6, 40)
    labels[::5] = -1
    opts = dict(ignore_index=-1, class_weight=rng.uniform(0.5, 2.0, 6), label_smoothing=0.1)
    results = [fl.sparse_softmax_cross_entropy(da.from_array(z, chunks=(c, 6)), da.from_array(labels, chunks=c),
                                               **opts) for c in (1, 7, 40)]
    values = [float(r.loss.compute()) for r in results]
    np.testing.assert_allclose(values, values[0], rtol=1e-14)
    np.testing.assert_allclose(values[0], fl.sparse_softmax_cross_entropy(z, labels, **opts).loss, rtol=1e-14)


def test_results_are_lazy(rng):
    calls = []
    x = da.from_array(rng.normal(size=(6, 4)), chunks=3)
    x = x.map_blocks(lambda b: calls.append(b.size) or b, meta=np.empty((0, 0)))
    res = fl.mse(x, da.zeros((6, 4), chunks=3))
    assert calls == []  # nothing ran
    res.grad.compute()
    assert sum(calls) == 24


def test_class_axis_in_several_chunks_is_a_clear_error(rng):
    z = da.from_array(rng.normal(size=(4, 6)), chunks=(2, 3))
    with pytest.raises(ValueError, match="rechunk"):
        fl.softmax_cross_entropy(z, z)


def test_hinge_decides_its_rule_over_all_targets(rng):
    x = rng.normal(size=20)
    y = np.where(rng.random(20) > 0.5, 1.0, 0.0)
    y[-1] = -1.0  # one target outside {0, 1}: no chunk may map its 0/1 targets
    lazy = fl.hinge(da.from_array(x, chunks=5), da.from_array(y, chunks=5))
    np.testing.assert_allclose(lazy.loss.compute(), fl.hinge(x, y).loss, rtol=1e-14)


@pytest.mark.slow
def test_on_a_distributed_cluster(rng):
    distributed = pytest.importorskip("distributed")
    z = rng.normal(size=(30, 5))
    labels = rng.integers(0, 5, 30)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                                  processes=True) as cluster, distributed.Client(cluster) as client:
        res = fl.sparse_softmax_cross_entropy(da.from_array(z, chunks=(10, 5)), da.from_array(labels, chunks=10))
        loss, grad = client.compute([res.loss, res.grad], sync=True)
    want = fl.sparse_softmax_cross_entropy(z, labels)
    np.testing.assert_allclose(loss, want.loss, rtol=1e-14)
    np.testing.assert_allclose(grad, want.grad, rtol=1e-14)


def test_missing_dask_names_the_extra():
    code = "import sys; sys.modules['dask'] = None\ntry:\n import fastloss.dask\nexcept ImportError as e: print(e)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert 'pip install "fastloss[dask]"' in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_one_compute_runs_each_chunk_once(reduction, rng, monkeypatch):
    """Loss, gradient and hessian come from one graph: dask.compute of all three runs the
    fused kernel once per chunk (four chunks here), on Dask's default scheduler."""
    import dask

    from fastloss import dask as lazy

    calls = []
    evaluate = lazy._fl.evaluate
    monkeypatch.setattr(lazy._fl, "evaluate", lambda *a: calls.append(1) or evaluate(*a))
    z = da.from_array(rng.normal(size=(40, 6)), chunks=(10, 6))
    labels = da.from_array(rng.integers(0, 6, 40), chunks=10)
    res = fl.sparse_softmax_cross_entropy(z, labels, reduction=reduction, hessian=True, ignore_index=2)
    calls.clear()  # the call above built the graph through the same entry point
    loss, grad, hess = dask.compute(res.loss, res.grad, res.hess)
    assert len(calls) == 4
    monkeypatch.undo()
    want = fl.sparse_softmax_cross_entropy(z.compute(), labels.compute(), reduction=reduction, hessian=True,
                                           ignore_index=2)
    np.testing.assert_allclose(loss, want.loss, rtol=1e-13)
    np.testing.assert_allclose(grad, want.grad, rtol=1e-13)
    np.testing.assert_allclose(hess, want.hess, rtol=1e-13)
