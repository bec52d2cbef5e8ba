/* Template for _kernel_helpers.h: define FB_T (float or double), FB_SUF (f or d) and
 * FB_CH (elements per register block) before including. No include guard, on purpose. */

#define FB_CAT_(a, b) a##_##b
#define FB_CAT(a, b) FB_CAT_(a, b)
#define FB_FN(name) FB_CAT(name, FB_SUF)

#if defined(__GNUC__) || defined(__clang__)
/* FB_CH lanes (64 bytes): a zmm under AVX-512, two ymm under AVX2, four xmm on baseline x86-64. */
typedef FB_T FB_FN(fb_vec) __attribute__((vector_size(64)));
#define FB_V FB_FN(fb_vec)
#define FB_LOAD(p) ({ FB_V v_; __builtin_memcpy(&v_, (p), sizeof v_); v_; })
#define FB_STORE(p, v) do { FB_V v_ = (v); __builtin_memcpy((p), &v_, sizeof v_); } while (0)

/* C := A @ B (+ bias)   (A: rows x k, B: k x n, C: rows x n); vectorised along n. */
FB_CLONES static void FB_FN(fb_ab)(const FB_T *FB_RESTRICT A, const FB_T *FB_RESTRICT B,
                                   const FB_T *FB_RESTRICT bias, FB_T *FB_RESTRICT C,
                                   int rows, int k, int n)
{
    int r = 0, i, j, nv = n - n % FB_CH;
    FB_T s;
    for (; r + 4 <= rows; r += 4) {  /* 4 rows share each load of B */
        const FB_T *a0 = A + (long)r * k, *a1 = a0 + k, *a2 = a1 + k, *a3 = a2 + k;
        FB_T *c0 = C + (long)r * n, *c1 = c0 + n, *c2 = c1 + n, *c3 = c2 + n;
        for (j = 0; j < nv; j += FB_CH) {
            FB_V z0 = {0};
            if (bias)
                z0 = FB_LOAD(bias + j);
            FB_V z1 = z0, z2 = z0, z3 = z0;
            for (i = 0; i < k; i++) {
                FB_V b = FB_LOAD(B + (long)i * n + j);
                z0 += a0[i] * b; z1 += a1[i] * b; z2 += a2[i] * b; z3 += a3[i] * b;
            }
            FB_STORE(c0 + j, z0); FB_STORE(c1 + j, z1); FB_STORE(c2 + j, z2); FB_STORE(c3 + j, z3);
        }
    }
    for (; r < rows; r++) {
        const FB_T *a0 = A + (long)r * k;
        FB_T *c0 = C + (long)r * n;
        for (j = 0; j < nv; j += FB_CH) {
            FB_V z0 = {0};
            if (bias)
                z0 = FB_LOAD(bias + j);
            for (i = 0; i < k; i++)
                z0 += a0[i] * FB_LOAD(B + (long)i * n + j);
            FB_STORE(c0 + j, z0);
        }
    }
    if (nv < n)  /* the last n % FB_CH columns: independent sums, not one long chain */
        for (r = 0; r < rows; r++) {
            FB_T z[FB_CH];
            int m = n - nv;
            for (j = 0; j < m; j++)
                z[j] = bias ? bias[nv + j] : (FB_T)0;
            for (i = 0; i < k; i++) {
                s = A[(long)r * k + i];
                for (j = 0; j < m; j++)
                    z[j] += s * B[(long)i * n + nv + j];
            }
            for (j = 0; j < m; j++)
                C[(long)r * n + nv + j] = z[j];
        }
}

/* The sum of v's lanes, as a tree of log2(FB_CH) adds kept in registers (going through
 * memory instead stalls on store forwarding, and this runs once per output). */
static inline FB_T FB_FN(fb_hsum)(FB_V v)
{
#if FB_CH == 16 && (defined(__clang__) || !defined(__GNUC__))
    v += __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
    v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
    v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    v += __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
#elif FB_CH == 16
    typedef int mask_ __attribute__((vector_size(64)));
    v += __builtin_shuffle(v, (mask_){8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7});
    v += __builtin_shuffle(v, (mask_){4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11});
    v += __builtin_shuffle(v, (mask_){2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13});
    v += __builtin_shuffle(v, (mask_){1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14});
#elif defined(__clang__) || !defined(__GNUC__)
    v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3);
    v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5);
    v += __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6);
#else
    typedef long long mask_ __attribute__((vector_size(64)));
    v += __builtin_shuffle(v, (mask_){4, 5, 6, 7, 0, 1, 2, 3});
    v += __builtin_shuffle(v, (mask_){2, 3, 0, 1, 6, 7, 4, 5});
    v += __builtin_shuffle(v, (mask_){1, 0, 3, 2, 5, 4, 7, 6});
#endif
    return v[0];
}

/* dot(a, b) over k elements. */
static inline FB_T FB_FN(fb_dot)(const FB_T *FB_RESTRICT a, const FB_T *FB_RESTRICT b, int k)
{
    FB_V acc = {0};
    FB_T s;
    int i = 0;
    for (; i + FB_CH <= k; i += FB_CH)
        acc += FB_LOAD(a + i) * FB_LOAD(b + i);
    s = FB_FN(fb_hsum)(acc);
    for (; i < k; i++)
        s += a[i] * b[i];
    return s;
}

/* C := A @ B.T (+ bias)   (A: rows x k, B: n x k, C: rows x n); dot products along k. */
FB_CLONES static void FB_FN(fb_abt)(const FB_T *FB_RESTRICT A, const FB_T *FB_RESTRICT B,
                                    const FB_T *FB_RESTRICT bias, FB_T *FB_RESTRICT C,
                                    int rows, int k, int n)
{
    int r, j;
    for (r = 0; r < rows; r++) {
        const FB_T *a = A + (long)r * k;
        FB_T *c = C + (long)r * n;
        for (j = 0; j < n; j++)
            c[j] = (bias ? bias[j] : (FB_T)0) + FB_FN(fb_dot)(a, B + (long)j * k, k);
    }
}

/* C += A.T @ B   (A: rows x p, B: rows x q, C: p x q); vectorised along q. */
FB_CLONES static void FB_FN(fb_atb_acc)(const FB_T *FB_RESTRICT A, const FB_T *FB_RESTRICT B,
                                        FB_T *FB_RESTRICT C, int rows, int p, int q)
{
    int i = 0, j, r, qv = q - q % FB_CH;
    FB_T s;
    for (; i + 4 <= p; i += 4) {  /* 4 rows of C share each load of B */
        FB_T *c0 = C + (long)i * q, *c1 = c0 + q, *c2 = c1 + q, *c3 = c2 + q;
        for (j = 0; j < qv; j += FB_CH) {
            FB_V g0 = FB_LOAD(c0 + j), g1 = FB_LOAD(c1 + j), g2 = FB_LOAD(c2 + j), g3 = FB_LOAD(c3 + j);
            for (r = 0; r < rows; r++) {
                const FB_T *a = A + (long)r * p + i;
                FB_V b = FB_LOAD(B + (long)r * q + j);
                g0 += a[0] * b; g1 += a[1] * b; g2 += a[2] * b; g3 += a[3] * b;
            }
            FB_STORE(c0 + j, g0); FB_STORE(c1 + j, g1); FB_STORE(c2 + j, g2); FB_STORE(c3 + j, g3);
        }
    }
    for (; i < p; i++) {
        FB_T *c0 = C + (long)i * q;
        for (j = 0; j < qv; j += FB_CH) {
            FB_V g0 = FB_LOAD(c0 + j);
            for (r = 0; r < rows; r++)
                g0 += A[(long)r * p + i] * FB_LOAD(B + (long)r * q + j);
            FB_STORE(c0 + j, g0);
        }
    }
    if (qv < q)  /* the last q % FB_CH columns: independent sums, not one long chain */
        for (i = 0; i < p; i++) {
            FB_T g[FB_CH];
            int m = q - qv;
            for (j = 0; j < m; j++)
                g[j] = C[(long)i * q + qv + j];
            for (r = 0; r < rows; r++) {
                s = A[(long)r * p + i];
                for (j = 0; j < m; j++)
                    g[j] += s * B[(long)r * q + qv + j];
            }
            for (j = 0; j < m; j++)
                C[(long)i * q + qv + j] = g[j];
        }
}
/* out := the sum of D's rows   (D: rows x n, rows ld apart); each column's sum stays in a register. */
FB_CLONES static void FB_FN(fb_colsum)(const FB_T *FB_RESTRICT D, FB_T *FB_RESTRICT out, int rows, int n, int ld)
{
    int r, j, nv = n - n % FB_CH;
    FB_T s;
    for (j = 0; j < nv; j += FB_CH) {
        FB_V acc = {0};
        for (r = 0; r < rows; r++)
            acc += FB_LOAD(D + (long)r * ld + j);
        FB_STORE(out + j, acc);
    }
    for (; j < n; j++) {
        s = 0;
        for (r = 0; r < rows; r++)
            s += D[(long)r * ld + j];
        out[j] = s;
    }
}
#undef FB_V
#undef FB_LOAD
#undef FB_STORE

#else  /* plain loops for compilers without vector extensions */

static void FB_FN(fb_ab)(const FB_T *A, const FB_T *B, const FB_T *bias, FB_T *C, int rows, int k, int n)
{
    int r, i, j;
    for (r = 0; r < rows; r++) {
        for (j = 0; j < n; j++)
            C[(long)r * n + j] = bias ? bias[j] : (FB_T)0;
        for (i = 0; i < k; i++)
            for (j = 0; j < n; j++)
                C[(long)r * n + j] += A[(long)r * k + i] * B[(long)i * n + j];
    }
}

static void FB_FN(fb_abt)(const FB_T *A, const FB_T *B, const FB_T *bias, FB_T *C, int rows, int k, int n)
{
    int r, i, j;
    FB_T s;
    for (r = 0; r < rows; r++)
        for (j = 0; j < n; j++) {
            s = 0;
            for (i = 0; i < k; i++)
                s += A[(long)r * k + i] * B[(long)j * k + i];
            C[(long)r * n + j] = (bias ? bias[j] : (FB_T)0) + s;
        }
}

static void FB_FN(fb_atb_acc)(const FB_T *A, const FB_T *B, FB_T *C, int rows, int p, int q)
{
    int r, i, j;
    for (r = 0; r < rows; r++)
        for (i = 0; i < p; i++)
            for (j = 0; j < q; j++)
                C[(long)i * q + j] += A[(long)r * p + i] * B[(long)r * q + j];
}
static void FB_FN(fb_colsum)(const FB_T *D, FB_T *out, int rows, int n, int ld)
{
    int r, j;
    for (j = 0; j < n; j++)
        out[j] = 0;
    for (r = 0; r < rows; r++)
        for (j = 0; j < n; j++)
            out[j] += D[(long)r * ld + j];
}
#endif

/* Bt := B.T   (B: k x n, Bt: n x k). */
static void FB_FN(fb_transpose)(const FB_T *FB_RESTRICT B, FB_T *FB_RESTRICT Bt, int k, int n)
{
    int i, j;
    for (i = 0; i < k; i++)
        for (j = 0; j < n; j++)
            Bt[(long)j * k + i] = B[(long)i * n + j];
}

#undef FB_CAT_
#undef FB_CAT
#undef FB_FN
