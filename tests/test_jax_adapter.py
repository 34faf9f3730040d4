"""fastloss.jax: every loss under jax.grad and jax.jit against fastloss itself, against
JAX's autodiff of reference formulas, per-sample cotangents, and JAX arrays in and out."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import ALL_LOSSES
from reference import OPTION_CASES, ROWWISE, prepared

import fastloss as fl

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
flj = pytest.importorskip("fastloss.jax")


def enable_x64():
    """float64 inside the block (JAX computes in float32 by default)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64 as legacy

    return legacy()


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_grad_and_jit_of_every_loss(name, rng):
    arrays, options = prepared(name, OPTION_CASES[name][0], rng)
    n_grads = len(fl.losses()[name].differentiable)
    want = fl.compute(name, *arrays, **options)
    ref = want.grad if isinstance(want.grad, tuple) else (want.grad,)
    with enable_x64():
        args = [jnp.asarray(a) for a in arrays]

        def f(*diff):
            return getattr(flj, name)(*diff, *args[n_grads:], **options)

        value, grads = jax.value_and_grad(f, argnums=tuple(range(n_grads)))(*args[:n_grads])
        jitted = jax.jit(f)(*args[:n_grads])
    np.testing.assert_allclose(value, want.loss, rtol=1e-13)
    np.testing.assert_allclose(jitted, want.loss, rtol=1e-13)
    for g, r in zip(grads, ref):
        np.testing.assert_allclose(g, r, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", ["huber", "softmax_cross_entropy", "sparse_softmax_cross_entropy",
                                  "triplet_margin_loss"])
def test_per_sample_cotangents(name, rng):
    arrays, options = prepared(name, OPTION_CASES[name][0], rng)
    per = fl.compute(name, *arrays, **options, reduction="none")
    cot = rng.normal(size=per.loss.shape)
    with enable_x64():
        args = [jnp.asarray(a) for a in arrays]
        _, vjp = jax.vjp(lambda x: getattr(flj, name)(x, *args[1:], reduction="none", **options), args[0])
        (g,) = vjp(jnp.asarray(cot))
    g0 = per.grad[0] if isinstance(per.grad, tuple) else per.grad
    scale = cot[..., None] if name in ROWWISE else cot
    np.testing.assert_allclose(g, g0 * scale, rtol=1e-13, atol=1e-15)


def test_gradients_equal_jax_autodiff_of_the_formulas(rng):
    z = rng.normal(size=(6, 5)) * 3
    y = rng.integers(0, 5, 6)
    t = (rng.random((6, 5)) > 0.5).astype(float)
    with enable_x64():
        zj, yj, tj = jnp.asarray(z), jnp.asarray(y), jnp.asarray(t)
        cases = [
            (lambda a: flj.sparse_softmax_cross_entropy(a, yj, label_smoothing=0.1),
             lambda a: jnp.mean(-(jax.nn.log_softmax(a) * (0.9 * jax.nn.one_hot(yj, 5) + 0.02)).sum(-1))),
            (lambda a: flj.sigmoid_binary_cross_entropy(a, tj),
             lambda a: jnp.mean(tj * jax.nn.softplus(-a) + (1 - tj) * jax.nn.softplus(a))),
            (lambda a: flj.huber(a, tj, delta=0.5),
             lambda a: jnp.mean(jnp.where(jnp.abs(a - tj) <= 0.5, 0.5 * (a - tj) ** 2,
                                          0.5 * (jnp.abs(a - tj) - 0.25)))),
        ]
        for ours, theirs in cases:
            np.testing.assert_allclose(jax.grad(ours)(zj), jax.grad(theirs)(zj), rtol=1e-12, atol=1e-15)


def test_jax_arrays_are_read_without_copies(rng, monkeypatch):
    from fastloss import _api

    x = jnp.asarray(rng.normal(size=(4, 3)).astype(np.float32))
    seen = []
    work_array = _api._work_array
    monkeypatch.setattr(_api, "_work_array", lambda a, *rest: seen.append(work_array(a, *rest)) or seen[-1])
    fl.mse(x, x, backend="numba")
    assert np.shares_memory(seen[0], np.from_dlpack(x))


def test_jax_arrays_in_give_jax_arrays_out(rng):
    x = jnp.asarray(rng.normal(size=5).astype(np.float32))
    res = fl.mse(x, x + 1)
    assert isinstance(res.loss, jax.Array) and isinstance(res.grad, jax.Array)
    np.testing.assert_allclose(res.grad, np.full(5, -0.4), rtol=1e-6)


def test_refused_arguments():
    with pytest.raises(TypeError, match="jax.grad"):
        flj.mse(jnp.zeros(3), jnp.zeros(3), hessian=True)


def test_missing_jax_names_the_extra():
    code = "import sys; sys.modules['jax'] = None\ntry:\n import fastloss.jax\nexcept ImportError as e: print(e)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert 'pip install "fastloss[jax]"' in done.stdout, done.stdout + done.stderr


def test_second_derivatives_are_refused_not_wrong(rng):
    """The host callback has no derivative: a gradient of the gradient raises instead of
    treating the saved gradient as a constant (contract section 6)."""
    x = rng.normal(size=(4, 3)).astype(np.float32)
    y = rng.normal(size=(4, 3)).astype(np.float32)
    f = lambda a: flj.mse(a, y)  # noqa: E731
    with pytest.raises(ValueError, match="JVP"):
        jax.grad(lambda a: (jax.grad(f)(a) ** 2).sum())(x)
    with pytest.raises(ValueError, match="JVP"):
        jax.hessian(f)(x)


@pytest.mark.parametrize("call,error,message", [
    (lambda z: flj.sparse_softmax_cross_entropy(z, jnp.zeros(4)), TypeError, "integer class labels"),
    (lambda z: flj.sparse_softmax_cross_entropy(z, jnp.zeros(3, int)), ValueError, "without its class axis"),
    (lambda z: flj.sparse_softmax_cross_entropy(z, jnp.zeros(4, int), label_smoothing=2.0), ValueError,
     r"label_smoothing must be in \[0, 1\]"),
    (lambda z: flj.mse(z, z, reduction="avg"), ValueError, "reduction must be one of"),
    (lambda z: flj.mse(z, z, bogus=1), TypeError, "unexpected keyword argument 'bogus'"),
    (lambda z: flj.mse(z, z[:2]), ValueError, "has shape"),
])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_errors_are_raised_while_tracing_with_fastloss_messages(call, error, message, jit):
    z = jnp.ones((4, 3))
    with pytest.raises(error, match=message):
        (jax.jit(call) if jit else call)(z)


def test_a_traced_option_is_refused_clearly():
    z = jnp.ones((4, 3))
    f = jax.jit(lambda z, ls: flj.sparse_softmax_cross_entropy(z, jnp.zeros(4, int), label_smoothing=ls))
    with pytest.raises(TypeError, match="label_smoothing is traced, but options are static"):
        f(z, 0.1)
