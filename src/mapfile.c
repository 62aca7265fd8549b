/* mapfile: owns opening a regular file and mapping it read-only (open, fstat, S_ISREG,
 * mmap), with the error messages the file readers share. */
#include "mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void mapfile_reset(struct mapfile *m) {
    m->fd = -1;
    m->map = NULL;
    m->len = 0;
}

int mapfile_open(struct mapfile *m, const char *path, char *err, size_t errlen) {
    mapfile_reset(m);
    m->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (m->fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        mapfile_reset(m);
        return -1;
    }
    struct stat sb;
    if (fstat(m->fd, &sb) || !S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        goto fail;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size > SIZE_MAX) {
        snprintf(err, errlen, "%s: mmap of %llu bytes failed: %s", path, (unsigned long long)size,
                 strerror(EFBIG));
        goto fail;
    }
    if (size == 0) return 0;
    m->map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, m->fd, 0);
    if (m->map == MAP_FAILED) {
        m->map = NULL;
        snprintf(err, errlen, "%s: mmap of %llu bytes failed: %s", path, (unsigned long long)size,
                 strerror(errno));
        goto fail;
    }
    m->len = (size_t)size;
    return 0;
fail:
    mapfile_close(m);
    return -1;
}

void mapfile_close(struct mapfile *m) {
    if (m->map) munmap(m->map, m->len);
    if (m->fd >= 0) close(m->fd);
    mapfile_reset(m);
}
