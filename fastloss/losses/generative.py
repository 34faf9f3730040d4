"""Losses of generative models: the GAN pair (element-wise) and the VAE's KL term (row-wise)."""

from ..math.declare import Array, Params
from ..math.elementary import expm1, single
from ..math.portable import portable
from ..math.primitives import logistic, logistic_single, wide
from ..math.reductions import LANES, lane_total, lanes


@portable.element
def gan_discriminator(x, y, c, p):
    """softplus(-x) + softplus(y) for real logits ``x`` and fake logits ``y``:
    -[log D(real) + log(1 - D(fake))]. Gradients -sigmoid(-x) and sigmoid(y). Each logit's
    softplus and sigmoid come from one exp (:func:`~fastloss.math.primitives.logistic`)."""
    _, sp_neg_x, _, s_neg_x = logistic(x)
    sp_pos_y, _, s_pos_y, _ = logistic(y)
    return sp_neg_x + sp_pos_y, -s_neg_x, s_pos_y, 0.0


@portable.element
def gan_discriminator_float32(x, y, c, p):
    """:func:`gan_discriminator` for float32 logits: softplus and sigmoid in float32
    (:func:`~fastloss.math.primitives.logistic_single`), their sum in float64."""
    _, sp_neg_x, _, s_neg_x = logistic_single(single(x))
    sp_pos_y, _, s_pos_y, _ = logistic_single(single(y))
    return wide(sp_neg_x) + sp_pos_y, -s_neg_x, s_pos_y, 0.0


@portable
def gan_generator_terms(p: Params, sp_pos, sp_neg, s_pos, s_neg):
    """Loss and gradient of :func:`gan_generator` from softplus(+-x) and sigmoid(+-x)."""
    if p[0] != 0.0:
        return -sp_pos, -s_pos, 0.0, 0.0
    return sp_neg, -s_neg, 0.0, 0.0


@portable.element
def gan_generator(x, y, c, p):
    """Generator loss on fake logits ``x``, ``p = (saturating,)``.

    Non-saturating (default): softplus(-x) = -log D(G(z)), gradient -sigmoid(-x).
    Saturating: -softplus(x) = log(1 - D(G(z))), gradient -sigmoid(x) (Goodfellow 2014).
    """
    sp_pos, sp_neg, s_pos, s_neg = logistic(x)
    return gan_generator_terms(p, sp_pos, sp_neg, s_pos, s_neg)


@portable.element
def gan_generator_float32(x, y, c, p):
    """:func:`gan_generator` for float32 logits, softplus and sigmoid in float32
    (:func:`~fastloss.math.primitives.logistic_single`)."""
    sp_pos, sp_neg, s_pos, s_neg = logistic_single(single(x))
    return gan_generator_terms(p, sp_pos, sp_neg, s_pos, s_neg)


@portable
def vae_kl_term(m, lv):
    """One coordinate of the VAE's KL term: (0.5 (mu^2 + expm1(logvar) - logvar),
    expm1(logvar))."""
    e = expm1(lv)
    return 0.5 * (m * m + (e - lv)), e


@portable
def vae_kl_grads(m, e, gs):
    """The gradients to mu and logvar of one coordinate, e = expm1(logvar): gs mu and
    gs 0.5 e."""
    return gs * m, gs * 0.5 * e


@portable(inline=False)
def vae_kl_row(mu: Array, logvar: Array, gmu: Array, glogvar: Array, gs):
    """sum_j 0.5 (mu_j^2 + expm1(logvar_j) - logvar_j), summed in SIMD lanes
    (:mod:`fastloss.math.reductions`), with the gradients gs mu_j and gs 0.5 expm1(logvar_j)
    stored as it goes (when ``gmu`` is not empty). Each element is read before its
    gradient is written."""
    n = mu.shape[0]
    whole = n - n % LANES
    want = gmu.shape[0] != 0
    total = 0.0
    if whole > 0:
        acc = lanes(0.0)
        for g in range(whole // LANES):
            for lane in range(LANES):
                j = g * LANES + lane
                m = wide(mu[j])
                lv = wide(logvar[j])
                t, e = vae_kl_term(m, lv)
                acc[lane] += t
                if want:
                    g_mu, g_lv = vae_kl_grads(m, e, gs)
                    gmu[j] = g_mu
                    glogvar[j] = g_lv
        total = lane_total(acc)
    rest = lanes(None)  # the rest's terms first: a loop without a running sum vectorises
    for i in range(n - whole):
        j = whole + i
        m = wide(mu[j])
        lv = wide(logvar[j])
        t, e = vae_kl_term(m, lv)
        rest[i] = t
        if want:
            g_mu, g_lv = vae_kl_grads(m, e, gs)
            gmu[j] = g_mu
            glogvar[j] = g_lv
    for i in range(n - whole):
        total += rest[i]
    return total


@portable.row
def vae_kl_divergence(mu, logvar, v, c, gmu, glogvar, gv, h, gs, p):
    """-0.5 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j)) over the row (Kingma and Welling).

    Written as 0.5 sum_j (mu_j^2 + expm1(logvar_j) - logvar_j) (:func:`vae_kl_row`);
    gradients mu and 0.5 expm1(logvar).
    """
    return vae_kl_row(mu, logvar, gmu, glogvar, gs)
