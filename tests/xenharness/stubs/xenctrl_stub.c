/*
 * Stub libxenctrl.so.4.17 for running Debian's xenstored without a
 * hypervisor (test harness only).  Only the three symbols xenstored
 * imports are provided.
 *
 * xc_domain_getinfo() reports domain 0 plus every domain whose xenstore
 * ring is currently "mapped" through the stub libxengnttab (i.e. every
 * domain introduced with XS_INTRODUCE and not yet released), plus any
 * domain listed in $XENHARNESS_DOMAINS (comma separated ids).  All are
 * reported as running (not dying, not shut down), so xenstored keeps
 * permissions that name them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

/* Exported by the stub libxengnttab.so.1 (version node XENHARNESS_1). */
extern int xenharness_domain_mapped(uint32_t domid);

/* Prefix of xc_dominfo_t from xenctrl.h (4.17); xenstored only reads
 * domid and the flag bits (dying, crashed, shutdown, ...). */
struct xc_dominfo_prefix {
    uint32_t domid;
    uint32_t ssidref;
    unsigned int dying:1, crashed:1, shutdown:1,
                 paused:1, blocked:1, running:1,
                 hvm:1, debugged:1, xenstore:1, hap:1;
    unsigned int shutdown_reason;
};

struct xc_interface_core { int dummy; };
typedef struct xc_interface_core xc_interface;

xc_interface *xc_interface_open(void *logger, void *dombuild_logger,
                                unsigned open_flags)
{
    (void)logger; (void)dombuild_logger; (void)open_flags;
    return calloc(1, sizeof(xc_interface));
}

int xc_interface_close(xc_interface *xch)
{
    free(xch);
    return 0;
}

static int in_env_list(uint32_t domid)
{
    const char *s = getenv("XENHARNESS_DOMAINS");
    char *end;
    if (!s)
        return 0;
    while (*s) {
        unsigned long v = strtoul(s, &end, 10);
        if (end == s) {
            s++;
            continue;
        }
        if (v == domid)
            return 1;
        s = end;
    }
    return 0;
}

static int domain_exists(uint32_t domid)
{
    return domid == 0 || xenharness_domain_mapped(domid) || in_env_list(domid);
}

int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid,
                      unsigned int max_doms, void *info_v)
{
    struct xc_dominfo_prefix *info = info_v;
    unsigned int n = 0;
    uint32_t d;
    (void)xch;
    /* Like the real call: the first max_doms existing domains with
     * domid >= first_domid.  Domain ids stop at DOMID_FIRST_RESERVED. */
    for (d = first_domid; d < 0x7FF0U && n < max_doms; d++) {
        if (!domain_exists(d))
            continue;
        info->domid = d;
        info->ssidref = 0;
        info->dying = info->crashed = info->shutdown = 0;
        info->paused = info->blocked = 0;
        info->running = 1;
        info->hvm = info->debugged = info->xenstore = info->hap = 0;
        info->shutdown_reason = 0;
        n++;
        /* Callers in xenstored always ask for one domain; we do not know
         * sizeof(xc_dominfo_t) so never fill more than one entry. */
        break;
    }
    return (int)n;
}
