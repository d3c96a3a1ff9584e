/*
 * Stub libxengnttab.so.1 for running Debian's xenstored without a
 * hypervisor (test harness only).  "Mapping" a domain's xenstore ring
 * grant gives a fresh zeroed anonymous page: the ring stays empty, so the
 * domain never sends requests and xenstored never blocks on it.  If
 * $XENHARNESS_RING_DIR is set, the page is instead a shared mapping of the
 * file RING_DIR/ring-<domid> (created, 4096 zero bytes, removed on unmap),
 * so a test can play that domain's kernel side of the ring.  The set of
 * currently mapped domains is what the stub libxenctrl reports as existing
 * domains.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <sys/mman.h>

struct xengntdev_handle { int dummy; };
typedef struct xengntdev_handle xengnttab_handle;

struct mapping { void *addr; uint32_t domid; };
static struct mapping *maps;
static size_t nmaps, capmaps;

xengnttab_handle *xengnttab_open(void *logger, unsigned open_flags)
{
    (void)logger; (void)open_flags;
    return calloc(1, sizeof(xengnttab_handle));
}

int xengnttab_close(xengnttab_handle *xgt)
{
    free(xgt);
    return 0;
}

int xengnttab_set_max_grants(xengnttab_handle *xgt, uint32_t nr_grants)
{
    (void)xgt; (void)nr_grants;
    return 0;
}

void *xengnttab_map_grant_ref(xengnttab_handle *xgt, uint32_t domid,
                              uint32_t ref, int prot)
{
    void *p;
    (void)xgt; (void)ref;
    if (nmaps == capmaps) {
        size_t ncap = capmaps ? capmaps * 2 : 64;
        struct mapping *n = realloc(maps, ncap * sizeof(*n));
        if (!n) {
            errno = ENOMEM;
            return NULL;
        }
        maps = n;
        capmaps = ncap;
    }
    {
        const char *dir = getenv("XENHARNESS_RING_DIR");
        size_t len = (size_t)getpagesize();
        if (dir && *dir) {
            char path[4096];
            int fd;
            snprintf(path, sizeof(path), "%s/ring-%u", dir, (unsigned)domid);
            fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (fd < 0)
                return NULL;
            if (ftruncate(fd, (off_t)len) < 0) {
                close(fd);
                return NULL;
            }
            p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            close(fd);
        } else {
            p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        }
        (void)prot;
        if (p == MAP_FAILED)
            return NULL;
    }
    maps[nmaps].addr = p;
    maps[nmaps].domid = domid;
    nmaps++;
    return p;
}

int xengnttab_unmap(xengnttab_handle *xgt, void *start_address, uint32_t count)
{
    size_t i;
    (void)xgt;
    for (i = 0; i < nmaps; i++) {
        if (maps[i].addr == start_address) {
            const char *dir = getenv("XENHARNESS_RING_DIR");
            if (dir && *dir) {
                char path[4096];
                snprintf(path, sizeof(path), "%s/ring-%u", dir,
                         (unsigned)maps[i].domid);
                unlink(path);
            }
            maps[i] = maps[nmaps - 1];
            nmaps--;
            break;
        }
    }
    return munmap(start_address, (size_t)count * (size_t)getpagesize());
}

/* Private helper for the stub libxenctrl. */
int xenharness_domain_mapped(uint32_t domid)
{
    size_t i;
    for (i = 0; i < nmaps; i++)
        if (maps[i].domid == domid)
            return 1;
    return 0;
}
