/* Threads for the kernel's own parallel split (see _kernel.pyx.tp).
 *
 * From a moderate batch on, the kernel runs each step on a team of threads: every
 * member gathers, forwards and back-propagates its own share of the step. Meanwhile
 * BLAS runs single-threaded inside each member: one parallel layer, never two thread
 * pools fighting for the cores.
 *
 *  - fb_barrier: a counting barrier. A step has a few of them, microseconds apart, so
 *    a waiter spins first and only sleeps (futex on Linux) if the wait is long. When the
 *    caller saw the cores taken in the run queue, a waiter spins only briefly (the glance
 *    is often wrong: another library's pool threads spin for ~0.1 s after their last job);
 *    when a wait outlasted its spin (a member was descheduled), the next waits sleep at once.
 *  - fb_way: whether a row split runs faster on its team or on one thread that runs all the
 *    members (the same sums, the same bits), from the steps per second each way measured
 *    lately; the call runs in pieces and the other way is tried now and then.
 *  - fb_team_run: runs fn(arg, tid) on n threads, tid 0 on the caller. Each concurrent
 *    caller gets a team of its own (a few pools of members, kept between calls), so two
 *    trainers side by side each get the team size they asked for.
 *  - fb_blas_pin / fb_blas_unpin: pin the BLAS that scipy's cython_blas calls to one
 *    thread while any team (or a call that wants the BLAS alone) runs, counted, and put its
 *    thread count back after the last.
 *  - fb_ftz_begin / fb_ftz_end: flush-to-zero and denormals-are-zero for a call, on each
 *    thread: Adam's moments of dead units decay into subnormals, ~10x slower to compute.
 *  - a fork resets all of it in the child: it has none of the parent's threads.
 */
#ifndef FASTBATCH_KERNEL_THREADS_H
#define FASTBATCH_KERNEL_THREADS_H

#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#define FB_MAX_THREADS 64
#define FB_MAX_TEAMS 8          /* pools of members: teams that can run at once without waiting */
#define FB_SPIN_SECONDS 2e-3    /* a waiter spins this long before it sleeps: waking a
                                   sleeper costs tens of microseconds on a VM */
#define FB_BRIEF_SPIN_SECONDS 20e-6  /* the spin when the caller saw the cores taken. Wide net, batch 32,
                                   2 threads, a column split, us a step: idle 128.5 spinning, 152 sleeping
                                   at once (a false glance), 129-130 spinning this long; next to a busy
                                   process 391 spinning, 206 sleeping at once, 210 this; 189 one thread */
#define FB_NO_SPIN_WAITS 64     /* after a wait outlasted the spin, this many waits sleep at once */

/* The one clock of the kernel (seconds, monotonic). */
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

/* ---- flush-to-zero */

static unsigned long fb_ftz_begin(void)
{
#if defined(__x86_64__) || defined(__i386__)
    unsigned int saved = _mm_getcsr();
    _mm_setcsr(saved | 0x8040);  /* FTZ (bit 15) | DAZ (bit 6) */
    return saved;
#elif defined(__aarch64__)
    unsigned long saved;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(saved));
    __asm__ __volatile__("msr fpcr, %0" : : "r"(saved | (1UL << 24)));  /* FZ */
    return saved;
#else
    return 0;
#endif
}

static void fb_ftz_end(unsigned long saved)
{
#if defined(__x86_64__) || defined(__i386__)
    _mm_setcsr((unsigned int)saved);
#elif defined(__aarch64__)
    __asm__ __volatile__("msr fpcr, %0" : : "r"(saved));
#else
    (void)saved;
#endif
}

/* ---- futex */

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

/* ---- the barrier */

typedef struct {
    int n;          /* threads that take part */
    int count;      /* arrived in the current round */
    int gen;        /* round number; waiters watch it change */
    int sleepers;   /* waiters asleep on gen */
    int brief;      /* the caller saw the cores taken: waiters spin FB_BRIEF_SPIN_SECONDS, not FB_SPIN_SECONDS */
    int no_spin;    /* waits left that sleep at once (a wait outlasted its spin) */
} fb_barrier;

/* spin: 0 when the caller saw the cores oversubscribed (waiters spin only briefly). */
static void fb_barrier_init(fb_barrier *b, int n, int spin)
{
    b->n = n;
    b->count = 0;
    b->gen = 0;
    b->sleepers = 0;
    b->no_spin = 0;
    b->brief = !spin;
}

/* Returns once all b->n threads have called it; memory written before is visible after. */
static void fb_barrier_wait(fb_barrier *b)
{
    int gen, i, left;
    double deadline = 0, spin_for;
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
    left = __atomic_load_n(&b->no_spin, __ATOMIC_RELAXED);
    if (left > 0) {
        /* a recent wait outlasted the spin: a member was descheduled, so spinning would
           only take a core from it; sleep, and spin again after a while to see */
        __atomic_store_n(&b->no_spin, left - 1, __ATOMIC_RELAXED);
    } else {
        spin_for = b->brief ? FB_BRIEF_SPIN_SECONDS : FB_SPIN_SECONDS;
        for (i = 1; ; i++) {
            if (__atomic_load_n(&b->gen, __ATOMIC_ACQUIRE) != gen)
                return;
            fb_pause();
            if (i % 32 == 0) {  /* (a pause is ~40 ns on recent Intel cores: the clock every ~1 us) */
                if (deadline == 0)
                    deadline = fb_clock() + spin_for;
                else if (fb_clock() > deadline)
                    break;
            }
        }
        __atomic_store_n(&b->no_spin, FB_NO_SPIN_WAITS, __ATOMIC_RELAXED);
    }
    __atomic_add_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&b->gen, __ATOMIC_SEQ_CST) == gen)
        fb_sleep_while(&b->gen, gen);  /* returns at once if gen has already moved on */
    __atomic_sub_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
}

/* ---- teams */

typedef void (*fb_task)(void *arg, int tid);

/* A pool holds the members 1.. of one team: threads kept between calls, so that a call pays
 * neither for creating them nor for the BLAS setting up each new thread's buffers (together
 * about 300 us a call on a 2-core VM). Idle members spin briefly, then sleep on gen. */
typedef struct {
    pthread_mutex_t lock;   /* held by the team's caller */
    int size;               /* members made so far (tids 1 .. size) */
    int gen;                /* bumped for each job; members watch it */
    int team;               /* the current team's size; members beyond it sit the job out */
    int left;               /* members yet to finish (or skip) the current job */
    int spin;               /* whether members spin after the job before they sleep (not on busy cores) */
    int born[FB_MAX_THREADS]; /* gen when member t was made: jobs before it are not its own */
    fb_task fn;
    void *arg;
} fb_pool;

static fb_pool fb_pools[FB_MAX_TEAMS];

typedef struct {
    fb_pool *pool;
    int tid;
} fb_member_seat;

static fb_member_seat fb_seats[FB_MAX_TEAMS][FB_MAX_THREADS];

static int fb_spinning = 0;  /* idle members spinning now: runnable threads that are ours */

/* Wait for *addr to change from seen: spin (unless spin is 0), then sleep. member: count the
 * spin in fb_spinning. */
static void fb_wait_change(int *addr, int seen, int member, int spin)
{
    int i;
    double deadline = 0;
    if (!spin) {
        while (__atomic_load_n(addr, __ATOMIC_ACQUIRE) == seen)
            fb_sleep_while(addr, seen);
        return;
    }
    if (member)
        __atomic_add_fetch(&fb_spinning, 1, __ATOMIC_RELAXED);
    for (i = 1; __atomic_load_n(addr, __ATOMIC_ACQUIRE) == seen; i++) {
        fb_pause();
        if (i % 256 == 0) {
            if (deadline == 0) {
                deadline = fb_clock() + FB_SPIN_SECONDS;
            } else if (fb_clock() > deadline) {
                if (member) {
                    __atomic_sub_fetch(&fb_spinning, 1, __ATOMIC_RELAXED);
                    member = 0;
                }
                fb_sleep_while(addr, seen);  /* returns at once if it has already changed */
            }
        }
    }
    if (member)
        __atomic_sub_fetch(&fb_spinning, 1, __ATOMIC_RELAXED);
}

/* Idle members spinning now (they show as runnable threads in the system's count). */
static int fb_spinning_members(void)
{
    return __atomic_load_n(&fb_spinning, __ATOMIC_RELAXED);
}

static void *fb_member_main(void *p)
{
    fb_member_seat *seat = (fb_member_seat *)p;
    fb_pool *pool = seat->pool;
    int tid = seat->tid, seen = pool->born[tid], spin = 1;
    for (;;) {
        /* every member finishes or skips each job before the next is published, so the
           job it sees is the one gen counts, and the fields stay still while it reads them */
        fb_wait_change(&pool->gen, seen, 1, spin);
        seen++;
        if (tid < pool->team)
            pool->fn(pool->arg, tid);
        spin = pool->spin;  /* read before left says the job is over: the next job may change it */
        if (__atomic_sub_fetch(&pool->left, 1, __ATOMIC_ACQ_REL) == 0)
            fb_wake_all(&pool->left);
    }
    return NULL;
}

/* Flags a bad record: *slot := key when it holds none (-1) or a greater one, atomically. Members that
 * find different bad records in one batch report the least (record * 2 + part), whichever flags first. */
static inline void fb_flag_bad(int64_t *slot, int64_t key)
{
    int64_t cur = __atomic_load_n(slot, __ATOMIC_RELAXED);
    while ((cur < 0 || key < cur) &&
           !__atomic_compare_exchange_n(slot, &cur, key, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

/* Tests: 1 makes fb_team_run find no member thread (as when the system refuses them). */
static int fb_refuse_threads = 0;

/* Runs fn(arg, tid) for tid = 0 .. n-1, tid 0 on the calling thread, and waits for all; returns 1.
 * The caller takes a free pool (or waits for the first one when all are busy): the team
 * never depends on who else is training. If the system refuses a thread, the team is
 * smaller: *n and the barrier are set to the size that runs before any member starts; or,
 * with all_or_none (a team whose members' buffers are sized for n of them: a column split),
 * nothing runs and it returns 0. spin: 0 when the cores looked busy: the barrier's waiters
 * spin only briefly, the members after the job and the caller waiting for them sleep at once. */
static int fb_team_run(fb_task fn, void *arg, int *n, int all_or_none, fb_barrier *bar, int spin)
{
    pthread_t thread;
    fb_pool *pool = NULL;
    int want = *n, left, k;
    if (want > FB_MAX_THREADS)
        want = FB_MAX_THREADS;
    for (k = 0; k < FB_MAX_TEAMS && pool == NULL; k++)
        if (pthread_mutex_trylock(&fb_pools[k].lock) == 0)
            pool = &fb_pools[k];
    if (pool == NULL) {
        pool = &fb_pools[0];
        pthread_mutex_lock(&pool->lock);
    }
    while (pool->size + 1 < want) {
        fb_member_seat *seat = &fb_seats[pool - fb_pools][pool->size + 1];
        seat->pool = pool;
        seat->tid = pool->size + 1;
        pool->born[pool->size + 1] = pool->gen;
        if (pthread_create(&thread, NULL, fb_member_main, seat) != 0)
            break;
        pthread_detach(thread);
        pool->size++;
    }
    if (want > (fb_refuse_threads ? 1 : pool->size + 1)) {
        if (all_or_none) {
            pthread_mutex_unlock(&pool->lock);
            return 0;
        }
        want = fb_refuse_threads ? 1 : pool->size + 1;
    }
    *n = want;
    fb_barrier_init(bar, want, spin);
    pool->fn = fn;
    pool->arg = arg;
    pool->team = want;
    pool->spin = spin;
    pool->left = pool->size;
    __atomic_add_fetch(&pool->gen, 1, __ATOMIC_SEQ_CST);  /* publishes the job */
    fb_wake_all(&pool->gen);
    fn(arg, 0);
    while ((left = __atomic_load_n(&pool->left, __ATOMIC_ACQUIRE)) != 0)
        fb_wait_change(&pool->left, left, 0, spin);
    pthread_mutex_unlock(&pool->lock);
    return 1;
}

/* ---- a row split's way: its team, or one thread that runs all its members
 *
 * On busy cores a team's members wait at every barrier for one another's turn on a core: next
 * to one busy process on 2 cores a team of 2 gets ~1 core between its members and loses most of
 * it to those waits, while one thread alone has a whole core. Which way is faster is measured:
 * the call runs in pieces of FB_PIECE_SECONDS, each piece's steps per second are noted for its
 * way, and the way in use is left
 *  - when a piece of the other way (a try, FB_TRY_SECONDS long) was FB_MARGIN times faster, or
 *  - when the team's piece was FB_MARGIN times slower than one thread's last piece (load came).
 * The other way is tried after FB_TRY_FIRST seconds of training, the wait doubling up to
 * FB_TRY_LAST while tries lose, so a lost try costs about a percent of the time. The run queue
 * (the caller's glance at the runnable threads, at most every 0.2 s) picks the first way and
 * sets the pace of tries: one thread on cores the run queue says are taken tries the team once
 * after FB_TRY_FIRST (the glance can be stale: another library's threads that were busy just
 * before), then only every FB_TRY_LAST; when the run queue changes its mind against the way in
 * use (the load went away, or came) the other way is tried within FB_TRY_FIRST. The clock is this
 * workspace's training time, not the wall's, so a caller that trains in short calls far apart
 * tries as rarely per step as one long call.
 * No syscall: two clock reads (vDSO) a piece. */

#define FB_PIECE_SECONDS 0.025
#define FB_TRY_SECONDS 0.005
#define FB_TRY_FIRST 0.05
#define FB_TRY_LAST 2.0
#define FB_MARGIN 1.1

typedef struct {
    double rate[2];     /* steps per second of the last piece run each way: [0] one thread, [1] the team; 0: none yet */
    double clock;       /* seconds trained in pieces so far */
    double tried;       /* on that clock: the last try (or switch) */
    double wait;        /* tries come this long after the last one; doubles while they lose */
    double since;       /* on that clock: when the way in use was taken */
    int team;           /* the way in use: 1 the team, 0 one thread */
    int room;           /* the run queue's last word: a core for each member */
    int room_tried;     /* its word at the last try */
    int switches;       /* how often the way changed (tests, benches) */
    int tries;          /* tries so far (tests, benches) */
    double try_seconds; /* time they took */
} fb_way;

static void fb_way_init(fb_way *w, int team)
{
    w->rate[0] = w->rate[1] = 0;
    w->clock = w->tried = w->since = 0;
    w->wait = FB_TRY_FIRST;
    w->team = w->room = w->room_tried = team;
    w->switches = w->tries = 0;
    w->try_seconds = 0;
}

/* The way of the next piece (1 the team, 0 one thread) and its length in seconds. room: the run
 * queue leaves a core for each member (the caller's glance). */
static int fb_way_next(fb_way *w, int room, double *seconds)
{
    double wait = w->wait;
    w->room = room;
    if (room != w->team && room != w->room_tried)
        wait = FB_TRY_FIRST;  /* the run queue changed its mind against the way in use: try soon */
    else if (!room && !w->team && w->tries)
        wait = FB_TRY_LAST;   /* one thread, on cores that are taken: after a first try, the team is tried rarely */
    if (w->clock >= w->tried + wait) {
        *seconds = FB_TRY_SECONDS;
        return !w->team;
    }
    *seconds = FB_PIECE_SECONDS;
    return w->team;
}

static void fb_way_switch(fb_way *w, int team)
{
    w->team = team;
    w->since = w->clock;
    w->switches++;
}

/* After a piece run the way team: steps done in seconds. */
static void fb_way_note(fb_way *w, int team, long long steps, double seconds)
{
    double rate;
    if (steps <= 0 || seconds <= 0)
        return;
    rate = (double)steps / seconds;
    w->clock += seconds;
    w->rate[team] = rate;
    if (team != w->team) {  /* a try */
        w->tried = w->clock;
        w->room_tried = w->room;
        w->tries++;
        w->try_seconds += seconds;
        if (rate > FB_MARGIN * w->rate[w->team]) {
            fb_way_switch(w, team);
        } else if (w->wait < FB_TRY_LAST) {
            w->wait *= 2;
            if (w->wait > FB_TRY_LAST)
                w->wait = FB_TRY_LAST;
        }
    } else if (team && w->rate[0] > 0 && FB_MARGIN * rate < w->rate[0]) {
        /* the team fell behind one thread: load came. If the team had only just been taken
           (on a try that was lucky), that counts as a lost try. */
        if (w->clock - w->since < 4 * FB_PIECE_SECONDS) {
            if (w->wait < FB_TRY_LAST)
                w->wait = w->wait * 2 < FB_TRY_LAST ? w->wait * 2 : FB_TRY_LAST;
        } else {
            w->wait = FB_TRY_FIRST;
        }
        w->tried = w->clock;
        w->room_tried = w->room;
        fb_way_switch(w, 0);
    }
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
 * Counted: the first of several concurrent calls saves the BLAS's count, the last puts it
 * back. Every call must be followed by fb_blas_unpin(). */
static void fb_blas_pin(void)
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

/* The BLAS's thread count as its caller set it: the count saved while teams hold it pinned to
 * one (another thread's team may be running right now), else the BLAS's own; 0 when unknown. */
static int fb_blas_threads(void)
{
    int n = 0;
    pthread_mutex_lock(&fb_blas_lock);
    if (fb_blas_teams > 0 && fb_blas_saved > 0)
        n = fb_blas_saved;
    else if (fb_blas_get)
        n = fb_blas_get();
    pthread_mutex_unlock(&fb_blas_lock);
    return n;
}

/* After a team ran: the last team out gives the BLAS its thread count back. */
static void fb_blas_unpin(void)
{
    pthread_mutex_lock(&fb_blas_lock);
    if (--fb_blas_teams == 0 && fb_blas_saved > 0) {
        fb_blas_set(fb_blas_saved);
        fb_blas_saved = 0;
    }
    pthread_mutex_unlock(&fb_blas_lock);
}

/* ---- fork */

static int fb_blas_restore_in_child = 0;  /* the count a child's BLAS gets back (0: none) */

/* pthread_atfork's child handler: the child has only the forking thread. No locks are
 * taken here; the BLAS is set back later, from Python (fb_after_fork_in_child). */
static void fb_reset_in_child(void)
{
    int k;
    for (k = 0; k < FB_MAX_TEAMS; k++) {
        pthread_mutex_init(&fb_pools[k].lock, NULL);
        fb_pools[k].size = 0;
    }
    pthread_mutex_init(&fb_blas_lock, NULL);
    fb_blas_restore_in_child = fb_blas_teams > 0 ? fb_blas_saved : 0;
    fb_blas_teams = 0;
    fb_blas_saved = 0;
}

/* After a fork, in the child, from Python (os.register_at_fork): a BLAS that a parent's
 * team had pinned to one thread gets its thread count back. */
static void fb_after_fork_in_child(void)
{
    if (fb_blas_restore_in_child > 0 && fb_blas_set)
        fb_blas_set(fb_blas_restore_in_child);
    fb_blas_restore_in_child = 0;
}

static void fb_threads_init(void)
{
    int k;
    for (k = 0; k < FB_MAX_TEAMS; k++)
        pthread_mutex_init(&fb_pools[k].lock, NULL);
    pthread_atfork(NULL, NULL, fb_reset_in_child);
}

#endif
