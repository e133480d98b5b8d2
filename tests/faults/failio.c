/* An LD_PRELOAD shim that makes write/pwrite/fsync/fdatasync fail, at the libc
 * boundary, while the file named by $KS_FAIL_TRIGGER exists. The errno comes
 * from $KS_FAIL_ERRNO (default EIO). Only files under $KS_FAIL_PREFIX fail, so
 * the test process's own pipes and logs keep working. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static int should_fail(int fd) {
    const char *trigger = getenv("KS_FAIL_TRIGGER");
    const char *prefix = getenv("KS_FAIL_PREFIX");
    struct stat st;
    char link[64], path[PATH_MAX];
    ssize_t n;
    if (!trigger || !prefix || stat(trigger, &st) != 0) return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = '\0';
    if (strncmp(path, prefix, strlen(prefix)) != 0) return 0;
    errno = getenv("KS_FAIL_ERRNO") ? atoi(getenv("KS_FAIL_ERRNO")) : EIO;
    return 1;
}

#define WRAP(ret, name, params, args)                               \
    ret name params {                                               \
        static ret(*real) params = NULL;                            \
        if (!real) real = (ret(*) params)dlsym(RTLD_NEXT, #name);   \
        if (should_fail(fd)) return -1;                             \
        return real args;                                           \
    }

WRAP(ssize_t, write, (int fd, const void *buf, size_t count), (fd, buf, count))
WRAP(ssize_t, pwrite, (int fd, const void *buf, size_t count, off_t off), (fd, buf, count, off))
WRAP(ssize_t, pwrite64, (int fd, const void *buf, size_t count, off_t off), (fd, buf, count, off))
WRAP(int, fsync, (int fd), (fd))
WRAP(int, fdatasync, (int fd), (fd))
