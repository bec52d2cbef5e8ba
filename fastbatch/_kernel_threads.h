/* Threads for the kernel's own parallel split (see _kernel.pyx).
 *
 * From a moderate batch on, the kernel runs each step on a team of threads: every
 * thread gathers, forwards and back-propagates its own rows of the batch, and writes
 * its own rows of each weight gradient. Meanwhile BLAS runs single-threaded inside
 * each team thread: one parallel layer, never two thread pools fighting for the cores.
 *
 *  - fb_barrier: a counting barrier. A step has a few of them, microseconds apart, so
 *    a waiter spins first and only sleeps (futex on Linux) if the wait is long.
 *  - fb_team_run: runs fn(arg, tid) on n threads, tid 0 on the caller.
 *  - fb_blas_*: pin the BLAS that scipy's cython_blas calls to one thread while a team
 *    runs, and put its thread count back after. The get / set functions are found
 *    at import (see _kernel.pyx); without them the kernel never forms a team.
 */
#ifndef FASTBATCH_KERNEL_THREADS_H
#define FASTBATCH_KERNEL_THREADS_H

#include <pthread.h>
#include <sched.h>
#include <time.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define FB_MAX_THREADS 64
#define FB_SPIN_SECONDS 2e-3 /* a waiter spins this long before it sleeps: waking a
                                sleeper costs tens of microseconds on a VM */

static double fb_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline void fb_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

typedef struct {
    int n;          /* threads that take part */
    int count;      /* arrived in the current round */
    int gen;        /* round number; waiters watch it change */
    int sleepers;   /* waiters asleep on gen */
} fb_barrier;

static void fb_barrier_init(fb_barrier *b, int n)
{
    b->n = n;
    b->count = 0;
    b->gen = 0;
    b->sleepers = 0;
}

static void fb_wake_all(int *addr)
{
#if defined(__linux__)
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
#else
    (void)addr;
#endif
}

static void fb_sleep_while(int *addr, int value)
{
#if defined(__linux__)
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, value, NULL, NULL, 0);
#else
    (void)addr; (void)value;
    sched_yield();
#endif
}

/* Returns once all b->n threads have called it; memory written before is visible after. */
static void fb_barrier_wait(fb_barrier *b)
{
    int gen, i;
    double deadline = 0;
    if (b->n <= 1)
        return;
    gen = __atomic_load_n(&b->gen, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == b->n) {
        /* the last to arrive opens the next round; the others only touch count after
           they see the new gen, so the reset cannot race with them */
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_add_fetch(&b->gen, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&b->sleepers, __ATOMIC_SEQ_CST) > 0)
            fb_wake_all(&b->gen);
        return;
    }
    for (i = 1; ; i++) {
        if (__atomic_load_n(&b->gen, __ATOMIC_ACQUIRE) != gen)
            return;
        fb_pause();
        if (i % 256 == 0) {
            if (deadline == 0)
                deadline = fb_clock() + FB_SPIN_SECONDS;
            else if (fb_clock() > deadline)
                break;
        }
    }
    __atomic_add_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&b->gen, __ATOMIC_SEQ_CST) == gen)
        fb_sleep_while(&b->gen, gen);  /* returns at once if gen has already moved on */
    __atomic_sub_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
}

typedef void (*fb_task)(void *arg, int tid);

/* The members 1.. of every team: threads kept between calls, so that a call pays neither
 * for creating them nor for the BLAS setting up each new thread's buffers (together about
 * 300 us a call on a 2-core VM). Idle members spin briefly, then sleep on pool.gen. */
static struct {
    pthread_mutex_t lock;   /* one team at a time */
    int size;               /* members made so far (tids 1 .. size) */
    int gen;                /* bumped for each team; members watch it */
    int team;               /* the current team's size; members beyond it sit the job out */
    int left;               /* members yet to finish (or skip) the current job */
    int born[FB_MAX_THREADS]; /* gen when member t was made: jobs before it are not its own */
    fb_task fn;
    void *arg;
} fb_pool = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, NULL, NULL, {0}};

static void fb_wait_change(int *addr, int seen)
{
    int i;
    double deadline = 0;
    for (i = 1; __atomic_load_n(addr, __ATOMIC_ACQUIRE) == seen; i++) {
        fb_pause();
        if (i % 256 == 0) {
            if (deadline == 0)
                deadline = fb_clock() + FB_SPIN_SECONDS;
            else if (fb_clock() > deadline)
                fb_sleep_while(addr, seen);  /* returns at once if it has already changed */
        }
    }
}

static void *fb_member_main(void *p)
{
    int tid = (int)(long)p, seen = fb_pool.born[tid];
    for (;;) {
        /* every member finishes or skips each job before the next is published, so the
           job it sees is the one gen counts, and the fields stay still while it reads them */
        fb_wait_change(&fb_pool.gen, seen);
        seen++;
        if (tid < fb_pool.team)
            fb_pool.fn(fb_pool.arg, tid);
        if (__atomic_sub_fetch(&fb_pool.left, 1, __ATOMIC_ACQ_REL) == 0)
            fb_wake_all(&fb_pool.left);
    }
    return NULL;
}

/* After fork the child has none of the parent's members. */
static void fb_pool_after_fork(void)
{
    pthread_mutex_init(&fb_pool.lock, NULL);
    fb_pool.size = 0;
}

/* Runs fn(arg, tid) for tid = 0 .. n-1, tid 0 on the calling thread, and waits for all.
 * If the system refuses a thread, the team is smaller: *n and the barrier are set to
 * the size that runs before any member starts. */
static void fb_team_run(fb_task fn, void *arg, int *n, fb_barrier *bar)
{
    static int forks_handled = 0;
    pthread_t thread;
    int want = *n, left;
    if (want > FB_MAX_THREADS)
        want = FB_MAX_THREADS;
    pthread_mutex_lock(&fb_pool.lock);
    if (!forks_handled)
        forks_handled = pthread_atfork(NULL, NULL, fb_pool_after_fork) == 0;
    while (fb_pool.size + 1 < want) {
        fb_pool.born[fb_pool.size + 1] = fb_pool.gen;
        if (pthread_create(&thread, NULL, fb_member_main, (void *)(long)(fb_pool.size + 1)) != 0)
            break;
        pthread_detach(thread);
        fb_pool.size++;
    }
    if (want > fb_pool.size + 1)
        want = fb_pool.size + 1;
    *n = want;
    fb_barrier_init(bar, want);
    fb_pool.fn = fn;
    fb_pool.arg = arg;
    fb_pool.team = want;
    fb_pool.left = fb_pool.size;
    __atomic_add_fetch(&fb_pool.gen, 1, __ATOMIC_SEQ_CST);  /* publishes the job */
    fb_wake_all(&fb_pool.gen);
    fn(arg, 0);
    while ((left = __atomic_load_n(&fb_pool.left, __ATOMIC_ACQUIRE)) != 0)
        fb_wait_change(&fb_pool.left, left);
    pthread_mutex_unlock(&fb_pool.lock);
}

/* ---- the BLAS thread count */

typedef int (*fb_blas_get_fn)(void);
typedef void (*fb_blas_set_fn)(int);
static fb_blas_get_fn fb_blas_get = NULL;
static fb_blas_set_fn fb_blas_set = NULL;
static pthread_mutex_t fb_blas_lock = PTHREAD_MUTEX_INITIALIZER;
static int fb_blas_teams = 0;   /* teams running now */
static int fb_blas_saved = 0;   /* the BLAS thread count before the first of them pinned it; 0: untouched */

static void fb_blas_control(void *get, void *set)
{
    pthread_mutex_lock(&fb_blas_lock);
    fb_blas_get = (fb_blas_get_fn)get;
    fb_blas_set = (fb_blas_set_fn)set;
    pthread_mutex_unlock(&fb_blas_lock);
}

/* Before a team runs: pin the BLAS to one thread (one layer of parallelism, never two).
 * Counted: the first of several concurrent teams saves the BLAS's count, the last puts it
 * back. Every call must be followed by fb_team_end(). */
static void fb_team_begin(void)
{
    pthread_mutex_lock(&fb_blas_lock);
    if (fb_blas_teams++ == 0 && fb_blas_get && fb_blas_set) {
        fb_blas_saved = fb_blas_get();
        if (fb_blas_saved > 1)
            fb_blas_set(1);
        else
            fb_blas_saved = 0;
    }
    pthread_mutex_unlock(&fb_blas_lock);
}

/* After a team ran: the last team out gives the BLAS its thread count back. */
static void fb_team_end(void)
{
    pthread_mutex_lock(&fb_blas_lock);
    if (--fb_blas_teams == 0 && fb_blas_saved > 0) {
        fb_blas_set(fb_blas_saved);
        fb_blas_saved = 0;
    }
    pthread_mutex_unlock(&fb_blas_lock);
}

#endif
