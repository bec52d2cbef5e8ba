# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The hot loop: shuffled index batching and a fused forward / loss / backward / update.

``train_steps`` runs many steps per call with the GIL released. Every buffer it
needs is allocated once per call; a step allocates nothing and runs no Python.
All checking happens in Python before the call (see ``trainer.py``); the kernel
reports a non-finite loss through its status and the Trainer raises.
"""
import numpy as np

from libc.math cimport exp, expf, log, logf, log1p, sqrt, tanh, fabs, isfinite
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
    #include <errno.h>
    #include <unistd.h>
    /* buf := n bytes of file fd at offset off; 0, or -1 on an error or end of file */
    static int fb_read_at(int fd, void *buf, size_t n, long long off) {
        size_t done = 0;
        while (done < n) {
            ssize_t got = pread(fd, (char *)buf + done, n - done, (off_t)(off + (long long)done));
            if (got > 0) { done += (size_t)got; continue; }
            if (got < 0 && errno == EINTR) continue;
            return -1;
        }
        return 0;
    }
    """
    double fb_now() noexcept nogil
    int fb_read_flag(const uint8_t *p) noexcept nogil
    int fb_read_at(int fd, void *buf, size_t n, long long off) noexcept nogil

# status codes, shared with the numpy backend
cdef enum:
    DONE = 0
    STOPPED = 1
    NONFINITE = 2
    TIME_UP = 3
    READ_ERROR = 4

# below this many multiply-adds a gemm call costs more than it saves
cdef enum:
    BLAS_MIN_MACS = 32768

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
    for i in range(n):
        order[i] = i
    if not shuffle or n < 2:
        return
    stream = mix64(mix64(seed) ^ epoch)
    for i in range(n):
        keys[i] = mix64(stream + <uint64_t>(i + 1) * GOLDEN)
    if n > 32:  # bucket the keys by their top bits first: they are uniform, so buckets hold ~1 record
        bucket_by_top_bits(n, keys, order, keys2, order2)
    # insertion sort (stable): all of a tiny epoch, else only within buckets
    for i in range(1, n):
        key = keys[i]
        if keys[i - 1] <= key:
            continue
        j = i - 1
        pos = order[i]
        while j >= 0 and keys[j] > key:
            keys[j + 1] = keys[j]
            order[j + 1] = order[j]
            j -= 1
        keys[j + 1] = key
        order[j + 1] = pos


cdef void bucket_by_top_bits(int64_t n, uint64_t *keys, int64_t *order, uint64_t *keys2,
                             int64_t *order2) noexcept nogil:
    """Stable counting sort of (keys, order) by the keys' top floor(log2 n) bits (2 <= n)."""
    cdef int bits = 0
    cdef int64_t i, pos, c, n_buckets
    cdef uint64_t b
    while (<int64_t>2 << bits) <= n and bits < 62:
        bits += 1
    n_buckets = <int64_t>1 << bits  # <= n: order2 holds the counts
    cdef int64_t *counts = order2
    memset(counts, 0, n_buckets * sizeof(int64_t))
    for i in range(n):
        counts[keys[i] >> (64 - bits)] += 1
    pos = 0
    for i in range(n_buckets):
        c = counts[i]
        counts[i] = pos
        pos += c
    for i in range(n):  # order[i] is still i: each record's index goes along with its key
        b = keys[i] >> (64 - bits)
        keys2[counts[b]] = keys[i]
        order[counts[b]] = i
        counts[b] += 1
    memcpy(keys, keys2, n * sizeof(uint64_t))


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

cdef extern from "_kernel_helpers.h" nogil:
    void fb_ab_f(const float *A, const float *B, const float *bias, float *C, int rows, int k, int n)
    void fb_ab_d(const double *A, const double *B, const double *bias, double *C, int rows, int k, int n)
    void fb_abt_f(const float *A, const float *B, const float *bias, float *C, int rows, int k, int n)
    void fb_abt_d(const double *A, const double *B, const double *bias, double *C, int rows, int k, int n)
    void fb_atb_acc_f(const float *A, const float *B, float *C, int rows, int p, int q)
    void fb_atb_acc_d(const double *A, const double *B, double *C, int rows, int p, int q)
    void fb_transpose_f(const float *B, float *Bt, int k, int n)
    void fb_transpose_d(const double *B, double *Bt, int k, int n)
    void fb_colsum_f(const float *D, float *out, int rows, int n)
    void fb_colsum_d(const double *D, double *out, int rows, int n)


cdef inline void small_ab(floating *A, floating *B, floating *bias, floating *C, int rows, int k, int n) noexcept nogil:
    """C := A @ B (+ bias)   (A: rows x k, B: k x n): register-blocked loops along n."""
    if floating is float:
        fb_ab_f(A, B, bias, C, rows, k, n)
    else:
        fb_ab_d(A, B, bias, C, rows, k, n)


cdef inline void small_abt(floating *A, floating *B, floating *bias, floating *C, int rows, int k, int n) noexcept nogil:
    """C := A @ B.T (+ bias)   (A: rows x k, B: n x k): dot products along k."""
    if floating is float:
        fb_abt_f(A, B, bias, C, rows, k, n)
    else:
        fb_abt_d(A, B, bias, C, rows, k, n)


cdef inline void small_atb(floating *A, floating *B, floating *C, int rows, int p, int q) noexcept nogil:
    """C := A.T @ B   (A: rows x p, B: rows x q, C: p x q)."""
    memset(C, 0, <long>p * q * sizeof(floating))
    if floating is float:
        fb_atb_acc_f(A, B, C, rows, p, q)
    else:
        fb_atb_acc_d(A, B, C, rows, p, q)


cdef inline void transpose(floating *B, floating *Bt, int k, int n) noexcept nogil:
    """Bt := B.T   (B: k x n)."""
    if floating is float:
        fb_transpose_f(B, Bt, k, n)
    else:
        fb_transpose_d(B, Bt, k, n)


cdef inline void gemm(char transa, char transb, int m, int n, int k, floating alpha,
                      floating *a, int lda, floating *b, int ldb, floating beta,
                      floating *c, int ldc) noexcept nogil:
    """Column-major C := alpha * op(A) @ op(B) + beta * C (BLAS)."""
    if floating is float:
        sgemm(&transa, &transb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc)
    else:
        dgemm(&transa, &transb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc)


cdef inline void column_sums(floating *D, floating *out, int rows, int n) noexcept nogil:
    """out := the sum of D's rows   (D: rows x n)."""
    if floating is float:
        fb_colsum_f(D, out, rows, n)
    else:
        fb_colsum_d(D, out, rows, n)


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
    cdef floating fmax, fs, fscale = <floating>scale
    for r in range(rows):  # cross-entropy: softmax over k logits, in the network's precision
        zr = Zl + r * k; dr = D + r * k
        fmax = zr[0]
        for j in range(1, k):
            if zr[j] > fmax:
                fmax = zr[j]
        fs = 0
        for j in range(k):
            dr[j] = expf(zr[j] - fmax) if floating is float else exp(zr[j] - fmax)
            fs += dr[j]
        total += (logf(fs) if floating is float else log(fs)) - (zr[labels[idx[r]]] - fmax)
    # a second pass re-adds each row (the same sum): reading back a row just written
    # would stall on store forwarding for every record
    for r in range(rows):
        dr = D + r * k
        fs = 0
        for j in range(k):
            fs += dr[j]
        fs = fscale / fs
        for j in range(k):
            dr[j] *= fs
        dr[labels[idx[r]]] -= fscale
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

cdef inline bint use_blas(int rows, int n_in, int n_out) noexcept nogil:
    """Whether a layer's products go to BLAS gemm rather than the small loops."""
    return <long>rows * n_in * n_out >= BLAS_MIN_MACS


cdef inline bint out_major(int n_in, int n_out) noexcept nogil:
    """Narrow layers (few outputs) run the small loops on W.T, so they vectorise along n_in."""
    return n_out < 8 and n_in > n_out


cdef int read_rows(int fd, int64_t data_offset, const int64_t *idx, int rows, int n_feat,
                   floating *out) noexcept nogil:
    """out[r] := row idx[r] of the file fd (rows start at data_offset); 0, or -1 on a read error.

    Kept out of ``run``: an opaque call inside the step loop made GCC compile the whole
    loop more cautiously (2.4x slower steps on the seed net, even with no file).
    """
    cdef int r
    cdef int64_t row_bytes = n_feat * <int64_t>sizeof(floating)
    for r in range(rows):
        if fb_read_at(fd, out + <int64_t>r * n_feat, row_bytes, data_offset + idx[r] * row_bytes) != 0:
            return -1
    return 0


cdef int run(floating *X, floating *T, int64_t *labels, int64_t *sizes, int n_layers,
             floating *theta, floating *m, floating *v, floating *G, double *lrs, double *losses,
             int64_t start_step, int64_t n_steps, int64_t opt_t, int64_t n, int64_t batch_size,
             int64_t spe, bint shuffle, uint64_t seed, int act, int loss, int opt,
             double momentum, bint nesterov, double beta1, double beta2, double eps, double wd,
             const uint8_t *stop, double max_seconds, int64_t check_every,
             floating **acts, floating *D0, floating *D1, floating *WT, floating *GT,
             int64_t *order_epoch, int64_t *order, uint64_t *keys, uint64_t *keys2, int64_t *order2,
             int fd, int64_t data_offset, int64_t *done) noexcept nogil:
    # order holds the record order of epoch order_epoch[0] (-1: none yet), kept across calls
    cdef int64_t i, step, epoch, k, epoch_now = order_epoch[0], r, start
    cdef int l, rows, n_in, n_out, n_feat = <int>sizes[0], k_out = <int>sizes[n_layers]
    cdef long off, n_w
    cdef int64_t B = batch_size if batch_size < n else n
    cdef double deadline = fb_now() + max_seconds
    cdef double step_loss
    # momentum-free SGD without decay: a BLAS layer's gemm writes W -= lr * A.T @ D in place
    cdef bint plain_sgd = opt == 0 and momentum == 0 and wd == 0
    cdef floating *D
    cdef floating *Dn
    cdef floating *tmp
    cdef floating *W
    cdef floating *A
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
            order_epoch[0] = epoch
        start = k * B
        rows = <int>(B if start + B <= n else n - start)
        idx = order + start

        # forward: gather the batch's rows (from memory, or read from the file fd), then layer by layer
        if fd >= 0:
            if read_rows(fd, data_offset, idx, rows, n_feat, acts[0]) != 0:
                return READ_ERROR
        else:
            for r in range(rows):
                memcpy(acts[0] + r * n_feat, X + idx[r] * n_feat, n_feat * sizeof(floating))
        off = 0
        for l in range(n_layers):
            n_in = <int>sizes[l]; n_out = <int>sizes[l + 1]
            n_w = <long>n_in * n_out
            W = theta + off
            if use_blas(rows, n_in, n_out):
                for r in range(rows):
                    memcpy(acts[l + 1] + <long>r * n_out, W + n_w, n_out * sizeof(floating))
                gemm(c'N', c'N', n_out, rows, n_in, <floating>1, W, n_out, acts[l], n_in,
                     <floating>1, acts[l + 1], n_out)
            elif out_major(n_in, n_out):
                transpose(W, WT + off, n_in, n_out)
                small_abt(acts[l], WT + off, W + n_w, acts[l + 1], rows, n_in, n_out)
            else:
                small_ab(acts[l], W, W + n_w, acts[l + 1], rows, n_in, n_out)
            if l < n_layers - 1:
                activate(act, acts[l + 1], <long>rows * n_out)
            off += n_w + n_out
        step_loss = loss_grad(loss, acts[n_layers], T, labels, idx, D0, rows, k_out)
        if not isfinite(step_loss):
            return NONFINITE
        losses[i] = step_loss

        # backward: the delta goes through W before W changes
        D = D0; Dn = D1
        for l in range(n_layers - 1, -1, -1):
            n_in = <int>sizes[l]; n_out = <int>sizes[l + 1]
            n_w = <long>n_in * n_out
            off -= n_w + n_out
            W = theta + off; A = acts[l]
            column_sums(D, G + off + n_w, rows, n_out)
            if use_blas(rows, n_in, n_out):
                if l > 0:  # Dn := D @ W.T
                    gemm(c'T', c'N', n_in, rows, n_out, <floating>1, W, n_out, D, n_out, <floating>0, Dn, n_in)
                if plain_sgd:  # W := W - lr * A.T @ D
                    gemm(c'N', c'T', n_out, n_in, rows, -<floating>lrs[i], D, n_out, A, n_in, <floating>1, W, n_out)
                else:  # gW := A.T @ D
                    gemm(c'N', c'T', n_out, n_in, rows, <floating>1, D, n_out, A, n_in, <floating>0, G + off, n_out)
            elif out_major(n_in, n_out):
                small_atb(D, A, GT, rows, n_out, n_in)
                transpose(GT, G + off, n_out, n_in)
                if l > 0:
                    small_ab(D, WT + off, NULL, Dn, rows, n_out, n_in)
            else:
                small_atb(A, D, G + off, rows, n_in, n_out)
                if l > 0:
                    small_abt(D, W, NULL, Dn, rows, n_out, n_in)
            if l > 0:
                activation_backward(act, acts[l], Dn, <long>rows * n_in)
                tmp = D; D = Dn; Dn = tmp

        for l in range(n_layers):
            n_in = <int>sizes[l]; n_out = <int>sizes[l + 1]
            n_w = <long>n_in * n_out
            if plain_sgd and use_blas(rows, n_in, n_out):  # W is done: only b is left
                update(opt, theta + off + n_w, G + off + n_w, m + off + n_w, v + off + n_w, n_out,
                       lrs[i], opt_t + i + 1, momentum, nesterov, beta1, beta2, eps, wd)
            else:
                update(opt, theta + off, G + off, m + off, v + off, n_w + n_out,
                       lrs[i], opt_t + i + 1, momentum, nesterov, beta1, beta2, eps, wd)
            off += n_w + n_out
    done[0] = n_steps
    return DONE


def train_steps(const floating[:, ::1] X, const floating[:, ::1] targets, const int64_t[::1] labels,
                const int64_t[::1] sizes,
                floating[::1] theta, floating[::1] m, floating[::1] v, const double[::1] lrs, double[::1] losses,
                int64_t start_step, int64_t n_steps, int64_t opt_t,
                int64_t batch_size, int64_t steps_per_epoch, bint shuffle, uint64_t seed,
                int activation, int loss, int optimizer, double momentum, bint nesterov,
                double beta1, double beta2, double eps, double weight_decay,
                const uint8_t[::1] stop, double max_seconds, int64_t[::1] order_cache,
                int fd=-1, int64_t data_offset=0):
    """Run up to ``n_steps`` steps from global step ``start_step``; return (steps done, status).

    Same contract as ``_numpy_backend.train_steps``. Inputs are trusted: the
    Trainer has checked every shape, range and dtype before calling. ``order_cache``
    (n + 1 int64: the epoch, then its record order; epoch -1 when empty) keeps the
    current epoch's order between calls, so a call does not sort the records again.
    With ``fd >= 0`` the rows are read from that file (row i at ``data_offset + i *
    row bytes``) instead of from X's memory, which is then only used for its shape:
    a file larger than memory trains without being mapped in.
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
    cdef floating[::1] WT = np.empty(theta.shape[0], dtype=dt)
    cdef floating[::1] GT = np.empty(theta.shape[0], dtype=dt)
    if order_cache.shape[0] != n + 1:
        raise ValueError(f"order_cache must hold n_records + 1 = {n + 1} entries, got {order_cache.shape[0]}")
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
                         &stop[0], max_seconds, check_every, acts, &D0[0], &D1[0], &WT[0], &GT[0],
                         &order_cache[0], &order_cache[1], &keys[0], &keys[n], &order2[0],
                         fd, data_offset, &done)
    finally:
        free(acts)
    return done, status
