/*
 * clockshim: an LD_PRELOAD library that makes a process's clocks run at another rate, for
 * Shoal's clock-skew fault tests.
 *
 *   SHOAL_CLOCK_RATE=0.25            clocks advance at a quarter of real speed from the start
 *   SHOAL_CLOCK_RATE_FILE=/tmp/rate  the rate is read from this file (a decimal number) and
 *                                    re-read every 20 ms of real time, so a test can change it
 *                                    while the process runs
 *   SHOAL_CLOCK_START_NS=N           every clock shows N nanoseconds at its first read (rather
 *                                    than the real time), so processes started apart read the
 *                                    same times
 *   SHOAL_CLOCK_TICK_NS=N            clocks move in steps of N nanoseconds (a coarse clock:
 *                                    every read within one step shows the same time)
 *
 * Every clock read through clock_gettime (Rust's Instant and SystemTime, timers built on them)
 * continues from where it stands when the rate changes: time never jumps or runs backwards,
 * it only runs faster or slower.
 *
 * Waits with an absolute deadline are kept consistent with the shown clock: Rust's timed waits
 * (Condvar::wait_timeout, thread parking with a timeout, channel receives with a timeout) call
 * syscall(SYS_futex, FUTEX_WAIT_BITSET, ...) with a deadline read from CLOCK_MONOTONIC, that is
 * from this shim, while the kernel compares it with the real clock. A process whose clock had
 * run fast stood S seconds ahead, and every such wait lasted S seconds longer than asked (its
 * admin port's reactor fell back to a thread whose 10 ms sleeps took seconds); one whose clock
 * had run slow stood behind, and such waits returned at once. So the shim turns such a
 * deadline into the real one: what is left of the wait in shown time, at the current rate.
 *
 * Built by the test harness with the system C compiler:
 *   cc -shared -fPIC -O2 -o clockshim.so clockshim.c -ldl -lpthread
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>

#define CLOCKS 12
#define RECHECK_NS 20000000LL

typedef int (*clock_fn)(clockid_t, struct timespec *);
typedef long (*syscall_fn)(long, ...);

static clock_fn real_clock_gettime;
static syscall_fn real_syscall;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static double rate = 1.0;
static const char *rate_file;
static long long start_ns = -1;
static long long tick_ns = 0;
static long long last_check_ns = -1;
/* Per clock: the real and the shown time at the last rate change (or first use). */
static long long base_real[CLOCKS];
static long long base_shown[CLOCKS];
static int started[CLOCKS];

static long long to_ns(const struct timespec *t) {
    return (long long)t->tv_sec * 1000000000LL + t->tv_nsec;
}

static void from_ns(long long ns, struct timespec *t) {
    t->tv_sec = ns / 1000000000LL;
    t->tv_nsec = ns % 1000000000LL;
}

static double read_rate(double fallback) {
    FILE *f = fopen(rate_file, "r");
    double r = fallback;
    if (f) {
        if (fscanf(f, "%lf", &r) != 1 || r <= 0.0) {
            r = fallback;
        }
        fclose(f);
    }
    return r;
}

static void init(void) {
    real_clock_gettime = (clock_fn)dlsym(RTLD_NEXT, "clock_gettime");
    real_syscall = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
    const char *r = getenv("SHOAL_CLOCK_RATE");
    if (r) {
        double v = atof(r);
        if (v > 0.0) {
            rate = v;
        }
    }
    rate_file = getenv("SHOAL_CLOCK_RATE_FILE");
    const char *s = getenv("SHOAL_CLOCK_START_NS");
    if (s) {
        start_ns = atoll(s);
    }
    const char *t = getenv("SHOAL_CLOCK_TICK_NS");
    if (t && atoll(t) > 0) {
        tick_ns = atoll(t);
    }
}

/* Re-base every started clock at the current instant, so a new rate continues smoothly. */
static void rebase(double next) {
    for (int c = 0; c < CLOCKS; c++) {
        if (!started[c]) {
            continue;
        }
        struct timespec now;
        real_clock_gettime((clockid_t)c, &now);
        long long real = to_ns(&now);
        base_shown[c] += (long long)((double)(real - base_real[c]) * rate);
        base_real[c] = real;
    }
    rate = next;
}

int clock_gettime(clockid_t id, struct timespec *tp) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init);
    int rc = real_clock_gettime(id, tp);
    if (rc != 0 || id < 0 || id >= CLOCKS) {
        return rc;
    }
    long long real = to_ns(tp);
    pthread_mutex_lock(&lock);
    if (rate_file && (last_check_ns < 0 || real - last_check_ns >= RECHECK_NS ||
                      real < last_check_ns)) {
        last_check_ns = real;
        double next = read_rate(rate);
        if (next != rate) {
            rebase(next);
        }
    }
    if (!started[id]) {
        started[id] = 1;
        base_real[id] = real;
        base_shown[id] = start_ns >= 0 ? start_ns : real;
    }
    long long shown = base_shown[id] + (long long)((double)(real - base_real[id]) * rate);
    if (tick_ns > 0) {
        shown -= (shown - base_shown[id]) % tick_ns;
    }
    pthread_mutex_unlock(&lock);
    from_ns(shown, tp);
    return 0;
}

/* The real deadline for a wait until `shown` on clock `id` as this process sees it: now, plus
 * what is left of the wait in shown time at the current rate. */
static struct timespec real_deadline(clockid_t id, const struct timespec *shown) {
    struct timespec shown_now, real_now, out;
    clock_gettime(id, &shown_now);
    real_clock_gettime(id, &real_now);
    long long left = to_ns(shown) - to_ns(&shown_now);
    if (left < 0) {
        left = 0;
    }
    pthread_mutex_lock(&lock);
    double r = rate;
    pthread_mutex_unlock(&lock);
    from_ns(to_ns(&real_now) + (long long)((double)left / r), &out);
    return out;
}

/* syscall(2), with the deadline of a futex wait that has one (FUTEX_WAIT_BITSET) made real. */
long syscall(long number, ...) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init);
    va_list ap;
    va_start(ap, number);
    long a[6];
    for (int i = 0; i < 6; i++) {
        a[i] = va_arg(ap, long);
    }
    va_end(ap);
    if (number == SYS_futex && a[3] != 0 &&
        (a[1] & FUTEX_CMD_MASK) == FUTEX_WAIT_BITSET) {
        clockid_t id = (a[1] & FUTEX_CLOCK_REALTIME) ? CLOCK_REALTIME : CLOCK_MONOTONIC;
        struct timespec deadline = real_deadline(id, (const struct timespec *)a[3]);
        return real_syscall(number, a[0], a[1], a[2], (long)&deadline, a[4], a[5]);
    }
    return real_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
