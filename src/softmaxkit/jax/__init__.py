r"""JAX fronts: cross-entropy and linear cross-entropy as ``jax.custom_vjp`` functions, and the family of
``softmaxkit.family`` (sparsemax, entmax15, entmax_bisect with a learnable ``alpha``, Taylor, spherical,
sigmoid, softplus-normalize and their losses) as ``jax.custom_jvp`` functions whose rule is the analytic derivative
(``softmaxkit.jax.family``; the generic functions hand JAX arrays to it).

:func:`cross_entropy` is :func:`softmaxkit.cross_entropy` with a hand-written backward pass;
:func:`linear_cross_entropy` is the loss of the logits ``hidden @ W.T + b`` computed block by block so that
neither the :math:`N \times V` logits nor their gradient ever exist (Wijmans et al., *Cut your losses in
large-vocabulary language models*, 2024, and Liger-Kernel's fused linear cross-entropy do the same in CUDA /
Triton). Both are plain ``jax.numpy`` and ``lax.scan`` / ``lax.map``, so they run under ``jax.jit``, on any
JAX device, and inside ``jax.grad``. This subpackage imports JAX; ``import softmaxkit`` does not.

Why a custom VJP, and why it saves only row statistics
------------------------------------------------------
Reverse-mode autodiff of the forward formula keeps what the backward pass needs of every intermediate: the
shifted logits, their exponentials, the probabilities, several :math:`N \times C` arrays. Inside a
``lax.scan`` over vocabulary blocks it keeps every block's intermediates, which together *are* the full
logits. Yet the gradient has a closed form,

.. math:: \frac{\partial \ell_n}{\partial z_{nc}} = \bar g_n \bigl(p_{nc} \textstyle\sum_k w_k q_{nk}
          - w_c q_{nc}\bigr) + 2 \lambda_z \bar g^z_n \operatorname{lse}_n\, p_{nc},
          \qquad p_{nc} = e^{z_{nc} - \operatorname{lse}_n},

and :math:`p` is one exponential away from the logits once :math:`\operatorname{lse}_n` is known. So the
forward pass keeps :math:`O(N)` numbers per row (the log-sum-exp, as its maximum :math:`m_n` and
:math:`L_n = \log(1 + r_n)` for accuracy, and the target's shifted logit, needed only for the gradient with
respect to class weights) and the backward pass recomputes each block of logits, forms its gradient, and
contracts it at once: :math:`\bar h \mathrel{+}= G W_b`, :math:`\bar W_b \mathrel{+}= G^\top h`,
:math:`\bar b_b \mathrel{+}= \sum_n G_n`. Recomputing the logits costs one more matrix product per block,
the usual price of not storing them. The cotangent of each row's loss :math:`\bar g_n` is used as given, so
``reduction="none"`` under ``jax.vjp`` gets each row its own weight.

The online log-sum-exp
----------------------
A row's classes arrive in blocks. For two disjoint sets of classes with maxima :math:`m_1, m_2` and sums
:math:`S_i = \sum e^{z - m_i}`, the union has

.. math:: m = \max(m_1, m_2), \qquad S = S_1 e^{m_1 - m} + S_2 e^{m_2 - m}

(Milakov & Gimelshein, *Online normalizer calculation for softmax*, 2018). Every exponent is :math:`\le 0`, so
nothing overflows, and the order of the blocks does not matter. We keep :math:`S = 1 + r` with the maximum's
own term (exactly 1) out of :math:`r`, and :math:`\operatorname{lse} = m + \operatorname{log1p}(r)`, as the
reference does (Blanchard, Higham & Higham 2021): the side that holds the larger maximum keeps its :math:`r`
and adds the other side's whole sum, :math:`r = r_{hi} + (1 + r_{lo}) e^{m_{lo} - m_{hi}}`. The smoothing sum
:math:`\sum_c w_c (z_c - m)` and the target's logit are carried relative to the running maximum and moved
when it changes: :math:`\sum_c w_c (z_c - m) = \sum_c w_c (z_c - m_1) + (\sum_c w_c)(m_1 - m)`.

Special values
--------------
The reference's policy (see :func:`softmaxkit.cross_entropy`):

=======================================  ==============================================
case                                     loss (gradient)
=======================================  ==============================================
all ignored / zero total weight, mean    0 (zeros), not torch's nan
ignored row holding ``nan``              0 (zeros): ignored rows are never read
row with ``nan``                         ``nan`` for that row (its gradient nan)
row with ``+inf``                        ``nan`` (with ``softcap``: ``+inf`` -> ``c``)
target's logit ``-inf``                  ``inf``, gradient still :math:`p - q`
``softcap``                              :math:`c\tanh(z/c)`; ``-inf`` stays ``-inf``
``z_loss``                               :math:`\lambda_z\operatorname{lse}^2` per row not ignored,
                                         unweighted, averaged over those rows
label out of range under ``jax.jit``     ``nan`` for that row (it cannot be checked)
=======================================  ==============================================

Value checks (labels in range, non-negative weights and probabilities) need concrete arrays and are skipped
for tracers; option checks (``reduction``, ``label_smoothing`` in ``[0, 1]``, ...) always run.

Examples
--------
>>> import jax.numpy as jnp
>>> from softmaxkit.jax import cross_entropy, linear_cross_entropy
>>> h = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
>>> W = jnp.array([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
>>> y = jnp.array([0, 1, 2])
>>> fused = linear_cross_entropy(h, W, y, chunk_size=(2, 2))  # blocks of 2 rows x 2 classes
>>> plain = cross_entropy(h @ W.T, y)
>>> print(round(float(fused), 6), round(float(plain), 6))
0.637941 0.637941
"""

from . import family as _family
from ._cross_entropy import cross_entropy
from ._linear import linear_cross_entropy
from .family import *  # noqa: F403

__all__ = ["cross_entropy", "linear_cross_entropy", *_family.__all__]
