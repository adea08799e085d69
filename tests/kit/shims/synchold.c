/*
 * synchold: an LD_PRELOAD library that holds a process's log syncs while a file exists, for
 * Shoal's stalled-disk tests: a disk whose writes land in the page cache but whose flushes do
 * not return (a dying drive, a stuck controller, a remote volume that lost its server).
 *
 *   SHOAL_SYNC_HOLD_FILE=/tmp/hold   while this file exists, fdatasync, fsync and syncfs called
 *                                    on a thread whose name starts with "shoal-fsync" wait
 *                                    (re-checked every 10 ms), then run
 *   SHOAL_SNAP_HOLD_FILE=/tmp/snap   the same for threads whose name starts with "shoal-snap"
 *                                    (the threads that write snapshots)
 *
 * Only those threads: the raft thread's own syncs (hard state, a lone follower's log) run, so
 * the raft loop goes on while a leader's log syncs hang. Built by the test harness with the
 * system C compiler:
 *   cc -shared -fPIC -O2 -o synchold.so synchold.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

typedef int (*fd_fn)(int);

static fd_fn real_fdatasync;
static fd_fn real_fsync;
static fd_fn real_syncfs;
static const char *sync_hold_file;
static const char *snap_hold_file;

__attribute__((constructor)) static void init(void) {
    real_fdatasync = (fd_fn)dlsym(RTLD_NEXT, "fdatasync");
    real_fsync = (fd_fn)dlsym(RTLD_NEXT, "fsync");
    real_syncfs = (fd_fn)dlsym(RTLD_NEXT, "syncfs");
    sync_hold_file = getenv("SHOAL_SYNC_HOLD_FILE");
    snap_hold_file = getenv("SHOAL_SNAP_HOLD_FILE");
}

/* The hold file for the calling thread, if its name has one. */
static const char *hold_file_of_thread(void) {
    char name[17] = {0};
    if (prctl(PR_GET_NAME, name, 0, 0, 0) != 0) {
        return NULL;
    }
    if (strncmp(name, "shoal-fsync", 11) == 0) {
        return sync_hold_file;
    }
    if (strncmp(name, "shoal-snap", 10) == 0) {
        return snap_hold_file;
    }
    return NULL;
}

static void wait_while_held(void) {
    const char *hold_file = hold_file_of_thread();
    if (hold_file == NULL) {
        return;
    }
    struct timespec step = {0, 10 * 1000 * 1000};
    while (access(hold_file, F_OK) == 0) {
        nanosleep(&step, NULL);
    }
}

int fdatasync(int fd) {
    wait_while_held();
    return real_fdatasync(fd);
}

int fsync(int fd) {
    wait_while_held();
    return real_fsync(fd);
}

int syncfs(int fd) {
    wait_while_held();
    return real_syncfs(fd);
}
