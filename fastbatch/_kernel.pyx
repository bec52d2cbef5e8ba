# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The hot loop: shuffled index batching and a fused forward / loss / backward / update.

``train_steps`` runs many steps per call with the GIL released. Every buffer it
needs is allocated once per call; a step allocates nothing and runs no Python.
All checking happens in Python before the call (see ``trainer.py``); the kernel
reports a non-finite loss through its status and the Trainer raises.
"""
import numpy as np

from libc.math cimport exp, log, log1p, sqrt, tanh, fabs, isfinite
from libc.stdint cimport uint64_t, int64_t, uint8_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport sgemm, dgemm

ctypedef fused floating:
    float
    double

cdef extern from *:
    """
    #include <time.h>
    static double fb_now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    }
    /* volatile: another thread sets the stop flag while the loop runs */
    static int fb_read_flag(const unsigned char *p) { return *(volatile const unsigned char *)p; }
    """
    double fb_now() noexcept nogil
    int fb_read_flag(const uint8_t *p) noexcept nogil

# status codes, shared with the numpy backend
cdef enum:
    DONE = 0
    STOPPED = 1
    NONFINITE = 2
    TIME_UP = 3

# below this many multiply-adds a gemm call costs more than it saves
cdef enum:
    BLAS_MIN_MACS = 8192

cdef uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL


# ---------------------------------------------------------------- record order

cdef inline uint64_t mix64(uint64_t z) noexcept nogil:
    """splitmix64's finaliser."""
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef void epoch_order_c(int64_t n, uint64_t seed, uint64_t epoch, bint shuffle, int64_t *order,
                        uint64_t *keys, uint64_t *keys2, int64_t *order2) noexcept nogil:
    """order := the records sorted by key mix64(stream + (i+1) * golden), ties by index (= schedule.epoch_order)."""
    cdef int64_t i, j, pos
    cdef uint64_t stream, key
    cdef int64_t counts[256]
    cdef int shift
    for i in range(n):
        order[i] = i
    if not shuffle or n < 2:
        return
    stream = mix64(mix64(seed) ^ epoch)
    for i in range(n):
        keys[i] = mix64(stream + <uint64_t>(i + 1) * GOLDEN)
    if n <= 32:  # insertion sort (stable) for tiny epochs
        for i in range(1, n):
            key = keys[i]
            j = i - 1
            while j >= 0 and keys[j] > key:
                keys[j + 1] = keys[j]
                order[j + 1] = order[j]
                j -= 1
            keys[j + 1] = key
            order[j + 1] = i
        return
    # LSD radix sort, 8 bits a pass: stable, so ties keep index order
    cdef uint64_t *ksrc = keys
    cdef uint64_t *kdst = keys2
    cdef int64_t *osrc = order
    cdef int64_t *odst = order2
    cdef uint64_t *kt
    cdef int64_t *ot
    for shift in range(0, 64, 8):
        memset(counts, 0, sizeof(counts))
        for i in range(n):
            counts[(ksrc[i] >> shift) & 255] += 1
        pos = 0
        for j in range(256):
            i = counts[j]
            counts[j] = pos
            pos += i
        for i in range(n):
            j = (ksrc[i] >> shift) & 255
            kdst[counts[j]] = ksrc[i]
            odst[counts[j]] = osrc[i]
            counts[j] += 1
        kt = ksrc; ksrc = kdst; kdst = kt
        ot = osrc; osrc = odst; odst = ot
    # 8 passes: the result is back in `order`


def epoch_order(int64_t n, uint64_t seed, uint64_t epoch, bint shuffle=True):
    """The kernel's record order, for tests: must equal ``fastbatch.schedule.epoch_order``."""
    out = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] o = out
    cdef uint64_t *keys = <uint64_t *> malloc(2 * max(n, 1) * sizeof(uint64_t))
    cdef int64_t *order2 = <int64_t *> malloc(max(n, 1) * sizeof(int64_t))
    if keys == NULL or order2 == NULL:
        free(keys); free(order2)
        raise MemoryError()
    with nogil:
        epoch_order_c(n, seed, epoch, shuffle, &o[0], keys, keys + n, order2)
    free(keys); free(order2)
    return out


# ---------------------------------------------------------------- dense algebra (row-major)

cdef inline void gemm(char transa, char transb, int m, int n, int k, floating alpha,
                      floating *a, int lda, floating *b, int ldb, floating beta,
                      floating *c, int ldc) noexcept nogil:
    """Column-major C := alpha * op(A) @ op(B) + beta * C (BLAS)."""
    if floating is float:
        sgemm(&transa, &transb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc)
    else:
        dgemm(&transa, &transb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc)


cdef void matmul_bias(floating *A, floating *W, floating *bias, floating *Z,
                      int rows, int n_in, int n_out) noexcept nogil:
    """Z := A @ W + bias   (A: rows x n_in, W: n_in x n_out)."""
    cdef int r, i, j
    cdef floating a
    cdef floating *z
    cdef floating *w
    for r in range(rows):
        z = Z + r * n_out
        for j in range(n_out):
            z[j] = bias[j]
    if <long>rows * n_in * n_out >= BLAS_MIN_MACS:
        gemm(c'N', c'N', n_out, rows, n_in, <floating>1, W, n_out, A, n_in, <floating>1, Z, n_out)
        return
    for r in range(rows):
        z = Z + r * n_out
        for i in range(n_in):
            a = A[r * n_in + i]
            w = W + i * n_out
            for j in range(n_out):
                z[j] += a * w[j]


cdef void grad_weights(floating *A, floating *D, floating *gW, floating *gb,
                       int rows, int n_in, int n_out) noexcept nogil:
    """gW := A.T @ D,  gb := sum of D's rows."""
    cdef int r, i, j
    cdef floating a
    cdef floating *d
    cdef floating *g
    memset(gb, 0, n_out * sizeof(floating))
    for r in range(rows):
        d = D + r * n_out
        for j in range(n_out):
            gb[j] += d[j]
    if <long>rows * n_in * n_out >= BLAS_MIN_MACS:
        gemm(c'N', c'T', n_out, n_in, rows, <floating>1, D, n_out, A, n_in, <floating>0, gW, n_out)
        return
    memset(gW, 0, n_in * n_out * sizeof(floating))
    for r in range(rows):
        d = D + r * n_out
        for i in range(n_in):
            a = A[r * n_in + i]
            g = gW + i * n_out
            for j in range(n_out):
                g[j] += a * d[j]


cdef void back_through(floating *D, floating *W, floating *out, int rows, int n_in, int n_out) noexcept nogil:
    """out := D @ W.T   (D: rows x n_out, W: n_in x n_out)."""
    cdef int r, i, j
    cdef floating s
    cdef floating *d
    cdef floating *w
    if <long>rows * n_in * n_out >= BLAS_MIN_MACS:
        gemm(c'T', c'N', n_in, rows, n_out, <floating>1, W, n_out, D, n_out, <floating>0, out, n_in)
        return
    for r in range(rows):
        d = D + r * n_out
        for i in range(n_in):
            w = W + i * n_out
            s = 0
            for j in range(n_out):
                s += d[j] * w[j]
            out[r * n_in + i] = s


# ---------------------------------------------------------------- activations, forward next to backward

cdef void activate(int code, floating *Z, long size) noexcept nogil:
    """Z := act(Z) in place: 0 identity, 1 relu, 2 tanh, 3 sigmoid."""
    cdef long i
    cdef double e
    if code == 1:
        for i in range(size):
            Z[i] = Z[i] if Z[i] > 0 else 0
    elif code == 2:
        for i in range(size):
            Z[i] = tanh(Z[i])
    elif code == 3:
        for i in range(size):
            e = exp(-fabs(Z[i]))
            Z[i] = 1 / (1 + e) if Z[i] >= 0 else e / (1 + e)


cdef void activation_backward(int code, floating *A, floating *D, long size) noexcept nogil:
    """D := D * act'(z), written with the activation A = act(z)."""
    cdef long i
    if code == 1:
        for i in range(size):
            D[i] = D[i] if A[i] > 0 else 0
    elif code == 2:
        for i in range(size):
            D[i] = D[i] * (1 - A[i] * A[i])
    elif code == 3:
        for i in range(size):
            D[i] = D[i] * (A[i] * (1 - A[i]))


# ---------------------------------------------------------------- losses: mean over the batch, and d loss / d logits

cdef double loss_grad(int code, floating *Zl, floating *T, int64_t *labels, int64_t *idx,
                      floating *D, int rows, int k) noexcept nogil:
    """Mean loss of the batch; D := its gradient w.r.t. the logits Zl (rows x k)."""
    cdef int r, j
    cdef double total = 0, z, y, diff, zmax, s, e, scale
    cdef floating *zr
    cdef floating *dr
    cdef floating *tr
    if code == 0:  # mse, mean over all rows * k elements
        scale = 2.0 / (<double>rows * k)
        for r in range(rows):
            zr = Zl + r * k; dr = D + r * k; tr = T + idx[r] * k
            for j in range(k):
                diff = <double>(zr[j] - tr[j])
                total += diff * diff
                dr[j] = <floating>((zr[j] - tr[j]) * <floating>scale)
        return total / (<double>rows * k)
    scale = 1.0 / rows
    if code == 1:  # binary cross-entropy with logits
        for r in range(rows):
            z = Zl[r]; y = T[idx[r]]
            e = exp(-fabs(z))
            total += (z if z > 0 else 0) - z * y + log1p(e)
            s = 1 / (1 + e) if z >= 0 else e / (1 + e)
            D[r] = <floating>((s - y) * scale)
        return total * scale
    for r in range(rows):  # cross-entropy: softmax over k logits
        zr = Zl + r * k; dr = D + r * k
        zmax = zr[0]
        for j in range(1, k):
            if zr[j] > zmax:
                zmax = zr[j]
        s = 0
        for j in range(k):
            e = exp(zr[j] - zmax)
            dr[j] = <floating>e
            s += e
        total += log(s) - (zr[labels[idx[r]]] - zmax)
        for j in range(k):
            dr[j] = <floating>((dr[j] / s) * scale)
        dr[labels[idx[r]]] -= <floating>scale
    return total * scale


# ---------------------------------------------------------------- optimizers, as torch.optim does them

cdef void update(int opt, floating *p, floating *g, floating *m, floating *v, long size,
                 double lr, long t, double momentum, bint nesterov, double beta1, double beta2,
                 double eps, double wd) noexcept nogil:
    """p := p - lr * direction(g), for sgd (0), adam (1) and adamw (2); t counts from 1."""
    cdef long i
    cdef floating gi
    cdef floating f_lr = <floating>lr, f_wd = <floating>wd, f_mom = <floating>momentum
    cdef floating f_b1 = <floating>(1 - beta1), f_b2 = <floating>beta2, f_1b2 = <floating>(1 - beta2)
    cdef floating f_eps = <floating>eps, step_size, bc2, decay
    if opt == 0:
        if momentum == 0:
            for i in range(size):
                gi = g[i] + f_wd * p[i] if wd != 0 else g[i]
                p[i] -= f_lr * gi
            return
        for i in range(size):
            gi = g[i] + f_wd * p[i] if wd != 0 else g[i]
            m[i] = gi if t == 1 else f_mom * m[i] + gi
            gi = gi + f_mom * m[i] if nesterov else m[i]
            p[i] -= f_lr * gi
        return
    step_size = <floating>(lr / (1 - beta1 ** t))
    bc2 = <floating>sqrt(1 - beta2 ** t)
    decay = <floating>(1 - lr * wd)
    for i in range(size):
        if opt == 2:
            p[i] *= decay
            gi = g[i]
        else:
            gi = g[i] + f_wd * p[i] if wd != 0 else g[i]
        m[i] += (gi - m[i]) * f_b1
        v[i] = v[i] * f_b2 + gi * gi * f_1b2
        p[i] -= step_size * (m[i] / (sqrt(v[i]) / bc2 + f_eps))


# ---------------------------------------------------------------- the loop

cdef inline long total_params(int64_t *sizes, int n_layers) noexcept nogil:
    cdef long total = 0
    cdef int l
    for l in range(n_layers):
        total += sizes[l] * sizes[l + 1] + sizes[l + 1]
    return total



cdef int run(floating *X, floating *T, int64_t *labels, int64_t *sizes, int n_layers,
             floating *theta, floating *m, floating *v, floating *G, double *lrs, double *losses,
             int64_t start_step, int64_t n_steps, int64_t opt_t, int64_t n, int64_t batch_size,
             int64_t spe, bint shuffle, uint64_t seed, int act, int loss, int opt,
             double momentum, bint nesterov, double beta1, double beta2, double eps, double wd,
             const uint8_t *stop, double max_seconds, int64_t check_every,
             floating **acts, floating *D0, floating *D1,
             int64_t *order, uint64_t *keys, uint64_t *keys2, int64_t *order2,
             int64_t *done) noexcept nogil:
    cdef int64_t i, step, epoch, k, epoch_now = -1, r, start
    cdef int l, rows, n_in, n_out, n_feat = <int>sizes[0], k_out = <int>sizes[n_layers]
    cdef long off, n_params = total_params(sizes, n_layers)
    cdef int64_t B = batch_size if batch_size < n else n
    cdef double deadline = fb_now() + max_seconds
    cdef double step_loss
    cdef floating *D
    cdef floating *Dn
    cdef floating *tmp
    cdef int64_t *idx
    for i in range(n_steps):
        done[0] = i
        if fb_read_flag(stop):
            return STOPPED
        if i > 0 and i % check_every == 0 and fb_now() > deadline:
            return TIME_UP
        step = start_step + i
        epoch = step // spe
        k = step - epoch * spe
        if epoch != epoch_now:
            epoch_order_c(n, seed, <uint64_t>epoch, shuffle, order, keys, keys2, order2)
            epoch_now = epoch
        start = k * B
        rows = <int>(B if start + B <= n else n - start)
        idx = order + start

        # forward: gather the batch's rows, then layer by layer
        for r in range(rows):
            memcpy(acts[0] + r * n_feat, X + idx[r] * n_feat, n_feat * sizeof(floating))
        off = 0
        for l in range(n_layers):
            n_in = <int>sizes[l]; n_out = <int>sizes[l + 1]
            matmul_bias(acts[l], theta + off, theta + off + n_in * n_out, acts[l + 1], rows, n_in, n_out)
            if l < n_layers - 1:
                activate(act, acts[l + 1], <long>rows * n_out)
            off += n_in * n_out + n_out
        step_loss = loss_grad(loss, acts[n_layers], T, labels, idx, D0, rows, k_out)
        if not isfinite(step_loss):
            return NONFINITE
        losses[i] = step_loss

        # backward: the delta goes through W before any update
        D = D0; Dn = D1
        for l in range(n_layers - 1, -1, -1):
            n_in = <int>sizes[l]; n_out = <int>sizes[l + 1]
            off -= n_in * n_out + n_out
            grad_weights(acts[l], D, G + off, G + off + n_in * n_out, rows, n_in, n_out)
            if l > 0:
                back_through(D, theta + off, Dn, rows, n_in, n_out)
                activation_backward(act, acts[l], Dn, <long>rows * n_in)
                tmp = D; D = Dn; Dn = tmp

        update(opt, theta, G, m, v, n_params, lrs[i], opt_t + i + 1,
               momentum, nesterov, beta1, beta2, eps, wd)
    done[0] = n_steps
    return DONE


def train_steps(const floating[:, ::1] X, const floating[:, ::1] targets, const int64_t[::1] labels,
                const int64_t[::1] sizes,
                floating[::1] theta, floating[::1] m, floating[::1] v, const double[::1] lrs, double[::1] losses,
                int64_t start_step, int64_t n_steps, int64_t opt_t,
                int64_t batch_size, int64_t steps_per_epoch, bint shuffle, uint64_t seed,
                int activation, int loss, int optimizer, double momentum, bint nesterov,
                double beta1, double beta2, double eps, double weight_decay,
                const uint8_t[::1] stop, double max_seconds):
    """Run up to ``n_steps`` steps from global step ``start_step``; return (steps done, status).

    Same contract as ``_numpy_backend.train_steps``. Inputs are trusted: the
    Trainer has checked every shape, range and dtype before calling.
    """
    cdef int64_t n = X.shape[0]
    cdef int n_layers = <int>sizes.shape[0] - 1
    cdef int64_t B = batch_size if batch_size < n else n
    cdef int64_t widest = 0, l, macs = 0, check_every, done = 0
    cdef int status
    for l in range(n_layers + 1):
        widest = max(widest, sizes[l])
    for l in range(n_layers):
        macs += sizes[l] * sizes[l + 1]
    # look at the clock about every 50 us of work, not every step
    check_every = max(1, 50000 // max(1, 6 * B * macs // 1000 + 1))
    if n_steps <= 0:
        return 0, DONE

    dt = np.float32 if floating is float else np.float64
    acts_arrays = [np.empty(B * sizes[l], dtype=dt) for l in range(n_layers + 1)]
    cdef floating **acts = <floating **> malloc((n_layers + 1) * sizeof(floating *))
    cdef floating[::1] buf
    for l in range(n_layers + 1):
        buf = acts_arrays[l]
        acts[l] = &buf[0]
    cdef floating[::1] D0 = np.empty(B * widest, dtype=dt)
    cdef floating[::1] D1 = np.empty(B * widest, dtype=dt)
    cdef floating[::1] G = np.empty(theta.shape[0], dtype=dt)
    cdef int64_t[::1] order = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] order2 = np.empty(n, dtype=np.int64)
    cdef uint64_t[::1] keys = np.empty(2 * n, dtype=np.uint64)
    # read-only inputs (e.g. a memory-mapped X) are only ever read through these pointers
    cdef floating *T = <floating *> &targets[0, 0] if targets.shape[0] > 0 else NULL
    cdef int64_t *lab = <int64_t *> &labels[0] if labels.shape[0] > 0 else NULL
    try:
        with nogil:
            status = run(<floating *> &X[0, 0], T, lab, <int64_t *> &sizes[0], n_layers, &theta[0], &m[0],
                         &v[0], &G[0], <double *> &lrs[0], &losses[0], start_step, n_steps, opt_t, n, batch_size,
                         steps_per_epoch, shuffle, seed, activation, loss, optimizer,
                         momentum, nesterov, beta1, beta2, eps, weight_decay,
                         &stop[0], max_seconds, check_every, acts, &D0[0], &D1[0],
                         &order[0], &keys[0], &keys[n], &order2[0], &done)
    finally:
        free(acts)
    return done, status
