"""The uniform interface of :func:`fastloss.cuda.rows_stats.stats_rows_kernel`, per loss.

The kernel sees every loss as four formulas over the elements j of a row (``x_j``, the
target ``y_j``: for integer labels 1 at the label, else 0), given the row's statistics
``s0..s3`` from its first pass (a sum, or one or two log-sum-exps (m, log d)) and the
row's width ``n``::

    stat(x_j, y_j, p)                       -> summed over j into s0 ("sum" mode)
    term(x_j, y_j, s0..s3, n, p)            -> (u_j, v_j), summed over j into u, v
    grad(x_j, y_j, s0..s3, u, v, n, p, gs)  -> (d loss / d x_j, d loss / d y_j)
    row_loss(u, v, p)                       -> the row's loss

These adapters only route arguments: each formula is a ``@portable`` helper of
:mod:`fastloss.losses` that the CPU row function calls too.
"""

from ..losses.cross_entropy import cce_grad, cce_term
from ..losses.divergences import js_grads, js_terms, kl_term
from ..losses.focal import focal_grad, focal_sums, focal_term, sparse_focal_grad
from ..losses.generative import vae_kl_grads, vae_kl_term
from ..math.elementary import exp_nonpositive, log, log1p
from ..math.portable import portable


@portable
def no_stat(xj, yj, p):
    """No first-pass sum."""
    return 0.0


@portable
def first_sum(u, v, p):
    """The row's loss is the sum of its terms u."""
    return u


# kl_divergence: p = (eps,)
@portable
def kl_div_term(xj, yj, s0, s1, s2, s3, n, p):
    lj, g = kl_term(xj, yj, p[0])
    return lj, 0.0


@portable
def kl_div_grad(xj, yj, s0, s1, s2, s3, u, v, n, p, gs):
    lj, g = kl_term(xj, yj, p[0])
    return gs * g, 0.0


# categorical_cross_entropy: p = (eps, label_smoothing); s0 = sum_j x_j
@portable
def cce_stat(xj, yj, p):
    return xj


@portable
def cce_row_term(xj, yj, s0, s1, s2, s3, n, p):
    lj, g, r = cce_term(xj, yj, s0, p[0], p[1], p[1] / n)
    return lj, g * r


@portable
def cce_row_grad(xj, yj, s0, s1, s2, s3, u, v, n, p, gs):
    lj, g, r = cce_term(xj, yj, s0, p[0], p[1], p[1] / n)
    return cce_grad(g, v, s0, gs), 0.0


# vae_kl_divergence: x = mu, y = logvar
@portable
def vae_row_term(xj, yj, s0, s1, s2, s3, n, p):
    t, e = vae_kl_term(xj, yj)
    return t, 0.0


@portable
def vae_row_grad(xj, yj, s0, s1, s2, s3, u, v, n, p, gs):
    t, e = vae_kl_term(xj, yj)
    return vae_kl_grads(xj, e, gs)


# softmax_focal_loss: p = (alpha, gamma); (s0, s1) = (m, log d) of the logits
@portable
def focal_row_term(xj, yj, s0, s1, s2, s3, n, p):
    return focal_sums(yj, (xj - s0) - s1, p[1])


@portable
def focal_row_grad(xj, yj, s0, s1, s2, s3, u, v, n, p, gs):
    return focal_grad(yj, (xj - s0) - s1, p[1], v, p[0], gs), 0.0


@portable
def focal_row_loss(u, v, p):
    return p[0] * u


# sparse_softmax_focal_loss: y_j = [j = label]; u = f_y, v = g_y
@portable
def sparse_focal_row_term(xj, yj, s0, s1, s2, s3, n, p):
    if yj == 0.0:
        return 0.0, 0.0
    return focal_term((xj - s0) - s1, p[1])


@portable
def sparse_focal_row_grad(xj, yj, s0, s1, s2, s3, u, v, n, p, gs):
    return sparse_focal_grad(yj, exp_nonpositive((xj - s0) - s1), v, p[0], gs), 0.0


@portable
def sparse_focal_row_loss(u, v, p):
    return -p[0] * u


# js_divergence: p = (beta,); (s0, s1) of zp, (s2, s3) of zq; u = sp, v = sq
@portable
def js_row_term(xj, yj, s0, s1, s2, s3, n, p):
    return js_terms((xj - s0) - s1, (yj - s2) - s3, p[0], log(p[0]), log1p(-p[0]))


@portable
def js_row_grad(xj, yj, s0, s1, s2, s3, u, v, n, p, gs):
    return js_grads((xj - s0) - s1, (yj - s2) - s3, p[0], log(p[0]), log1p(-p[0]), u, v, gs)


@portable
def js_row_loss(u, v, p):
    return u + v
