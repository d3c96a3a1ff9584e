/*
 * Stub libxenevtchn.so.1 for running Debian's xenstored without a
 * hypervisor (test harness only).  The handle's fd is an eventfd that is
 * never signalled, so xenstored's poll loop never wakes up for it (no
 * busy loop).  If $XENHARNESS_EVTCHN_FIFO names a path, the fd is instead
 * the read end of a FIFO created there: a test writes a byte to it to
 * "raise an event", which wakes xenstored so it scans its domain rings.  Binding returns fresh local port numbers; notify/unmask
 * do nothing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <errno.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <fcntl.h>

#define XENEVTCHN_NO_CLOEXEC (1 << 0)

struct xenevtchn_handle { int fd; };
typedef struct xenevtchn_handle xenevtchn_handle;
typedef uint32_t evtchn_port_t;
typedef int xenevtchn_port_or_error_t;

static evtchn_port_t next_port = 16;
static evtchn_port_t virq_port_seen;

xenevtchn_handle *xenevtchn_open(void *logger, unsigned open_flags)
{
    xenevtchn_handle *h = calloc(1, sizeof(*h));
    (void)logger;
    if (!h)
        return NULL;
    {
        const char *fifo = getenv("XENHARNESS_EVTCHN_FIFO");
        int cloexec = (open_flags & XENEVTCHN_NO_CLOEXEC) ? 0 : 1;
        if (fifo && *fifo) {
            unlink(fifo);
            if (mkfifo(fifo, 0600) < 0) {
                free(h);
                return NULL;
            }
            /* O_RDWR: we are a writer too, so no EOF when tests close. */
            h->fd = open(fifo, O_RDWR | O_NONBLOCK | (cloexec ? O_CLOEXEC : 0));
        } else {
            h->fd = eventfd(0, EFD_NONBLOCK | (cloexec ? EFD_CLOEXEC : 0));
        }
    }
    if (h->fd < 0) {
        free(h);
        return NULL;
    }
    return h;
}

xenevtchn_handle *xenevtchn_fdopen(void *logger, int fd, unsigned open_flags)
{
    xenevtchn_handle *h = calloc(1, sizeof(*h));
    (void)logger; (void)open_flags;
    if (!h)
        return NULL;
    h->fd = fd;
    return h;
}

int xenevtchn_close(xenevtchn_handle *xce)
{
    if (xce) {
        close(xce->fd);
        free(xce);
    }
    return 0;
}

int xenevtchn_fd(xenevtchn_handle *xce)
{
    return xce->fd;
}

int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port)
{
    (void)xce; (void)port;
    return 0;
}

xenevtchn_port_or_error_t
xenevtchn_bind_unbound_port(xenevtchn_handle *xce, uint32_t domid)
{
    (void)xce; (void)domid;
    return (xenevtchn_port_or_error_t)next_port++;
}

xenevtchn_port_or_error_t
xenevtchn_bind_interdomain(xenevtchn_handle *xce, uint32_t domid,
                           evtchn_port_t remote_port)
{
    (void)xce; (void)domid; (void)remote_port;
    return (xenevtchn_port_or_error_t)next_port++;
}

xenevtchn_port_or_error_t
xenevtchn_bind_virq(xenevtchn_handle *xce, unsigned int virq)
{
    (void)xce; (void)virq;
    virq_port_seen = next_port;
    return (xenevtchn_port_or_error_t)next_port++;
}

int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port)
{
    (void)xce; (void)port;
    return 0;
}

xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce)
{
    char buf[256];
    /* Drain the kick(s) and report the VIRQ_DOM_EXC port: xenstored then
     * rescans its domains and, back in its loop, their rings. */
    while (read(xce->fd, buf, sizeof(buf)) > 0)
        ;
    return (xenevtchn_port_or_error_t)virq_port_seen;
}

int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port)
{
    (void)xce; (void)port;
    return 0;
}

int xenevtchn_restrict(xenevtchn_handle *xce, uint32_t domid)
{
    (void)xce; (void)domid;
    return 0;
}
