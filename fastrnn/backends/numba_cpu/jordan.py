"""Jordan network time loops: u = act(W_ih x + b_ih + W_yh y + b_yh), y' = act_y(W_hy u + b_hy).

The time loops of one batch part, with the driver's signature
(:mod:`fastrnn.backends.driver`). The carried state h is the output y [B,O]; w_hh is W_yh
[H,O], w_hr is W_hy [O,H], norms = (b_hy,). ``relu`` is the cell's act code: bit 0 chooses
relu (else tanh) for u, relu // 2 the output activation (0 identity, 1 tanh, 2 sigmoid).
buffers = (hidden, y_out): each step's u and y, whose activation derivatives backward needs.
Rows arrive sorted longest first: step t runs on rows [0, active[t]).
"""

import numpy as np

from ._common import jit, matmul_w, matmul_wt, one_like, sigmoid, tanh


@jit
def forward(xw, w_hh, b_rec, w_hr, norms, h, c, active, reverse, training, relu, y, h_prev,
            buffers):
    """Runs the layer; h [B,O] enters as y0 and leaves as y_n (b_rec, c: unused)."""
    T, B, H = xw.shape
    O = h.shape[1]
    hidden, y_out = buffers
    b_hr = norms[0]
    hidden_relu, out_act = relu % 2 == 1, relu // 2
    zero = one_like(h[0, 0]) * 0
    hw = np.empty((B, H), xw.dtype)
    a = np.empty((B, O), xw.dtype)
    for s in range(T):
        t = T - 1 - s if reverse else s
        n = active[t]
        if n == 0:
            continue
        k = t if training else 0
        if training:
            h_prev[k, :n] = h[:n]
        matmul_wt(h, w_hh, hw, n)
        for b in range(n):
            for j in range(H):
                pre = xw[t, b, j] + hw[b, j]
                hw[b, j] = (zero if pre < zero else pre) if hidden_relu else tanh(pre)
        matmul_wt(hw, w_hr, a, n)
        for b in range(n):
            hidden[k, b] = hw[b]
            for j in range(O):
                v = a[b, j] + b_hr[j]
                if out_act == 1:
                    v = tanh(v)
                elif out_act == 2:
                    v = sigmoid(v)
                h[b, j] = v
                y_out[k, b, j] = v
        y[t, :n] = h[:n]


@jit
def backward(dy, dh, dc, w_hh, w_hr, norms, active, reverse, relu, h_prev, buffers, dg_in,
             dg_rec, dh_out, grads):
    """BPTT of :func:`forward`; dh enters as dy_n and leaves as dy0. Writes dh_out [T,B,O],
    the gradient of W_hy u + b_hy, and dg_in [T,B,H] (= dg_rec), that of the hidden layer's
    pre-activation (dc, norms, h_prev, grads: unused)."""
    T, B, O = dy.shape
    H = w_hh.shape[0]
    hidden, y_out = buffers
    hidden_relu, out_act = relu % 2 == 1, relu // 2
    one = one_like(dy[0, 0, 0])
    zero = one - one
    du = np.empty((B, H), dy.dtype)
    for s in range(T):
        t = s if reverse else T - 1 - s
        n = active[t]
        if n == 0:
            continue
        for b in range(n):
            for j in range(O):
                d = dh[b, j] + dy[t, b, j]
                v = y_out[t, b, j]
                if out_act == 1:
                    d = d * (one - v * v)
                elif out_act == 2:
                    d = d * (v * (one - v))
                dh_out[t, b, j] = d
        matmul_w(dh_out[t], w_hr, du, n)
        for b in range(n):
            for j in range(H):
                u = hidden[t, b, j]
                if hidden_relu:
                    dg_in[t, b, j] = du[b, j] * (one if u > zero else zero)  # NaN stays
                else:
                    dg_in[t, b, j] = du[b, j] * (one - u * u)
        matmul_w(dg_in[t], w_hh, dh, n)
