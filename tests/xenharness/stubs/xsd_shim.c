/*
 * LD_PRELOAD shim for running Debian's xenstored without a hypervisor
 * (test harness only).  xenstored learns dom0's xenstore event channel
 * from /proc/xen/xsd_port and maps dom0's ring page from /proc/xen/xsd_kva;
 * both exist only under Xen.  This shim redirects open()/open64()/openat()/
 * fopen() of exactly those two paths to the files named by
 * $XENHARNESS_XSD_PORT (holds a port number) and $XENHARNESS_XSD_KVA
 * (a 4096-byte zero file).  Every other path is passed through unchanged.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

static const char *redirect(const char *path)
{
    const char *r = NULL;
    if (!path)
        return path;
    if (strcmp(path, "/proc/xen/xsd_port") == 0)
        r = getenv("XENHARNESS_XSD_PORT");
    else if (strcmp(path, "/proc/xen/xsd_kva") == 0)
        r = getenv("XENHARNESS_XSD_KVA");
    return (r && *r) ? r : path;
}

static mode_t get_mode(int flags, va_list ap)
{
    if (flags & (O_CREAT | O_TMPFILE))
        return (mode_t)va_arg(ap, int);
    return 0;
}

int open(const char *path, int flags, ...)
{
    static int (*real)(const char *, int, ...);
    va_list ap;
    mode_t mode;
    if (!real)
        real = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    va_start(ap, flags);
    mode = get_mode(flags, ap);
    va_end(ap);
    return real(redirect(path), flags, mode);
}

int open64(const char *path, int flags, ...)
{
    static int (*real)(const char *, int, ...);
    va_list ap;
    mode_t mode;
    if (!real)
        real = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open64");
    va_start(ap, flags);
    mode = get_mode(flags, ap);
    va_end(ap);
    return real(redirect(path), flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    static int (*real)(int, const char *, int, ...);
    va_list ap;
    mode_t mode;
    if (!real)
        real = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, "openat");
    va_start(ap, flags);
    mode = get_mode(flags, ap);
    va_end(ap);
    return real(dirfd, redirect(path), flags, mode);
}

FILE *fopen(const char *path, const char *mode)
{
    static FILE *(*real)(const char *, const char *);
    if (!real)
        real = (FILE *(*)(const char *, const char *))dlsym(RTLD_NEXT, "fopen");
    return real(redirect(path), mode);
}

FILE *fopen64(const char *path, const char *mode)
{
    static FILE *(*real)(const char *, const char *);
    if (!real)
        real = (FILE *(*)(const char *, const char *))dlsym(RTLD_NEXT, "fopen64");
    return real(redirect(path), mode);
}
