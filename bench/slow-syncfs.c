/*
 * slow-syncfs: an LD_PRELOAD library that makes every syncfs of a process return
 * SHOAL_SLOW_SYNCFS_MS milliseconds late, as a slow medium's filesystem sync would (an SD card,
 * a network volume). Benchmarks only (bench/slow-syncfs.sh builds and loads it):
 *   cc -shared -fPIC -O2 -o slow-syncfs.so slow-syncfs.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

typedef int (*fd_fn)(int);
static fd_fn real_syncfs;
static long extra_ms;

__attribute__((constructor)) static void init(void) {
    real_syncfs = (fd_fn)dlsym(RTLD_NEXT, "syncfs");
    const char *ms = getenv("SHOAL_SLOW_SYNCFS_MS");
    extra_ms = ms ? atol(ms) : 0;
}

int syncfs(int fd) {
    int rc = real_syncfs(fd);
    struct timespec t = {extra_ms / 1000, (extra_ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
    return rc;
}
