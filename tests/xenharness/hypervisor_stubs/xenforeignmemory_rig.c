/*
 * Replacement libxenforeignmemory.so.1 for tests: xc_interface_open() opens
 * a foreign-memory handle, which needs /dev/xen/privcmd on a real host.  The
 * rig has no guest memory to map, so opening succeeds and every mapping
 * fails with ENOSYS.  Every symbol of Debian's library is defined (its users
 * are linked BIND_NOW) in the same version nodes.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

struct xenforeignmemory_handle { int unused; };
typedef struct xenforeignmemory_handle xenforeignmemory_handle;
typedef struct xenforeignmemory_resource_handle xenforeignmemory_resource_handle;

xenforeignmemory_handle *xenforeignmemory_open(void *logger, unsigned open_flags)
{
    (void)logger; (void)open_flags;
    return calloc(1, sizeof(xenforeignmemory_handle));
}

int xenforeignmemory_close(xenforeignmemory_handle *fmem)
{
    free(fmem);
    return 0;
}

void *xenforeignmemory_map(xenforeignmemory_handle *fmem, uint32_t dom, int prot,
                           size_t pages, const void *arr, int *err)
{
    (void)fmem; (void)dom; (void)prot; (void)pages; (void)arr; (void)err;
    errno = ENOSYS;
    return NULL;
}

void *xenforeignmemory_map2(xenforeignmemory_handle *fmem, uint32_t dom, void *addr,
                            int prot, int flags, size_t pages, const void *arr, int *err)
{
    (void)fmem; (void)dom; (void)addr; (void)prot; (void)flags; (void)pages;
    (void)arr; (void)err;
    errno = ENOSYS;
    return NULL;
}

int xenforeignmemory_unmap(xenforeignmemory_handle *fmem, void *addr, size_t pages)
{
    (void)fmem; (void)addr; (void)pages;
    errno = EINVAL;
    return -1;
}

int xenforeignmemory_restrict(xenforeignmemory_handle *fmem, uint32_t domid)
{
    (void)fmem; (void)domid;
    return 0;
}

xenforeignmemory_resource_handle *xenforeignmemory_map_resource(
    xenforeignmemory_handle *fmem, uint32_t domid, unsigned int type, unsigned int id,
    unsigned long frame, unsigned long nr_frames, void **paddr, int prot, int flags)
{
    (void)fmem; (void)domid; (void)type; (void)id; (void)frame; (void)nr_frames;
    (void)paddr; (void)prot; (void)flags;
    errno = ENOSYS;
    return NULL;
}

int xenforeignmemory_unmap_resource(xenforeignmemory_handle *fmem,
                                    xenforeignmemory_resource_handle *fres)
{
    (void)fmem; (void)fres;
    return 0;
}

int xenforeignmemory_resource_size(xenforeignmemory_handle *fmem, uint32_t domid,
                                   unsigned int type, unsigned int id, size_t *size)
{
    (void)fmem; (void)domid; (void)type; (void)id; (void)size;
    errno = ENOSYS;
    return -1;
}
