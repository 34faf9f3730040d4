"""fastloss.torch's second derivatives: exact where contract section 6 promises them, checked
against PyTorch's own losses differentiated twice (gradient penalties, the full hessian),
and a RuntimeError naming the loss everywhere else."""

import numpy as np
import pytest
from conftest import ALL_LOSSES
from reference import OPTION_CASES, prepared

torch = pytest.importorskip("torch")
F = torch.nn.functional
flt = pytest.importorskip("fastloss.torch")

N, C = 6, 5


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(N, C, dtype=torch.float64, generator=g)
    labels = torch.randint(0, C, (N,), generator=g)
    labels[2] = -100
    weight = torch.rand(C, dtype=torch.float64, generator=g) + 0.5
    sample = torch.rand(N, dtype=torch.float64, generator=g) + 0.25
    return y, labels, weight, sample


Y, LABELS, WEIGHT, SAMPLE = _data()
Q = torch.softmax(Y, -1)

# (ours, PyTorch's) as functions of the predictions, each reduction and option that
# changes the second derivative: the smoothing and class weights of cross-entropy, the
# mean's divisor, per-sample weights (fastloss's "mean" is sum(w l) / count).
CASES = {
    "mse": (lambda x: flt.mse(x, Y), lambda x: F.mse_loss(x, Y)),
    "mse_none": (lambda x: (flt.mse(x, Y, reduction="none") * Y).sum(),
                 lambda x: (F.mse_loss(x, Y, reduction="none") * Y).sum()),
    "huber_sum": (lambda x: flt.huber(x, Y, delta=0.7, reduction="sum"),
                  lambda x: F.huber_loss(x, Y, delta=0.7, reduction="sum")),
    "bce_logits": (lambda x: flt.sigmoid_binary_cross_entropy(x, (Y > 0).double(), pos_weight=2.0),
                   lambda x: F.binary_cross_entropy_with_logits(x, (Y > 0).double(), pos_weight=torch.tensor(2.0))),
    "bce_logits_weighted": (
        lambda x: flt.sigmoid_binary_cross_entropy(x, (Y > 0).double(), sample_weight=Y.abs().numpy()),
        lambda x: (F.binary_cross_entropy_with_logits(x, (Y > 0).double(), reduction="none") * Y.abs()).mean()),
    "cross_entropy": (
        lambda x: flt.sparse_softmax_cross_entropy(x, LABELS, ignore_index=-100, class_weight=WEIGHT.numpy(),
                                                   label_smoothing=0.1),
        lambda x: F.cross_entropy(x, LABELS, ignore_index=-100, weight=WEIGHT, label_smoothing=0.1)),
    "cross_entropy_ignored": (
        lambda x: flt.sparse_softmax_cross_entropy(x, LABELS, ignore_index=-100),
        lambda x: F.cross_entropy(x, LABELS, ignore_index=-100)),
    "cross_entropy_none": (
        lambda x: (flt.sparse_softmax_cross_entropy(x, LABELS, ignore_index=-100, reduction="none") * SAMPLE).sum(),
        lambda x: (F.cross_entropy(x, LABELS, ignore_index=-100, reduction="none") * SAMPLE).sum()),
    "cross_entropy_sample_weight": (
        lambda x: flt.sparse_softmax_cross_entropy(x, LABELS.clamp(min=0), sample_weight=SAMPLE.numpy()),
        lambda x: (F.cross_entropy(x, LABELS.clamp(min=0), reduction="none") * SAMPLE).mean()),
    "cross_entropy_probabilities": (
        lambda x: flt.softmax_cross_entropy(x, Q, label_smoothing=0.2),
        lambda x: F.cross_entropy(x, Q, label_smoothing=0.2)),
    "cross_entropy_probabilities_sum": (
        lambda x: flt.softmax_cross_entropy(x, Q * 1.5, reduction="sum"),
        lambda x: F.cross_entropy(x, Q * 1.5, reduction="sum")),
    "kl_div": (lambda x: flt.softmax_kl_divergence(x, Q),
               lambda x: F.kl_div(F.log_softmax(x, -1), Q, reduction="batchmean")),
    "kl_div_log_target": (
        lambda x: flt.softmax_kl_divergence(x, F.log_softmax(Y, -1), log_target=True, reduction="sum"),
        lambda x: F.kl_div(F.log_softmax(x, -1), F.log_softmax(Y, -1), reduction="sum", log_target=True)),
    "cross_entropy_class_axis_first": (
        lambda x: flt.softmax_cross_entropy(x.T, Q.T, axis=0),
        lambda x: F.cross_entropy(x, Q)),
}


def _penalised_parameter_gradients(loss_fn, seed=1):
    """An input-gradient penalty (loss + 10 ||d loss / d input||^2, as in WGAN-GP) through
    a small MLP: the gradient of the first layer's weight, which needs the loss's second
    derivative."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, C)).double()
    x = torch.randn(N, 4, dtype=torch.float64, requires_grad=True)
    loss = loss_fn(model(x))
    (d_input,) = torch.autograd.grad(loss, x, create_graph=True)
    (loss + 10 * d_input.pow(2).sum()).backward()
    return model[0].weight.grad


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_penalty_equals_pytorch(case):
    ours, theirs = CASES[case]
    torch.testing.assert_close(_penalised_parameter_gradients(ours), _penalised_parameter_gradients(theirs),
                               rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("case", sorted(CASES))
def test_hessian_equals_pytorch(case):
    ours, theirs = CASES[case]
    x = torch.randn(N, C, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    expected = torch.autograd.functional.hessian(theirs, x)
    assert expected.abs().max() > 0
    torch.testing.assert_close(torch.autograd.functional.hessian(ours, x), expected, rtol=1e-10, atol=1e-14)


def test_hessian_of_mse_is_two_over_n():
    p = torch.randn(7, dtype=torch.float64)
    h = torch.autograd.functional.hessian(lambda q: flt.mse(q, torch.zeros(7, dtype=torch.float64)), p)
    torch.testing.assert_close(h, torch.eye(7, dtype=torch.float64) * 2 / 7)


def test_float32_second_derivative():
    x = torch.randn(N, C, generator=torch.Generator().manual_seed(4))
    labels = LABELS.clamp(min=0)
    ours = torch.autograd.functional.hessian(lambda z: flt.sparse_softmax_cross_entropy(z, labels), x)
    theirs = torch.autograd.functional.hessian(lambda z: F.cross_entropy(z, labels), x)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(set(ALL_LOSSES) - set(flt.SECOND_ORDER)))
def test_other_losses_refuse_a_second_derivative(name, rng):
    arrays, options = prepared(name, OPTION_CASES[name][0], rng)
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    tensors[0].requires_grad_(True)
    fn = getattr(flt, name)
    (first,) = torch.autograd.grad(fn(*tensors, **options), tensors[0], create_graph=True)
    # create_graph alone is fine: the first derivative is still the fused gradient.
    torch.testing.assert_close(first, torch.from_numpy(np.asarray(
        _plain_gradient(name, arrays, options))), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match=f"second derivative of {name} is not available"):
        first.pow(2).sum().backward()


def _plain_gradient(name, arrays, options):
    import fastloss as fl

    grad = fl.compute(name, *arrays, **options).grad
    return grad[0] if isinstance(grad, tuple) else grad


def test_second_order_covers_the_losses_with_a_hessian():
    import fastloss as fl

    elementwise = {n for n, info in fl.losses().items() if info.hessian and info.family == "elementwise"}
    assert set(flt.SECOND_ORDER) == elementwise | {
        "sparse_softmax_cross_entropy", "softmax_cross_entropy", "softmax_kl_divergence"}


def test_third_derivative_is_refused():
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    loss = flt.log_cosh(x, torch.zeros(5, dtype=torch.float64))
    (g,) = torch.autograd.grad(loss, x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        h.sum().backward()
