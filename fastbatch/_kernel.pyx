# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The hot loop: shuffled index batching and a fused forward / loss / backward / update.

``train_steps`` runs many steps per call with the GIL released. Every buffer it
needs is allocated once per call; a step allocates nothing and runs no Python.
All checking happens in Python before the call (see ``trainer.py``); the kernel
reports a non-finite loss through its status and the Trainer raises.

Per layer, a step takes one of two paths: register-blocked C loops for small products
(``_kernel_helpers.h``), BLAS gemm (scipy's ``cython_blas``) for big ones. A big step
runs on a team of threads (``_kernel_threads.h``), each member taking its share of the
batch's rows (``run_rows``) or, for a few rows through big layers, of each layer's
outputs (``run_cols``), with the BLAS held to one thread meanwhile: one layer of
parallelism, never two. A run is deterministic for a given team size; another size
sums in another order, so the last bits can differ.
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
    void fb_colsum_f(const float *D, float *out, int rows, int n, int ld)
    void fb_colsum_d(const double *D, double *out, int rows, int n, int ld)


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


cdef inline void column_sums(floating *D, floating *out, int rows, int n, int ld) noexcept nogil:
    """out := the sum of D's rows   (D: rows x n, its rows ld apart)."""
    if floating is float:
        fb_colsum_f(D, out, rows, n, ld)
    else:
        fb_colsum_d(D, out, rows, n, ld)


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
                      floating *D, int rows, int k, int batch_rows) noexcept nogil:
    """D := the gradient of the batch's mean loss w.r.t. the logits Zl (rows x k); returns
    these rows' share of that mean (the batch has batch_rows rows; a thread has some)."""
    cdef int r, j
    cdef double total = 0, z, y, diff, zmax, s, e, scale
    cdef floating *zr
    cdef floating *dr
    cdef floating *tr
    if code == 0:  # mse, mean over all rows * k elements
        scale = 2.0 / (<double>batch_rows * k)
        for r in range(rows):
            zr = Zl + r * k; dr = D + r * k; tr = T + idx[r] * k
            for j in range(k):
                diff = <double>(zr[j] - tr[j])
                total += diff * diff
                dr[j] = <floating>((zr[j] - tr[j]) * <floating>scale)
        return total / (<double>batch_rows * k)
    scale = 1.0 / batch_rows
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


# ---------------------------------------------------------------- threads: a team splits each step

cdef extern from "_kernel_threads.h" nogil:
    ctypedef struct fb_barrier:
        int n
    ctypedef void (*fb_task)(void *arg, int tid) noexcept nogil
    int FB_MAX_THREADS
    void fb_barrier_init(fb_barrier *b, int n)
    void fb_barrier_wait(fb_barrier *b)
    void fb_team_run(fb_task fn, void *arg, int *n, fb_barrier *bar)
    void fb_team_begin()
    void fb_team_end()
    void fb_blas_control(void *get, void *set)

# When a step runs on a team, and how (tuned on 2 cores). A small step does not pay for
# the barriers. Sharing rows, each member packs its own copy of W for gemm, so a net with
# a big W needs many rows per member; a batch of 8-32 rows through a big W is shared by
# outputs instead. Other batches leave the threads to the BLAS, which does better there.
cdef enum:
    TEAM_MIN_MACS = 32768          # multiply-adds of the whole batch's forward pass, at least
    TEAM_MIN_ROWS = 64             # rows per member, at least
    TEAM_BIG_W = 65536             # a layer with this many weights is big
    TEAM_MIN_ROWS_BIG_W = 256      # rows per member with a big W, at least
    TEAM_COLUMNS_MIN_ROWS = 8      # batch rows for sharing outputs: from ...
    TEAM_COLUMNS_MAX_ROWS = 32     # ... to
    TEAM_MIN_COLUMNS = 64          # outputs of the widest layer per member, at least
    LOSS_STRIDE = 8                # one cache line of doubles per member's partial loss
    SPLIT_ROWS = 1                 # members share the batch's rows (run_rows)
    SPLIT_COLUMNS = 2              # members share each layer's outputs (run_cols)


def _find_blas_thread_control():
    """Addresses of the get / set thread-count functions of the BLAS behind scipy's
    cython_blas (the one the kernel calls), or (0, 0) when it is not a known OpenBLAS."""
    import ctypes
    from scipy.linalg import cython_blas
    try:
        lib = ctypes.CDLL(cython_blas.__file__)  # its symbol lookup goes through the BLAS it links
    except OSError:
        return 0, 0
    for prefix, suffix in (("scipy_openblas", ""), ("scipy_openblas", "64_"), ("openblas", ""), ("openblas", "64_")):
        try:
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}")
            set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}")
        except AttributeError:
            continue
        return ctypes.cast(get, ctypes.c_void_p).value, ctypes.cast(set_, ctypes.c_void_p).value
    return 0, 0


_blas_get, _blas_set = _find_blas_thread_control()
fb_blas_control(<void *> <size_t> _blas_get, <void *> <size_t> _blas_set)
BLAS_THREADS_CONTROLLED = bool(_blas_get and _blas_set)


cdef struct Ctx:
    # the same for every member; pointers are floating * of the call's dtype
    void *X
    void *T
    int64_t *labels
    int64_t *sizes
    int n_layers
    void *theta
    void *m
    void *v
    void *G            # the gradient; member 0 writes its partial sums here
    void *G_more       # members 1.. : their partial sums of the small layers, n_theta each
    void *WT           # per member: n_theta of scratch for transposed small layers
    void *GT           # per member: the same, for their gradients
    long n_theta
    double *lrs
    double *losses
    int64_t start_step, n_steps, opt_t, n, batch_size, spe
    bint shuffle
    uint64_t seed
    int act, loss, opt
    double momentum
    bint nesterov
    double beta1, beta2, eps, wd
    const uint8_t *stop
    double max_seconds
    int64_t check_every
    void **acts        # acts[l]: batch rows x sizes[l]; acts[0] is the gathered input
    void **deltas      # deltas[l]: d loss / d (layer l's pre-activation), batch rows x sizes[l + 1]
    void *P            # column split: 2 sets x nt members x p_size of partial deltas
    long p_size
    int64_t *order_epoch
    int64_t *order
    uint64_t *keys
    uint64_t *keys2
    int64_t *order2
    int fd
    int64_t data_offset
    # shared state
    int nt             # team size
    int split          # how a team shares a step: SPLIT_ROWS or SPLIT_COLUMNS
    fb_barrier bar
    int command        # set by member 0 before each step: -1 go on, else the status to stop with
    int read_failed
    double *loss_part  # member t's share of the step's loss at [t * LOSS_STRIDE]
    int64_t done
    int status


# ---------------------------------------------------------------- the loop

cdef inline bint use_blas(int rows, int n_in, int n_out) noexcept nogil:
    """Whether a layer's products go to BLAS gemm rather than the small loops."""
    return <long>rows * n_in * n_out >= BLAS_MIN_MACS and n_in >= 16 and n_out >= 8


cdef inline bint out_major(int n_in, int n_out) noexcept nogil:
    """Narrow layers (fewer outputs than a vector holds) run the small loops on W.T, so
    they vectorise along n_in."""
    return n_out < 16 and n_in > n_out


cdef inline void share(int total, int parts, int tid, int align, int *lo, int *hi) noexcept nogil:
    """[lo, hi): member tid's part of range(total), parts cut at multiples of align."""
    cdef int per
    if parts == 1:  # no divisions on the one-thread path: batch-1 steps take ~1000 cycles
        lo[0] = 0
        hi[0] = total
        return
    per = (total + parts - 1) // parts
    per = (per + align - 1) // align * align
    lo[0] = min(total, tid * per)
    hi[0] = min(total, lo[0] + per)


cdef int read_rows(int fd, int64_t data_offset, const int64_t *idx, int rows, int n_feat,
                   floating *out) noexcept nogil:
    """out[r] := row idx[r] of the file fd (rows start at data_offset); 0, or -1 on a read error.

    Kept out of the step loops: an opaque call inside the step loop made GCC compile the whole
    loop more cautiously (2.4x slower steps on the seed net, even with no file).
    """
    cdef int r
    cdef int64_t row_bytes = n_feat * <int64_t>sizeof(floating)
    for r in range(rows):
        if fb_read_at(fd, out + <int64_t>r * n_feat, row_bytes, data_offset + idx[r] * row_bytes) != 0:
            return -1
    return 0


cdef inline bint step_begins(Ctx *c, int tid, int64_t i, double deadline, int *rows,
                             int64_t **idx) noexcept nogil:
    """Whether the call's step i runs, and its batch: rows records, their indices at idx.
    Member 0 looks at the stop flag and the clock, and sorts the records when an epoch
    begins; the barrier after it also ends the last step."""
    cdef int64_t step = c.start_step + i, B = c.batch_size if c.batch_size < c.n else c.n
    cdef int64_t epoch = step // c.spe
    cdef int64_t start = (step - epoch * c.spe) * B
    rows[0] = <int>(B if start + B <= c.n else c.n - start)
    idx[0] = c.order + start
    if tid == 0:
        c.done = i
        c.command = -1
        if fb_read_flag(c.stop):
            c.command = STOPPED
        elif i > 0 and i % c.check_every == 0 and fb_now() > deadline:
            c.command = TIME_UP
        elif epoch != c.order_epoch[0]:
            epoch_order_c(c.n, c.seed, <uint64_t>epoch, c.shuffle, c.order, c.keys, c.keys2, c.order2)
            c.order_epoch[0] = epoch
    fb_barrier_wait(&c.bar)
    if c.command >= 0:
        if tid == 0:
            c.status = c.command
        return False
    return True


cdef inline void gather(Ctx *c, int64_t *idx, int r0, int r1, floating *out) noexcept nogil:
    """Rows r0..r1 of the batch into out (rows of the input, row r at out + r * n_features):
    copied from X, or read from the file; a failed read is flagged for the step's check."""
    cdef int64_t r, n_feat = c.sizes[0]
    cdef floating *X = <floating *> c.X
    if c.fd >= 0:
        if read_rows(c.fd, c.data_offset, idx + r0, r1 - r0, <int>n_feat, out + r0 * n_feat) != 0:
            c.read_failed = 1
    else:
        for r in range(r0, r1):
            memcpy(out + r * n_feat, X + idx[r] * n_feat, n_feat * sizeof(floating))


cdef inline void small_forward(floating *W, floating *WT, floating *A, floating *Z,
                               int rows, int n_in, int n_out) noexcept nogil:
    """Z := A @ W + b on the small loops (b follows W in theta; WT: scratch for W.T)."""
    if out_major(n_in, n_out):
        transpose(W, WT, n_in, n_out)
        small_abt(A, WT, W + <long>n_in * n_out, Z, rows, n_in, n_out)
    else:
        small_ab(A, W, W + <long>n_in * n_out, Z, rows, n_in, n_out)


cdef inline void small_delta(floating *D, floating *W, floating *WT, floating *Dn,
                             int rows, int n_in, int n_out) noexcept nogil:
    """Dn := D @ W.T on the small loops (WT: W.T, from small_forward)."""
    if out_major(n_in, n_out):
        small_ab(D, WT, NULL, Dn, rows, n_out, n_in)
    else:
        small_abt(D, W, NULL, Dn, rows, n_out, n_in)


cdef inline void small_gradient(floating *A, floating *D, floating *G, floating *GT,
                                int rows, int n_in, int n_out) noexcept nogil:
    """G := A.T @ D, then the bias gradient (D's column sums), on the small loops (GT: scratch)."""
    column_sums(D, G + <long>n_in * n_out, rows, n_out, n_out)
    if out_major(n_in, n_out):
        small_atb(D, A, GT, rows, n_out, n_in)
        transpose(GT, G, n_out, n_in)
    else:
        small_atb(A, D, G, rows, n_in, n_out)


cdef void run_rows(Ctx *c, int tid, floating *dtype_tag) noexcept nogil:
    """Member tid's part of every step (the whole step when the team is one thread).

    A step: member 0 checks the stop flag and the clock, and sorts the next epoch's
    order; barrier. Each member gathers and forwards its own rows of the batch, computes
    their loss and deltas, and back-propagates them through W (still unchanged). Before
    a layer's weight gradient a barrier: every row's delta is there. A BLAS layer's
    gradient and update are cut by rows of W (one gemm per member, writing W -= lr * A.T @ D
    in place for plain SGD); a small layer's gradient is summed per member, then reduced
    and applied after a last barrier.
    """
    cdef floating *T = <floating *> c.T
    cdef floating *theta = <floating *> c.theta
    cdef floating *m = <floating *> c.m
    cdef floating *v = <floating *> c.v
    cdef floating *G = <floating *> c.G
    cdef floating *Gt = G if tid == 0 else <floating *> c.G_more + (tid - 1) * c.n_theta
    cdef floating *WT = <floating *> c.WT + tid * c.n_theta
    cdef floating *GT = <floating *> c.GT + tid * c.n_theta
    cdef floating **acts = <floating **> c.acts
    cdef floating **deltas = <floating **> c.deltas
    cdef int64_t *sizes = c.sizes
    cdef int n_layers = c.n_layers, nt = c.nt
    cdef int64_t i, r
    cdef int l, t, rows, r0, r1, nr, i0, i1, j0, j1, n_in, n_out, k_out = <int>sizes[n_layers]
    cdef long off, n_w, a, b, e
    cdef double deadline = fb_now() + c.max_seconds
    cdef double step_loss
    cdef double lr
    # momentum-free SGD without decay: a BLAS layer's gemm writes W -= lr * A.T @ D in place
    cdef bint plain_sgd = c.opt == 0 and c.momentum == 0 and c.wd == 0
    cdef bint any_small
    cdef floating *W
    cdef floating *A
    cdef floating *D
    cdef floating *Dn
    cdef floating *Gm
    cdef int64_t *idx
    for i in range(c.n_steps):
        if not step_begins(c, tid, i, deadline, &rows, &idx):
            return
        share(rows, nt, tid, 8, &r0, &r1)
        nr = r1 - r0
        lr = c.lrs[i]

        # forward: gather this member's rows (from memory, or read from the file fd), then layer by layer
        gather(c, idx, r0, r1, acts[0])
        off = 0
        for l in range(n_layers):
            n_in = <int>sizes[l]; n_out = <int>sizes[l + 1]
            n_w = <long>n_in * n_out
            W = theta + off
            A = acts[l + 1] + <long>r0 * n_out
            if use_blas(nr, n_in, n_out):
                for r in range(nr):
                    memcpy(A + r * n_out, W + n_w, n_out * sizeof(floating))
                gemm(c'N', c'N', n_out, nr, n_in, <floating>1, W, n_out, acts[l] + <long>r0 * n_in, n_in,
                     <floating>1, A, n_out)
            else:
                small_forward(W, WT + off, acts[l] + <long>r0 * n_in, A, nr, n_in, n_out)
            if l < n_layers - 1:
                activate(c.act, A, <long>nr * n_out)
            off += n_w + n_out
        c.loss_part[tid * LOSS_STRIDE] = loss_grad(c.loss, acts[n_layers] + <long>r0 * k_out, T, c.labels,
                                                   idx + r0, deltas[n_layers - 1] + <long>r0 * k_out,
                                                   nr, k_out, rows)

        # backward, layer by layer from the last
        any_small = False
        for l in range(n_layers - 1, -1, -1):
            n_in = <int>sizes[l]; n_out = <int>sizes[l + 1]
            n_w = <long>n_in * n_out
            off -= n_w + n_out
            W = theta + off; A = acts[l]; D = deltas[l]
            if l > 0:  # this member's rows of the next delta, through W before W changes
                Dn = deltas[l - 1]
                if use_blas(nr, n_in, n_out):
                    gemm(c'T', c'N', n_in, nr, n_out, <floating>1, W, n_out, D + <long>r0 * n_out, n_out,
                         <floating>0, Dn + <long>r0 * n_in, n_in)
                else:
                    small_delta(D + <long>r0 * n_out, W, WT + off, Dn + <long>r0 * n_in, nr, n_in, n_out)
                activation_backward(c.act, A + <long>r0 * n_in, Dn + <long>r0 * n_in, <long>nr * n_in)
            if l == n_layers - 1 or use_blas(rows, n_in, n_out):
                fb_barrier_wait(&c.bar)
            if l == n_layers - 1:  # every member adds the same shares: all agree to go on or not
                step_loss = 0
                for t in range(nt):
                    step_loss += c.loss_part[t * LOSS_STRIDE]
                if c.read_failed:
                    if tid == 0:
                        c.status = READ_ERROR
                    return
                if not isfinite(step_loss):
                    if tid == 0:
                        c.status = NONFINITE
                    return
                if tid == 0:
                    c.losses[i] = step_loss
            if use_blas(rows, n_in, n_out):  # this member's rows of W (and part of b): gradient and update
                share(n_in, nt, tid, 16, &i0, &i1)
                if i1 > i0:
                    Gm = G + off + <long>i0 * n_out
                    if plain_sgd:  # W := W - lr * A.T @ D
                        gemm(c'N', c'T', n_out, i1 - i0, rows, -<floating>lr, D, n_out, A + i0, n_in,
                             <floating>1, W + <long>i0 * n_out, n_out)
                    else:
                        gemm(c'N', c'T', n_out, i1 - i0, rows, <floating>1, D, n_out, A + i0, n_in,
                             <floating>0, Gm, n_out)
                        update(c.opt, W + <long>i0 * n_out, Gm, m + off + <long>i0 * n_out,
                               v + off + <long>i0 * n_out, <long>(i1 - i0) * n_out, lr, c.opt_t + i + 1,
                               c.momentum, c.nesterov, c.beta1, c.beta2, c.eps, c.wd)
                share(n_out, nt, tid, 16, &j0, &j1)
                if j1 > j0:
                    column_sums(D + j0, G + off + n_w + j0, rows, j1 - j0, n_out)
                    update(c.opt, W + n_w + j0, G + off + n_w + j0, m + off + n_w + j0, v + off + n_w + j0,
                           j1 - j0, lr, c.opt_t + i + 1, c.momentum, c.nesterov, c.beta1, c.beta2, c.eps, c.wd)
            else:  # this member's rows' share of a small layer's gradient
                any_small = True
                small_gradient(A + <long>r0 * n_in, D + <long>r0 * n_out, Gt + off, GT, nr, n_in, n_out)

        if any_small:  # the small layers' shares, summed and applied, each member a part
            fb_barrier_wait(&c.bar)
            off = 0
            for l in range(n_layers):
                n_in = <int>sizes[l]; n_out = <int>sizes[l + 1]
                n_w = <long>n_in * n_out
                if not use_blas(rows, n_in, n_out):
                    share(<int>(n_w + n_out), nt, tid, 16, &i0, &i1)
                    a = off + i0; b = off + i1
                    if b > a:
                        for t in range(1, nt):
                            Gm = <floating *> c.G_more + (t - 1) * c.n_theta
                            for e in range(a, b):
                                G[e] += Gm[e]
                        update(c.opt, theta + a, G + a, m + a, v + a, b - a, lr, c.opt_t + i + 1,
                               c.momentum, c.nesterov, c.beta1, c.beta2, c.eps, c.wd)
                off += n_w + n_out
    if tid == 0:
        c.done = c.n_steps
        c.status = DONE


cdef void run_cols(Ctx *c, int tid, floating *dtype_tag) noexcept nogil:
    """Member tid's part of every step, each layer's outputs shared (small batches, big W).

    With few rows per member, splitting the rows would have every member pack and stream
    all of W each step. Here member t owns a share of every BLAS layer's outputs: it
    computes those columns of the activations, back-propagates through those columns of
    W (a partial delta, summed over the members after a barrier) and updates them, so
    each member only ever touches its own part of W, which stays in its core's cache.
    Small layers, the gather's other half and the loss are cheap at these sizes: member 0
    does them (the gather is shared by rows).
    """
    cdef floating *T = <floating *> c.T
    cdef floating *theta = <floating *> c.theta
    cdef floating *m = <floating *> c.m
    cdef floating *v = <floating *> c.v
    cdef floating *G = <floating *> c.G
    cdef floating *WT = <floating *> c.WT
    cdef floating *GT = <floating *> c.GT
    cdef floating *P = <floating *> c.P
    cdef floating **acts = <floating **> c.acts
    cdef floating **deltas = <floating **> c.deltas
    cdef int64_t *sizes = c.sizes
    cdef int n_layers = c.n_layers, nt = c.nt
    cdef int64_t i, r
    cdef int l, t, rows, r0, r1, j0, j1, d0, d1, e, n_in, n_out, pset
    cdef int k_out = <int>sizes[n_layers]
    cdef long off, n_w, q
    cdef double deadline = fb_now() + c.max_seconds
    cdef double step_loss
    cdef double lr
    cdef bint plain_sgd = c.opt == 0 and c.momentum == 0 and c.wd == 0
    cdef floating *W
    cdef floating *A
    cdef floating *D
    cdef floating *Dn
    cdef floating *Pt
    cdef int64_t *idx
    for i in range(c.n_steps):
        if not step_begins(c, tid, i, deadline, &rows, &idx):
            return
        lr = c.lrs[i]

        # gather, shared by rows; every member then reads every row
        share(rows, nt, tid, 8, &r0, &r1)
        gather(c, idx, r0, r1, acts[0])
        fb_barrier_wait(&c.bar)

        # forward: this member's columns of each layer; a barrier, as the next layer reads them all
        off = 0
        for l in range(n_layers):
            n_in = <int>sizes[l]; n_out = <int>sizes[l + 1]
            n_w = <long>n_in * n_out
            W = theta + off
            A = acts[l + 1]
            if use_blas(rows, n_in, n_out):
                share(n_out, nt, tid, 16, &j0, &j1)
                if j1 > j0:
                    for r in range(rows):
                        memcpy(A + r * n_out + j0, W + n_w + j0, (j1 - j0) * sizeof(floating))
                    gemm(c'N', c'N', j1 - j0, rows, n_in, <floating>1, W + j0, n_out, acts[l], n_in,
                         <floating>1, A + j0, n_out)
                    if l < n_layers - 1:
                        for r in range(rows):
                            activate(c.act, A + r * n_out + j0, j1 - j0)
            elif tid == 0:
                small_forward(W, WT + off, acts[l], A, rows, n_in, n_out)
                if l < n_layers - 1:
                    activate(c.act, A, <long>rows * n_out)
            off += n_w + n_out
            fb_barrier_wait(&c.bar)
        if tid == 0:
            c.loss_part[0] = loss_grad(c.loss, acts[n_layers], T, c.labels, idx, deltas[n_layers - 1],
                                       rows, k_out, rows)
        fb_barrier_wait(&c.bar)
        step_loss = c.loss_part[0]
        if c.read_failed:
            if tid == 0:
                c.status = READ_ERROR
            return
        if not isfinite(step_loss):
            if tid == 0:
                c.status = NONFINITE
            return
        if tid == 0:
            c.losses[i] = step_loss

        # backward, layer by layer from the last
        pset = 0
        for l in range(n_layers - 1, -1, -1):
            n_in = <int>sizes[l]; n_out = <int>sizes[l + 1]
            n_w = <long>n_in * n_out
            off -= n_w + n_out
            W = theta + off; A = acts[l]; D = deltas[l]
            if use_blas(rows, n_in, n_out):
                share(n_out, nt, tid, 16, &j0, &j1)
                Pt = P + (pset * nt + tid) * c.p_size
                if l > 0:  # this member's part of the next delta: its columns of D through its columns of W
                    if j1 > j0:
                        gemm(c'T', c'N', n_in, rows, j1 - j0, <floating>1, W + j0, n_out, D + j0, n_out,
                             <floating>0, Pt, n_in)
                    else:
                        memset(Pt, 0, <long>rows * n_in * sizeof(floating))
                if j1 > j0:  # then the gradient and update of those columns
                    if plain_sgd:  # W[:, j0:j1] := W[:, j0:j1] - lr * A.T @ D[:, j0:j1]
                        gemm(c'N', c'T', j1 - j0, n_in, rows, -<floating>lr, D + j0, n_out, A, n_in,
                             <floating>1, W + j0, n_out)
                    else:
                        gemm(c'N', c'T', j1 - j0, n_in, rows, <floating>1, D + j0, n_out, A, n_in,
                             <floating>0, G + off + j0, n_out)
                        for e in range(n_in):
                            q = off + <long>e * n_out + j0
                            update(c.opt, theta + q, G + q, m + q, v + q, j1 - j0, lr, c.opt_t + i + 1,
                                   c.momentum, c.nesterov, c.beta1, c.beta2, c.eps, c.wd)
                    q = off + n_w + j0
                    column_sums(D + j0, G + q, rows, j1 - j0, n_out)
                    update(c.opt, theta + q, G + q, m + q, v + q, j1 - j0, lr, c.opt_t + i + 1,
                           c.momentum, c.nesterov, c.beta1, c.beta2, c.eps, c.wd)
                if l > 0:
                    fb_barrier_wait(&c.bar)  # every member's partial is there
                    # this member's columns of the next delta (its columns of layer l - 1):
                    # the partials summed, times act'
                    share(n_in, nt, tid, 16, &d0, &d1)
                    Dn = deltas[l - 1]
                    if d1 > d0:
                        for r in range(rows):
                            q = <long>r * n_in + d0
                            memcpy(Dn + q, P + pset * nt * c.p_size + q, (d1 - d0) * sizeof(floating))
                            for t in range(1, nt):
                                Pt = P + (pset * nt + t) * c.p_size + q
                                for e in range(d1 - d0):
                                    Dn[q + e] += Pt[e]
                            activation_backward(c.act, A + q, Dn + q, d1 - d0)
                    pset ^= 1
                    if not use_blas(rows, <int>sizes[l - 1], n_in):
                        fb_barrier_wait(&c.bar)  # member 0 runs that small layer on every column
            else:  # a small layer: member 0 alone
                if tid == 0:
                    small_gradient(A, D, G + off, GT, rows, n_in, n_out)
                    if l > 0:
                        small_delta(D, W, WT + off, deltas[l - 1], rows, n_in, n_out)
                        activation_backward(c.act, A, deltas[l - 1], <long>rows * n_in)
                    update(c.opt, theta + off, G + off, m + off, v + off, n_w + n_out, lr, c.opt_t + i + 1,
                           c.momentum, c.nesterov, c.beta1, c.beta2, c.eps, c.wd)
                if l > 0:
                    fb_barrier_wait(&c.bar)  # the next layer reads all of that delta
    if tid == 0:
        c.done = c.n_steps
        c.status = DONE


cdef void member_f(void *c, int tid) noexcept nogil:
    if (<Ctx *> c).split == SPLIT_COLUMNS:
        run_cols(<Ctx *> c, tid, <float *> NULL)
    else:
        run_rows(<Ctx *> c, tid, <float *> NULL)


cdef void member_d(void *c, int tid) noexcept nogil:
    if (<Ctx *> c).split == SPLIT_COLUMNS:
        run_cols(<Ctx *> c, tid, <double *> NULL)
    else:
        run_rows(<Ctx *> c, tid, <double *> NULL)


def train_steps(spec, const floating[:, ::1] X, const floating[:, ::1] targets, const int64_t[::1] labels,
                const floating[::1] weights, floating[::1] theta, floating[:, ::1] opt_state,
                int64_t[::1] order_cache, const double[::1] lrs, double[::1] losses, double[:, ::1] noise,
                int64_t start_step, int64_t n_steps, int64_t opt_t, const uint8_t[::1] stop,
                double max_seconds, int fd=-1, int64_t data_offset=0):
    """Run up to ``n_steps`` steps from global step ``start_step``; return (steps done, status).

    Same contract as ``_numpy_backend.train_steps``; ``spec`` is a ``KernelSpec``. Inputs
    are trusted: the driver has checked every shape, range and dtype before calling.
    ``order_cache`` (n + 1 int64: the epoch, then its record order; epoch -1 when empty)
    keeps the current epoch's order between calls, so a call does not sort the records
    again. With ``fd >= 0`` the rows are read from that file (row i at ``data_offset + i *
    row bytes``) instead of from X's memory, which is then only used for its shape:
    a file larger than memory trains without being mapped in.

    Threads: a step of at least TEAM_MIN_MACS multiply-adds runs on a team of up to
    ``spec.n_threads`` threads, the BLAS pinned to one thread meanwhile: members share
    the batch's rows, or, for a few rows through big layers, each layer's outputs.
    ``spec.split_columns`` True / False forces a team of ``spec.n_threads`` and its split (tests).
    """
    cdef const int64_t[::1] sizes = spec.sizes
    cdef int64_t batch_size = spec.batch_size
    cdef int n_threads = spec.n_threads
    cdef int64_t n = X.shape[0]
    cdef int n_layers = <int>sizes.shape[0] - 1
    cdef int64_t B = batch_size if batch_size < n else n
    cdef int64_t widest = 0, l, macs = 0, n_theta = theta.shape[0]
    cdef int nt = 1
    cdef Ctx c
    if weights.shape[0] != 0:
        raise NotImplementedError("sample weights: not yet")
    if noise.shape[0] != 0:
        raise NotImplementedError("noise norms: not yet")
    for l in range(n_layers + 1):
        widest = max(widest, sizes[l])
    for l in range(n_layers):
        macs += sizes[l] * sizes[l + 1]
    if n_steps <= 0:
        return 0, DONE
    if order_cache.shape[0] != n + 1:
        raise ValueError(f"order_cache must hold n_records + 1 = {n + 1} entries, got {order_cache.shape[0]}")

    # the team: up to n_threads members, for steps big enough to share
    widest_out = max(sizes[l + 1] for l in range(n_layers))
    big_w = any(sizes[l] * sizes[l + 1] >= TEAM_BIG_W for l in range(n_layers))
    split = SPLIT_ROWS
    if spec.split_columns is not None:
        nt = min(n_threads, FB_MAX_THREADS)
        split = SPLIT_COLUMNS if spec.split_columns else SPLIT_ROWS
    elif n_threads > 1 and B * macs >= TEAM_MIN_MACS:
        if big_w and TEAM_COLUMNS_MIN_ROWS <= B <= TEAM_COLUMNS_MAX_ROWS:  # few rows, big W
            split = SPLIT_COLUMNS
            cap = min(FB_MAX_THREADS, widest_out // TEAM_MIN_COLUMNS)
        else:
            cap = min(FB_MAX_THREADS, B // (TEAM_MIN_ROWS_BIG_W if big_w else TEAM_MIN_ROWS))
        nt = max(1, min(n_threads, cap))
    if nt > 1:
        fb_team_begin()

    try:
        dt = np.float32 if floating is float else np.float64
        keep = []  # the buffers' owners, alive until the call returns

        def buffer(count, dtype=dt):
            a = np.empty(max(1, count), dtype=dtype)
            keep.append(a)
            return a

        acts_p = buffer(n_layers + 1, np.uintp)
        deltas_p = buffer(n_layers, np.uintp)
        for l in range(n_layers + 1):
            acts_p[l] = buffer(B * sizes[l]).ctypes.data
        for l in range(n_layers):
            deltas_p[l] = buffer(B * sizes[l + 1]).ctypes.data
        loss_part = buffer(nt * LOSS_STRIDE, np.float64)
        order2 = buffer(n, np.int64)
        keys = buffer(2 * n, np.uint64)
        G = buffer(n_theta)
        G_more = buffer((nt - 1) * n_theta)
        P = buffer(2 * nt * B * widest if split == SPLIT_COLUMNS else 0)
        WT = buffer(nt * n_theta)
        GT = buffer(nt * n_theta)

        c.X = <void *> &X[0, 0]
        # read-only inputs (e.g. a memory-mapped X) are only ever read through these pointers
        c.T = <void *> &targets[0, 0] if targets.shape[0] > 0 else NULL
        c.labels = <int64_t *> &labels[0] if labels.shape[0] > 0 else NULL
        c.sizes = <int64_t *> &sizes[0]
        c.n_layers = n_layers
        c.theta = <void *> &theta[0]
        c.m = <void *> &opt_state[0, 0]
        c.v = <void *> &opt_state[1, 0]
        c.G = <void *> <size_t> G.ctypes.data
        c.G_more = <void *> <size_t> G_more.ctypes.data
        c.WT = <void *> <size_t> WT.ctypes.data
        c.GT = <void *> <size_t> GT.ctypes.data
        c.n_theta = n_theta
        c.lrs = <double *> &lrs[0]
        c.losses = &losses[0]
        c.start_step = start_step; c.n_steps = n_steps; c.opt_t = opt_t; c.n = n
        c.batch_size = batch_size; c.spe = spec.steps_per_epoch; c.shuffle = spec.shuffle; c.seed = spec.seed
        c.act = spec.activation; c.loss = spec.loss; c.opt = spec.optimizer
        c.momentum = spec.momentum; c.nesterov = spec.nesterov; c.beta1 = spec.beta1; c.beta2 = spec.beta2
        c.eps = spec.eps; c.wd = spec.weight_decay
        c.stop = &stop[0]
        c.max_seconds = max_seconds
        # look at the clock about every 50 us of work, not every step
        c.check_every = max(1, 50000 // max(1, 6 * B * macs // 1000 + 1))
        c.acts = <void **> <size_t> acts_p.ctypes.data
        c.deltas = <void **> <size_t> deltas_p.ctypes.data
        c.P = <void *> <size_t> P.ctypes.data
        c.p_size = B * widest
        c.order_epoch = &order_cache[0]
        c.order = &order_cache[1]
        c.keys = <uint64_t *> <size_t> keys.ctypes.data
        c.keys2 = c.keys + n
        c.order2 = <int64_t *> <size_t> order2.ctypes.data
        c.fd = fd
        c.data_offset = data_offset
        c.nt = nt
        c.split = split
        c.command = -1
        c.read_failed = 0
        c.loss_part = <double *> <size_t> loss_part.ctypes.data
        c.done = 0
        c.status = DONE
        with nogil:
            if nt > 1:
                fb_team_run(member_f if floating is float else member_d, &c, &c.nt, &c.bar)
            else:
                fb_barrier_init(&c.bar, 1)
                run_rows(&c, 0, <floating *> NULL)
    finally:
        if nt > 1:
            fb_team_end()
    return c.done, c.status

