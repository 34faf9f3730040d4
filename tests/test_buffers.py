"""Recycling of large output buffers (fastloss._buffers): a dropped gradient's memory is
handed out again, never while any array still views it, within the pool's budget."""

import gc
import threading

import numpy as np
import pytest

import fastloss as fl
from fastloss import _buffers, _config

N = 1 << 16  # float64: 512 KiB; large enough for the general path (not the fast call)


@pytest.fixture(autouse=True)
def small_pool(monkeypatch):
    """Recycle from 64 KiB up, with an empty pool before and after each test."""
    monkeypatch.setattr(_config, "RECYCLE_MIN_BYTES", 1 << 16)
    monkeypatch.setattr(_config, "RECYCLE_HELD_BYTES", 1 << 24)
    _buffers.release()
    yield
    _buffers.release()


def _leased(a):
    """Whether ``a``'s memory comes from the pool (its chain of bases ends in a lease)."""
    while isinstance(a, np.ndarray):
        a = a.base
    return isinstance(a, _buffers._Lease)


def _address(a):
    return a.__array_interface__["data"][0]


@pytest.fixture
def data(rng):
    return rng.normal(size=N), rng.normal(size=N)


def test_dropped_gradient_is_reused_by_the_next_call(data):
    grad = fl.mean_squared_error(*data).grad
    address = _address(grad)
    del grad
    gc.collect()
    assert _buffers.idle_bytes() == N * 8
    again = fl.mean_squared_error(*data).grad
    assert _address(again) == address
    assert _buffers.idle_bytes() == 0


def test_recycled_results_equal_fresh_ones(data, monkeypatch):
    x, y = data
    fl.huber(x, y)  # leaves its buffer idle, holding the values of this call
    recycled = fl.huber(y, x)
    monkeypatch.setattr(_config, "RECYCLE_HELD_BYTES", 0)
    fresh = fl.huber(y, x)
    assert not _leased(fresh.grad)
    np.testing.assert_array_equal(recycled.grad, fresh.grad)
    np.testing.assert_array_equal(fl.huber(y, x, reduction="none").loss,
                                  fl.huber(y, x, reduction="none").loss)


def test_no_two_live_results_share_memory(data):
    x, y = data
    first = fl.mean_absolute_error(x, y)
    view = first.grad[::2]  # a view alone keeps the buffer leased
    del first
    gc.collect()
    assert _buffers.idle_bytes() == 0
    second = fl.mean_absolute_error(y, x)
    assert not np.shares_memory(view, second.grad)
    np.testing.assert_array_equal(view, np.sign(x - y)[::2] / N)
    del view
    gc.collect()
    assert _buffers.idle_bytes() == N * 8


def test_results_of_a_kept_loop_are_distinct(data):
    grads = [fl.mean_squared_error(*data).grad for _ in range(4)]
    addresses = {_address(g) for g in grads}
    assert len(addresses) == 4
    for g in grads:
        g[0] = 1.0  # writable, and owned by nobody else
    assert all(_leased(g) for g in grads)


def test_pool_keeps_no_more_than_its_budget(data, monkeypatch):
    monkeypatch.setattr(_config, "RECYCLE_HELD_BYTES", 3 * N * 8)
    grads = [fl.mean_squared_error(*data).grad for _ in range(5)]
    del grads
    gc.collect()
    assert _buffers.idle_bytes() == 3 * N * 8
    assert _buffers.release() == 3 * N * 8
    assert _buffers.idle_bytes() == 0


def test_only_an_exact_size_is_reused(rng):
    fl.mean_squared_error(rng.normal(size=N), rng.normal(size=N))
    assert _buffers.idle_bytes() == N * 8
    fl.mean_squared_error(rng.normal(size=2 * N), rng.normal(size=2 * N))
    assert _buffers.idle_bytes() == N * 8 + 2 * N * 8


def test_small_buffers_and_disabled_pool_are_plain_arrays(data, monkeypatch):
    monkeypatch.setattr(_config, "RECYCLE_MIN_BYTES", N * 8 + 1)
    assert not _leased(fl.mean_squared_error(*data).grad)
    monkeypatch.setattr(_config, "RECYCLE_MIN_BYTES", 1)
    monkeypatch.setattr(_config, "RECYCLE_HELD_BYTES", 0)
    assert not _leased(fl.mean_squared_error(*data).grad)
    assert _buffers.idle_bytes() == 0


def test_hessian_and_per_sample_losses_are_recycled_too(data):
    x, y = data
    res = fl.sigmoid_binary_cross_entropy(x, (y > 0).astype(float), reduction="none", hessian=True)
    for a in (res.loss, res.grad, res.hess):
        assert _leased(a)
    assert len({_address(res.loss), _address(res.grad), _address(res.hess)}) == 3


def test_threads_never_receive_the_same_live_buffer(data):
    x, y = data
    failures = []

    def work(k):
        xk = x * k  # each thread its own values: a buffer shared with another shows it
        expected = fl.mean_squared_error(xk, y).grad.copy()
        for _ in range(50):
            kept = [fl.mean_squared_error(xk, y).grad for _ in range(3)]
            if len({_address(g) for g in kept}) != 3:
                failures.append("shared")
            if not all(np.array_equal(g, expected) for g in kept):
                failures.append("values")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_tensor_results_keep_their_buffers(data):
    """A PyTorch tensor made from a recycled gradient (torch.from_numpy) holds its lease."""
    torch = pytest.importorskip("torch")
    x, y = (torch.from_numpy(a) for a in data)
    grad = fl.mean_squared_error(x, y).grad
    expected = grad.clone()
    gc.collect()
    assert _buffers.idle_bytes() == 0
    other = fl.mean_squared_error(2.0 * x, y).grad
    assert other.data_ptr() != grad.data_ptr()
    assert torch.equal(grad, expected)
