/* One precision of the gate passes; included by gates.h with REAL and SUFFIX defined. */
#define FR_CAT2(a, b) a##_##b
#define FR_CAT(a, b) FR_CAT2(a, b)
#define FR(name) FR_CAT(name, SUFFIX)

static inline REAL FR(sigm)(REAL x) {
    const REAL half = (REAL)0.5;
    return half + half * FR(tanh)(half * x);
}

/* out[i] = a[i] + b[i] */
static inline void FR(add)(const REAL *restrict a, const REAL *restrict b, REAL *restrict out,
                           long count) {
    for (long i = 0; i < count; i++) out[i] = a[i] + b[i];
}

/* out[i] += b[i] */
static inline void FR(add_to)(REAL *restrict out, const REAL *restrict b, long count) {
    for (long i = 0; i < count; i++) out[i] += b[i];
}

/* ---------------------------------------------------------------- Elman RNN */

/* xw holds the folded biases (b_ih + b_hh) of RNN and LSTM, and b_ih of GRU. */

static inline void FR(rnn_fwd)(const REAL *restrict xw, const REAL *restrict hw,
                               REAL *restrict h, REAL *restrict h_new, long n, long H,
                               int relu) {
    for (long b = 0; b < n; b++) {
        const long r = b * H;
        if (relu) {
            for (long j = 0; j < H; j++) {
                const REAL pre = xw[r + j] + hw[r + j];
                const REAL v = pre < 0 ? (REAL)0 : pre;  /* NaN stays NaN, as np.maximum */
                h[r + j] = v;
                h_new[r + j] = v;
            }
        } else {
            for (long j = 0; j < H; j++) {
                const REAL v = FR(tanh)(xw[r + j] + hw[r + j]);
                h[r + j] = v;
                h_new[r + j] = v;
            }
        }
    }
}

/* dpre = (dh + dy) * act'(h_new) */
static inline void FR(rnn_bwd)(const REAL *restrict dh, const REAL *restrict dy,
                               const REAL *restrict h_new, REAL *restrict dpre, long n, long H,
                               int relu) {
    const long count = n * H;
    if (relu) {
        /* a product, not a choice: a NaN gradient stays NaN where the unit is off */
        for (long i = 0; i < count; i++)
            dpre[i] = (dh[i] + dy[i]) * (h_new[i] > 0 ? (REAL)1 : (REAL)0);
    } else {
        for (long i = 0; i < count; i++)
            dpre[i] = (dh[i] + dy[i]) * ((REAL)1 - h_new[i] * h_new[i]);
    }
}

/* ---------------------------------------------------------------- Jordan output layer */

/* y = act_y(a + b_hr) into the carried state h and the saved y_out; act_y: 0 identity,
 * 1 tanh, 2 sigmoid */
static inline void FR(jordan_out_fwd)(const REAL *restrict a, const REAL *restrict b_hr,
                                      REAL *restrict h, REAL *restrict y_out, long n, long O,
                                      int act) {
    for (long b = 0; b < n; b++) {
        const long r = b * O;
        for (long j = 0; j < O; j++) {
            REAL v = a[r + j] + b_hr[j];
            if (act == 1) v = FR(tanh)(v);
            else if (act == 2) v = FR(sigm)(v);
            h[r + j] = v;
            y_out[r + j] = v;
        }
    }
}

/* d_a = (dh + dy) * act_y'(y_out) */
static inline void FR(jordan_out_bwd)(const REAL *restrict dh, const REAL *restrict dy,
                                      const REAL *restrict y_out, REAL *restrict d_a, long n,
                                      long O, int act) {
    const long count = n * O;
    for (long i = 0; i < count; i++) {
        const REAL d = dh[i] + dy[i], v = y_out[i];
        d_a[i] = act == 1 ? d * ((REAL)1 - v * v) : act == 2 ? d * (v * ((REAL)1 - v)) : d;
    }
}

/* ---------------------------------------------------------------- LSTM (gates i, f, g, o) */

static inline void FR(lstm_fwd)(const REAL *restrict xw, const REAL *restrict hw,
                                REAL *restrict c, REAL *restrict m, REAL *restrict gates,
                                REAL *restrict tanh_c, long n, long H) {
    const long G = 4 * H;
    for (long b = 0; b < n; b++) {
        const REAL *restrict x = xw + b * G;
        const REAL *restrict u = hw + b * G;
        REAL *restrict gt = gates + b * G;
        for (long j = 0; j < H; j++) {
            const REAL i = FR(sigm)(x[j] + u[j]);
            const REAL f = FR(sigm)(x[H + j] + u[H + j]);
            const REAL g = FR(tanh)(x[2 * H + j] + u[2 * H + j]);
            const REAL o = FR(sigm)(x[3 * H + j] + u[3 * H + j]);
            const REAL c_new = f * c[b * H + j] + i * g;
            const REAL tc = FR(tanh)(c_new);
            c[b * H + j] = c_new;
            m[b * H + j] = o * tc;
            gt[j] = i;
            gt[H + j] = f;
            gt[2 * H + j] = g;
            gt[3 * H + j] = o;
            tanh_c[b * H + j] = tc;
        }
    }
}

/* dm: gradient reaching o * tanh(c); dc: in dc_n of the step, out dc of the previous one */
static inline void FR(lstm_bwd)(const REAL *restrict dm, const REAL *restrict gates,
                                const REAL *restrict c_prev, const REAL *restrict tanh_c,
                                REAL *restrict dc, REAL *restrict dgates, long n, long H) {
    const long G = 4 * H;
    const REAL one = (REAL)1;
    for (long b = 0; b < n; b++) {
        const REAL *restrict gt = gates + b * G;
        REAL *restrict dg = dgates + b * G;
        for (long j = 0; j < H; j++) {
            const long e = b * H + j;
            const REAL i = gt[j], f = gt[H + j], g = gt[2 * H + j], o = gt[3 * H + j];
            const REAL tc = tanh_c[e];
            const REAL dc_new = dc[e] + dm[e] * o * (one - tc * tc);
            dg[j] = dc_new * g * i * (one - i);
            dg[H + j] = dc_new * c_prev[e] * f * (one - f);
            dg[2 * H + j] = dc_new * i * (one - g * g);
            dg[3 * H + j] = dm[e] * tc * o * (one - o);
            dc[e] = dc_new * f;
        }
    }
}

/* ---------------------------------------------------------------- GRU (gates r, z, n) */

/* b_hh: added to the recurrent product (r scales W_hn h + b_hn) */
static inline void FR(gru_fwd)(const REAL *restrict xw, const REAL *restrict hw,
                               const REAL *restrict b_hh, REAL *restrict h,
                               REAL *restrict gates, REAL *restrict hw_n, long n, long H) {
    const long G = 3 * H;
    const REAL one = (REAL)1;
    for (long b = 0; b < n; b++) {
        const REAL *restrict x = xw + b * G;
        const REAL *restrict u = hw + b * G;
        REAL *restrict gt = gates + b * G;
        for (long j = 0; j < H; j++) {
            const REAL r = FR(sigm)(x[j] + u[j] + b_hh[j]);
            const REAL z = FR(sigm)(x[H + j] + u[H + j] + b_hh[H + j]);
            const REAL hn = u[2 * H + j] + b_hh[2 * H + j];
            const REAL cand = FR(tanh)(x[2 * H + j] + r * hn);
            h[b * H + j] = (one - z) * cand + z * h[b * H + j];
            gt[j] = r;
            gt[H + j] = z;
            gt[2 * H + j] = cand;
            hw_n[b * H + j] = hn;
        }
    }
}

/* direct: dh' * z, the path that skips the gates (added to dh after the recurrent product) */
static inline void FR(gru_bwd)(const REAL *restrict dh, const REAL *restrict dy,
                               const REAL *restrict h_prev, const REAL *restrict gates,
                               const REAL *restrict hw_n, REAL *restrict dg_in,
                               REAL *restrict dg_rec, REAL *restrict direct, long n, long H) {
    const long G = 3 * H;
    const REAL one = (REAL)1;
    for (long b = 0; b < n; b++) {
        const REAL *restrict gt = gates + b * G;
        REAL *restrict di = dg_in + b * G;
        REAL *restrict dr_ = dg_rec + b * G;
        for (long j = 0; j < H; j++) {
            const long e = b * H + j;
            const REAL d = dh[e] + dy[e];
            const REAL r = gt[j], z = gt[H + j], cand = gt[2 * H + j];
            const REAL dn = d * (one - z) * (one - cand * cand);
            const REAL dr = dn * hw_n[e] * r * (one - r);
            const REAL dz = d * (h_prev[e] - cand) * z * (one - z);
            di[j] = dr;
            di[H + j] = dz;
            di[2 * H + j] = dn;
            dr_[j] = dr;
            dr_[H + j] = dz;
            dr_[2 * H + j] = dn * r;
            direct[e] = d * z;
        }
    }
}

/* ---------------------------------------------------------------- LayerNorm cells
 * norm(v) = (v - mean) / sqrt(var + eps) over a row; backward, for d = dL/d norm(v) and
 * s = 1/std: dL/dv = s (d - mean(d) - norm(v) mean(d norm(v))). Each row's statistics are
 * taken in the gate pass while the row is in cache. rstd holds 1/std per row: two values per
 * row for the LSTM (its product's, then c''s), one for the GRU. */

/* mean and 1/std of v[0:N]: two passes, so no cancellation, summed in double, so a float row
 * of values up to 3e38 (squares past float's range) keeps its statistics */
static inline void FR(row_stats)(const REAL *restrict v, long N, REAL *mean, REAL *rstd) {
    double s = 0, q = 0;
#pragma omp simd reduction(+ : s)
    for (long j = 0; j < N; j++) s += v[j];
    const double m = s / (double)N;
#pragma omp simd reduction(+ : q)
    for (long j = 0; j < N; j++) q += ((double)v[j] - m) * ((double)v[j] - m);
    *mean = (REAL)m;
    *rstd = (REAL)(1 / sqrt(q / (double)N + FASTRNN_LN_EPS));
}

/* d_v = s (d - mean(d) - hat mean(d hat)) for d = d_post * gain over a row of N */
static inline void FR(row_norm_bwd)(const REAL *restrict d_post, const REAL *restrict gain,
                                    const REAL *restrict hat, REAL rstd, REAL *restrict d_v,
                                    long N) {
    REAL s = 0, q = 0;
    /* d is stored and the second pass reads it back: gcc contracts a product into an add only
     * where the add is its sole use, so mean(d) sums the very d's that are then centred (a
     * fused d_post*gain - md there centred the exact product against the rounded ones' mean:
     * 1.2x the float32 bound at H = 1, where every centred d must be 0) */
#pragma omp simd reduction(+ : s, q)
    for (long j = 0; j < N; j++) {
        const REAL d = d_post[j] * gain[j];
        d_v[j] = d;
        s += d;
        q += d * hat[j];
    }
    const REAL md = s / (REAL)N, mq = q / (REAL)N;
    for (long j = 0; j < N; j++) d_v[j] = rstd * (d_v[j] - md - hat[j] * mq);
}

/* The input side's LayerNorm over R rows of N (the driver's, before the loop): a becomes
 * norm(a) (hat), out = gain hat (+ s1) (+ s2) (s1, s2 may be NULL), rstd[r] = 1/std. */
static inline void FR(layer_norm_rows)(REAL *restrict a, const REAL *restrict gain,
                                       const REAL *restrict s1, const REAL *restrict s2,
                                       REAL *restrict out, REAL *restrict rstd, long R,
                                       long N) {
    for (long r = 0; r < R; r++) {
        REAL *restrict v = a + r * N;
        REAL *restrict o = out + r * N;
        REAL m, s;
        FR(row_stats)(v, N, &m, &s);
        for (long j = 0; j < N; j++) {
            v[j] = (v[j] - m) * s;
            o[j] = gain[j] * v[j];
        }
        if (s1)
            for (long j = 0; j < N; j++) o[j] += s1[j];
        if (s2)
            for (long j = 0; j < N; j++) o[j] += s2[j];
        rstd[r] = s;
    }
}

/* Its backward: d_in from d_out, and d_gain += the column sums of d_out * hat. */
static inline void FR(layer_norm_rows_bwd)(const REAL *restrict d_out,
                                           const REAL *restrict gain,
                                           const REAL *restrict hat,
                                           const REAL *restrict rstd, REAL *restrict d_in,
                                           REAL *restrict d_gain, long R, long N) {
    for (long r = 0; r < R; r++) {
        FR(row_norm_bwd)(d_out + r * N, gain, hat + r * N, rstd[r], d_in + r * N, N);
        for (long j = 0; j < N; j++) d_gain[j] += d_out[r * N + j] * hat[r * N + j];
    }
}

/* out[j] += the sum over R rows of a[r, j] * b[r, j] (a LayerNorm gain's gradient) */
static inline void FR(column_dots)(const REAL *restrict a, const REAL *restrict b,
                                   REAL *restrict out, long R, long N) {
    for (long r = 0; r < R; r++)
        for (long j = 0; j < N; j++) out[j] += a[r * N + j] * b[r * N + j];
}

/* hw: in h W_hh^T, out the pre-activations (scratch); c: in c, out c' (un-normalised);
 * h: out o tanh(g_c norm(c') + b_c) */
static inline void FR(ln_lstm_fwd)(const REAL *restrict xw, REAL *restrict hw,
                                   const REAL *restrict g_hh, const REAL *restrict g_c,
                                   const REAL *restrict b_c, REAL *restrict c, REAL *restrict h,
                                   REAL *restrict gates, REAL *restrict hw_hat,
                                   REAL *restrict c_hat, REAL *restrict tanh_c,
                                   REAL *restrict rstd, long n, long H) {
    const long G = 4 * H;
    for (long b = 0; b < n; b++) {
        const REAL *restrict x = xw + b * G;
        REAL *restrict u = hw + b * G;
        REAL *restrict hat = hw_hat + b * G;
        REAL *restrict gt = gates + b * G;
        REAL *restrict cb = c + b * H;
        REAL m, r, mc, rc;
        FR(row_stats)(u, G, &m, &r);
        for (long j = 0; j < G; j++) {
            hat[j] = (u[j] - m) * r;
            u[j] = x[j] + g_hh[j] * hat[j];
        }
        for (long j = 0; j < H; j++) {
            const REAL i = FR(sigm)(u[j]);
            const REAL f = FR(sigm)(u[H + j]);
            const REAL g = FR(tanh)(u[2 * H + j]);
            gt[j] = i;
            gt[H + j] = f;
            gt[2 * H + j] = g;
            gt[3 * H + j] = FR(sigm)(u[3 * H + j]);
            cb[j] = f * cb[j] + i * g;
        }
        FR(row_stats)(cb, H, &mc, &rc);
        for (long j = 0; j < H; j++) {
            const REAL ch = (cb[j] - mc) * rc;
            const REAL tc = FR(tanh)(g_c[j] * ch + b_c[j]);
            c_hat[b * H + j] = ch;
            tanh_c[b * H + j] = tc;
            h[b * H + j] = gt[3 * H + j] * tc;
        }
        rstd[2 * b] = r;
        rstd[2 * b + 1] = rc;
    }
}

/* dh: the gradient reaching the step's output (without dy); dc: in dc_n of the step, out dc
 * of the previous one; writes dg (the pre-activations'), d_hw (h W_hh^T's), d_cn (that of
 * g_c norm(c') + b_c) */
static inline void FR(ln_lstm_bwd)(const REAL *restrict dh, const REAL *restrict dy,
                                   const REAL *restrict gates, const REAL *restrict c_prev,
                                   const REAL *restrict hw_hat, const REAL *restrict c_hat,
                                   const REAL *restrict tanh_c, const REAL *restrict rstd,
                                   const REAL *restrict g_hh, const REAL *restrict g_c,
                                   REAL *restrict dc, REAL *restrict dg, REAL *restrict d_hw,
                                   REAL *restrict d_cn, REAL *restrict d_c, long n, long H) {
    const long G = 4 * H;
    const REAL one = (REAL)1;
    for (long b = 0; b < n; b++) {
        const REAL *restrict gt = gates + b * G;
        REAL *restrict dgb = dg + b * G;
        const long e0 = b * H;
        for (long j = 0; j < H; j++) {
            const REAL tc = tanh_c[e0 + j];
            d_cn[e0 + j] = (dh[e0 + j] + dy[e0 + j]) * gt[3 * H + j] * (one - tc * tc);
        }
        FR(row_norm_bwd)(d_cn + e0, g_c, c_hat + e0, rstd[2 * b + 1], d_c, H);
        for (long j = 0; j < H; j++) {
            const long e = e0 + j;
            const REAL i = gt[j], f = gt[H + j], g = gt[2 * H + j], o = gt[3 * H + j];
            const REAL dc_new = dc[e] + d_c[j];
            dgb[j] = dc_new * g * i * (one - i);
            dgb[H + j] = dc_new * c_prev[e] * f * (one - f);
            dgb[2 * H + j] = dc_new * i * (one - g * g);
            dgb[3 * H + j] = (dh[e] + dy[e]) * tanh_c[e] * o * (one - o);
            dc[e] = dc_new * f;
        }
        FR(row_norm_bwd)(dgb, g_hh, hw_hat + b * G, rstd[2 * b], d_hw + b * G, G);
    }
}

/* hw: in h W_hh^T, out g_hh norm(h W_hh^T) (scratch); then the GRU's gate pass adds b_hh */
static inline void FR(ln_gru_fwd)(const REAL *restrict xw, REAL *restrict hw,
                                  const REAL *restrict g_hh, const REAL *restrict b_hh,
                                  REAL *restrict h, REAL *restrict gates, REAL *restrict hw_n,
                                  REAL *restrict hw_hat, REAL *restrict rstd, long n, long H) {
    const long G = 3 * H;
    for (long b = 0; b < n; b++) {
        REAL *restrict u = hw + b * G;
        REAL *restrict hat = hw_hat + b * G;
        REAL m, r;
        FR(row_stats)(u, G, &m, &r);
        for (long j = 0; j < G; j++) {
            hat[j] = (u[j] - m) * r;
            u[j] = g_hh[j] * hat[j];
        }
        rstd[b] = r;
    }
    FR(gru_fwd)(xw, hw, b_hh, h, gates, hw_n, n, H);
}

/* the GRU's backward (dg_in, dg_rec = d gh, direct), then d_hw = d(h W_hh^T) per row */
static inline void FR(ln_gru_bwd)(const REAL *restrict dh, const REAL *restrict dy,
                                  const REAL *restrict h_prev, const REAL *restrict gates,
                                  const REAL *restrict hw_n, const REAL *restrict hw_hat,
                                  const REAL *restrict rstd, const REAL *restrict g_hh,
                                  REAL *restrict dg_in, REAL *restrict dg_rec,
                                  REAL *restrict d_hw, REAL *restrict direct, long n, long H) {
    const long G = 3 * H;
    FR(gru_bwd)(dh, dy, h_prev, gates, hw_n, dg_in, dg_rec, direct, n, H);
    for (long b = 0; b < n; b++)
        FR(row_norm_bwd)(dg_rec + b * G, g_hh, hw_hat + b * G, rstd[b], d_hw + b * G, G);
}

#undef FR
#undef FR_CAT
#undef FR_CAT2
