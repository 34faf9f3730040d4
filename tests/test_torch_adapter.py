"""fastloss.torch: gradcheck for every loss, parity with torch.nn.functional's autograd,
PyTorch tensors in and out of fastloss itself, and a training loop."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import ALL_LOSSES
from reference import OPTION_CASES, prepared

import fastloss as fl

torch = pytest.importorskip("torch")
F = torch.nn.functional
flt = pytest.importorskip("fastloss.torch")


def _tensors(name, arrays):
    """Float64 tensors; the differentiable inputs require grad."""
    n_grads = len(fl.losses()[name].differentiable)
    out = []
    for k, a in enumerate(arrays):
        t = torch.from_numpy(np.ascontiguousarray(a))
        out.append(t.requires_grad_(True) if k < n_grads else t)
    return out


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_gradcheck_every_loss(name, rng):
    arrays, options = prepared(name, OPTION_CASES[name][0], rng)
    tensors = _tensors(name, arrays)
    fn = getattr(flt, name)
    assert torch.autograd.gradcheck(lambda *ts: fn(*ts, **options), tensors, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["huber", "sigmoid_binary_cross_entropy", "softmax_cross_entropy",
                                  "sparse_softmax_cross_entropy", "triplet_margin_loss", "vae_kl_divergence"])
def test_gradcheck_per_sample_losses(name, rng):
    """reduction="none": the incoming gradient has one value per sample (broadcast over
    the class axis for class-axis losses)."""
    arrays, options = prepared(name, OPTION_CASES[name][0], rng)
    fn = getattr(flt, name)
    assert torch.autograd.gradcheck(lambda *ts: fn(*ts, reduction="none", **options), _tensors(name, arrays),
                                    eps=1e-6, atol=1e-6, rtol=1e-5)


def _grad_of(f, *tensors):
    ts = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in tensors]
    f(*ts).backward()
    return ts[0].grad


@pytest.mark.parametrize("ours,theirs", [
    (lambda x, y: flt.mse(x, y), lambda x, y: F.mse_loss(x, y)),
    (lambda x, y: flt.mae(x, y), lambda x, y: F.l1_loss(x, y)),
    (lambda x, y: flt.huber(x, y, delta=0.7), lambda x, y: F.huber_loss(x, y, delta=0.7)),
    (lambda x, y: flt.sigmoid_binary_cross_entropy(x, (y > 0).double(), pos_weight=2.0),
     lambda x, y: F.binary_cross_entropy_with_logits(x, (y > 0).double(), pos_weight=torch.tensor(2.0))),
], ids=["mse", "mae", "huber", "bce_logits"])
def test_gradients_equal_pytorch_autograd(ours, theirs, rng):
    x = torch.from_numpy(rng.normal(size=(6, 5)))
    y = torch.from_numpy(rng.normal(size=(6, 5)))
    torch.testing.assert_close(_grad_of(ours, x, y), _grad_of(theirs, x, y), rtol=1e-12, atol=1e-14)


def test_cross_entropy_equals_pytorch(rng):
    z = torch.from_numpy(rng.normal(size=(7, 5)) * 3)
    labels = torch.from_numpy(rng.integers(0, 5, 7))
    labels[2] = -100
    w = torch.from_numpy(rng.uniform(0.5, 2.0, 5))
    kw = dict(ignore_index=-100, label_smoothing=0.1)
    ours = _grad_of(lambda t, y: flt.sparse_softmax_cross_entropy(t, y, class_weight=w.numpy(), **kw), z, labels)
    theirs = _grad_of(lambda t, y: F.cross_entropy(t, y, weight=w, **kw), z, labels)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)
    probs = torch.softmax(torch.from_numpy(rng.normal(size=(7, 5))), -1)
    ours = _grad_of(lambda t, p: flt.softmax_cross_entropy(t, p, label_smoothing=0.2), z, probs)
    theirs = _grad_of(lambda t, p: F.cross_entropy(t, p, label_smoothing=0.2), z, probs)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)


def test_tensors_in_give_tensors_out_without_copying_inputs(rng, monkeypatch):
    from fastloss import _api

    x = torch.from_numpy(rng.normal(size=(4, 3))).requires_grad_(True)
    y = torch.from_numpy(rng.normal(size=(4, 3)))
    seen = []
    work_array = _api._work_array
    monkeypatch.setattr(_api, "_work_array", lambda a, *rest: seen.append(work_array(a, *rest)) or seen[-1])
    res = fl.mse(x, y, backend="numba")
    assert isinstance(res.loss, torch.Tensor) and isinstance(res.grad, torch.Tensor)
    assert np.shares_memory(seen[0], x.detach().numpy()) and np.shares_memory(seen[1], y.numpy())
    out = torch.empty(4, 3, dtype=torch.float64)
    assert fl.mse(x, y, out=out).grad is out
    torch.testing.assert_close(out, 2 * (x.detach() - y) / 12)


def test_refused_arguments_and_reduction_none_shape(rng):
    x = torch.zeros(3, requires_grad=True)
    with pytest.raises(TypeError, match="autograd"):
        flt.mse(x, x.detach(), out=x)
    per = flt.mse(x, torch.ones(3), reduction="none")
    assert per.shape == (3,)
    per.sum().backward()
    torch.testing.assert_close(x.grad, torch.full((3,), -2.0))


def test_a_training_loop_follows_pytorch(rng):
    """A softmax regression trained with fastloss's cross-entropy and with PyTorch's takes
    the same steps."""
    X = torch.from_numpy(rng.normal(size=(64, 4)))
    y = torch.from_numpy((X[:, 0] + X[:, 1] > 0).long().numpy() + (X[:, 2] > 1).long().numpy())
    runs = []
    for loss_fn in (flt.sparse_softmax_cross_entropy, F.cross_entropy):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3).double()
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        losses = []
        for _ in range(30):
            opt.zero_grad()
            loss = loss_fn(model(X), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        runs.append(losses)
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-10)
    assert runs[0][-1] < 0.5 * runs[0][0]


def test_missing_pytorch_names_the_extra():
    code = "import sys; sys.modules['torch'] = None\ntry:\n import fastloss.torch\nexcept ImportError as e: print(e)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert 'pip install "fastloss[torch]"' in done.stdout, done.stdout + done.stderr


def test_importing_fastloss_does_not_import_torch():
    code = "import sys, fastloss; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stdout + done.stderr


def _bf16_case(rng):
    z = torch.from_numpy(rng.normal(size=(6, 5)).astype(np.float32) * 3).to(torch.bfloat16)
    labels = torch.from_numpy(rng.integers(0, 5, 6))
    return z, labels


def _rounded(a):
    """fastloss's float32 result rounded to bfloat16 by PyTorch (to nearest even)."""
    return torch.from_numpy(np.asarray(a)).to(torch.bfloat16)


@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
def test_bfloat16_tensors_compute_in_float32(rng, strided):
    """Contract section 2: bfloat16 in, float32 computation, bfloat16 out; the inputs are read
    in place (no copy before the kernels' widening)."""
    z, labels = _bf16_case(rng)
    if strided:
        z = torch.cat([z, z], 1)[:, ::2]
    widened = z.float().numpy()
    res = fl.sparse_softmax_cross_entropy(z, labels, label_smoothing=0.1)
    ref = fl.sparse_softmax_cross_entropy(widened, labels.numpy(), label_smoothing=0.1)
    assert res.loss.dtype == res.grad.dtype == torch.bfloat16 and res.grad.shape == z.shape
    assert torch.equal(res.loss, _rounded(ref.loss)) and torch.equal(res.grad, _rounded(ref.grad))
    y = z.flip(0)
    res = fl.mse(z, y, reduction="none", hessian=True)
    ref = fl.mse(widened, y.float().numpy(), reduction="none", hessian=True)
    for ours, theirs in zip((res.loss, res.grad, res.hess), (ref.loss, ref.grad, ref.hess)):
        assert ours.dtype == torch.bfloat16 and torch.equal(ours, _rounded(theirs))


def test_bfloat16_tensors_are_read_in_place_and_out_is_written(rng):
    from fastloss._arrays import host_array

    z, labels = _bf16_case(rng)
    view = host_array(z, "z")
    assert view.dtype.name == "bfloat16" and np.shares_memory(view, z.view(torch.int16).numpy())
    out = torch.empty_like(z)
    res = fl.sparse_softmax_cross_entropy(z, labels, out=out)
    assert res.grad is out
    assert torch.equal(out, _rounded(fl.sparse_softmax_cross_entropy(z.float().numpy(), labels.numpy()).grad))


def test_bfloat16_through_the_adapter_and_autocast(rng):
    z, labels = _bf16_case(rng)
    model = torch.nn.Linear(4, 5)
    x = torch.randn(6, 4)
    for loss_fn in (flt.sparse_softmax_cross_entropy, F.cross_entropy):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x)
            loss = loss_fn(logits, labels)
        assert logits.dtype == torch.bfloat16
        loss.float().backward()
        if loss_fn is flt.sparse_softmax_cross_entropy:
            ours, expected = loss, fl.sparse_softmax_cross_entropy(logits.detach().float().numpy(), labels.numpy())
            assert ours.dtype == torch.bfloat16 and torch.equal(ours.detach(), _rounded(expected.loss))
            grad_ours = model.weight.grad.clone()
    # PyTorch's own bfloat16 cross-entropy under autocast: the same to bfloat16's precision.
    torch.testing.assert_close(grad_ours, model.weight.grad, rtol=2e-2, atol=2e-3)
    zz = z.clone().requires_grad_(True)
    flt.softmax_cross_entropy(zz, torch.softmax(z.float(), -1).to(torch.bfloat16)).backward()
    assert zz.grad.dtype == torch.bfloat16


def _step(forward, model, x, y):
    loss = forward(x, y)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("case", ["cross_entropy", pytest.param("mse", marks=pytest.mark.slow),
                                  pytest.param("triplet", marks=pytest.mark.slow)])
def test_torch_compile_fullgraph_equals_eager(case, rng):
    """The loss is a custom operator: torch.compile(fullgraph=True) traces the whole step
    (an error here is a graph break) and computes what eager mode computes."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 5).double()
    x = torch.from_numpy(rng.normal(size=(16, 4)))
    if case == "cross_entropy":
        y = torch.from_numpy(rng.integers(0, 5, 16))
        y[3] = -1
        weights = rng.uniform(0.5, 2.0, 5)

        def loss_fn(out, y):
            return flt.sparse_softmax_cross_entropy(out, y, ignore_index=-1, class_weight=weights, label_smoothing=0.1)
    elif case == "mse":
        y = torch.from_numpy(rng.normal(size=(16, 5)))

        def loss_fn(out, y):
            return flt.mse(out, y, sample_weight=torch.arange(16.0, dtype=torch.float64)[:, None])
    else:
        y = torch.from_numpy(rng.normal(size=(16, 5)))

        def loss_fn(out, y):
            return flt.triplet_margin_loss(out, y, out.flip(0), margin=0.5)
    eager = _step(lambda x, y: loss_fn(model(x), y), model, x, y)
    model.zero_grad()
    torch._dynamo.reset()
    compiled = _step(torch.compile(lambda x, y: loss_fn(model(x), y), fullgraph=True), model, x, y)
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-12, atol=0)
    for a, b in zip(compiled[1], eager[1]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)


def test_torch_func_grad_and_vmap(rng):
    z = torch.from_numpy(rng.normal(size=(3, 8, 5)))
    labels = torch.from_numpy(rng.integers(0, 5, (3, 8)))

    def ours(a, b):
        return flt.sparse_softmax_cross_entropy(a, b, label_smoothing=0.2)

    def theirs(a, b):
        return F.cross_entropy(a, b, label_smoothing=0.2)

    torch.testing.assert_close(torch.func.grad(ours)(z[0], labels[0]), torch.func.grad(theirs)(z[0], labels[0]))
    torch.testing.assert_close(torch.func.vmap(ours)(z, labels), torch.func.vmap(theirs)(z, labels))
    torch.testing.assert_close(torch.func.vmap(torch.func.grad(ours))(z, labels),
                               torch.func.vmap(torch.func.grad(theirs))(z, labels))


def test_no_gradient_is_computed_when_none_is_wanted(rng, monkeypatch):
    from fastloss import _torch_op

    asked = []
    compute = _torch_op._fl.compute
    monkeypatch.setattr(_torch_op._fl, "compute", lambda *a, **k: asked.append(k["grad"]) or compute(*a, **k))
    z = torch.from_numpy(rng.normal(size=(6, 4))).requires_grad_(True)
    labels = torch.from_numpy(rng.integers(0, 4, 6))
    with torch.no_grad():
        flt.sparse_softmax_cross_entropy(z, labels)
    flt.sparse_softmax_cross_entropy(z.detach(), labels)
    loss = flt.sparse_softmax_cross_entropy(z, labels, grad=False)
    assert loss.grad_fn is None
    assert asked == [False, False, False]
    flt.sparse_softmax_cross_entropy(z, labels).backward()
    assert asked[-1] is True
    torch.testing.assert_close(loss, F.cross_entropy(z.detach(), labels))


def test_backward_from_one_hands_back_the_saved_gradient(rng, monkeypatch):
    """loss.backward() seeds 1: no multiplication pass over the gradient; any other
    incoming gradient is multiplied."""
    import fastloss.torch as module

    scaled = []
    scale = module._scale
    monkeypatch.setattr(module, "_scale", lambda *a: scaled.append(1) or scale(*a))
    z = torch.from_numpy(rng.normal(size=(6, 4))).requires_grad_(True)
    labels = torch.from_numpy(rng.integers(0, 4, 6))
    flt.sparse_softmax_cross_entropy(z, labels).backward()
    assert scaled == []
    first = z.grad.clone()
    z.grad = None
    (3 * flt.sparse_softmax_cross_entropy(z, labels)).backward()
    assert scaled == [1]
    torch.testing.assert_close(z.grad, 3 * first)


def test_the_saved_gradient_is_never_handed_out_to_be_changed(rng):
    """backward returns the saved gradient itself for a seed of 1: autograd must copy it
    into .grad, so that accumulating or editing .grad leaves later backwards right."""
    z = torch.from_numpy(rng.normal(size=(4, 3))).requires_grad_(True)
    labels = torch.tensor([0, 1, 2, 0])
    loss = flt.sparse_softmax_cross_entropy(z, labels)
    loss.backward(retain_graph=True)
    first = z.grad.clone()
    z.grad.mul_(5)  # as gradient clipping does in place
    z.grad = None
    loss.backward(retain_graph=True)
    loss.backward()
    torch.testing.assert_close(z.grad, 2 * first)


def test_numpy_scalars_and_arrays_as_options(rng):
    """NumPy scalars are numbers (the options' JSON), the array option a tensor."""
    z = torch.from_numpy(rng.normal(size=(6, 4))).requires_grad_(True)
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    w = np.array([1.0, 2.0, 0.5, 1.5])
    loss = flt.sparse_softmax_cross_entropy(z, labels, label_smoothing=np.float32(0.25), class_weight=w,
                                            ignore_index=np.int64(3))
    want = fl.sparse_softmax_cross_entropy(z.detach().numpy(), labels.numpy(), label_smoothing=0.25,
                                           class_weight=w, ignore_index=3)
    np.testing.assert_array_equal(loss.detach().numpy(), want.loss)
