/* Small dense products for the kernel's tiny-shape path (see _kernel.pyx).
 *
 * BLAS pays a call, a dispatch and a packing per gemm: far more than a 32 x 10 or
 * 2 x 32 product costs. These loops keep a block of outputs in registers and stream
 * the other operand from L1. Row-major throughout; GCC/clang vector extensions, no intrinsics, so the
 * compiler lowers them to whatever vectors each clone's target has.
 *
 * Each product is defined for float (suffix _f) and double (_d) from one template,
 * _kernel_dense.h, included twice.
 */
#ifndef FASTBATCH_KERNEL_HELPERS_H
#define FASTBATCH_KERNEL_HELPERS_H

/* Runtime dispatch: portable wheels are built for baseline x86-64, so GCC also
 * builds AVX2+FMA and AVX-512 clones and picks one at load time (ifunc). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && __GNUC__ >= 11
#define FB_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FB_CLONES
#endif

#if defined(__GNUC__) || defined(__clang__)
#define FB_RESTRICT __restrict__
#elif defined(_MSC_VER)
#define FB_RESTRICT __restrict
#else
#define FB_RESTRICT
#endif

#define FB_T float
#define FB_SUF f
#define FB_CH 16 /* one 64-byte line of outputs per register block */
#include "_kernel_dense.h"
#undef FB_T
#undef FB_SUF
#undef FB_CH

#define FB_T double
#define FB_SUF d
#define FB_CH 8
#include "_kernel_dense.h"
#undef FB_T
#undef FB_SUF
#undef FB_CH

#endif
