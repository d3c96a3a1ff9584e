/*
 * Replacement libxencall.so.1 for tests: Debian's real libxenctrl.so.4.17
 * (and libxenlight, libxendevicemodel, libxenhypfs, hence Debian's real
 * `xl`) issue their hypercalls through it, and it answers the few that
 * memory management needs from a domain table kept in a text file, so that
 * every process of a test (xbctl, xl, a ctypes check) sees the same
 * "hypervisor".  Built against libxen-dev's headers of the same Xen version
 * (-D__XEN_TOOLS__), because domctl/sysctl carry an interface version that
 * Xen checks (EACCES when it differs), and so do we.
 *
 *   XBCTL_TEST_HYPERVISOR=PATH       the table (see tests/xenharness/hypervisor.py)
 *   XBCTL_TEST_HYPERCALL_LOG=PATH    one line appended per hypercall served
 *                                    (default: PATH.log beside the table)
 *
 * Table lines ("key=value" words; unknown keys are ignored):
 *   host total_pages=N free_pages=N outstanding_pages=N nr_cpus=N cpu_khz=N
 *   domain domid=N flags=N tot_pages=N max_pages=N outstanding_pages=N
 *          pod_target=N vcpus=N cpu_time=NS handle=UUID
 *   fail op=NAME domid=N errno=N times=N   (domid -1: any domain)
 * A call whose name matches a fail line fails with that errno (logged with
 * " -> E<errno>"), without effect; `times` counts down, the line goes at 0.
 * Unknown hypercalls are logged ("unknown ...") and fail with ENOSYS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xen/xen.h>
#include <xen/domctl.h>
#include <xen/sysctl.h>
#include <xen/memory.h>
#include <xen/version.h>

#define MAX_DOMAINS 32768  /* every domain id Xen hands out (below DOMID_FIRST_RESERVED) */
#define MAX_FAILS 16
#define PAGE_SIZE_BYTES 4096UL

struct rig_domain {
    uint32_t domid;
    uint32_t flags;
    uint64_t tot_pages, max_pages, outstanding_pages, pod_target, cpu_time;
    uint32_t vcpus;
    uint8_t handle[16];
};

struct rig_fail {
    char op[32];
    long domid;
    int err;
    long times;
};

struct rig_table {
    uint64_t total_pages, free_pages, outstanding_pages;
    uint32_t nr_cpus, cpu_khz;
    int nr_domains;
    struct rig_domain dom[MAX_DOMAINS];
    int nr_fails;
    struct rig_fail fail[MAX_FAILS];
};

struct xencall_handle {
    int fd;
};
typedef struct xencall_handle xencall_handle;

/* ------------------------------------------------------------------ */
/* the log                                                              */
/* ------------------------------------------------------------------ */

static const char *table_path(void)
{
    return getenv("XBCTL_TEST_HYPERVISOR");
}

static char call_note[512];

/* Describe the call being served; dispatch() logs it with its outcome. */
static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call_note, sizeof(call_note), fmt, ap);
    va_end(ap);
}

static void rig_log(const char *fmt, ...)
{
    char path[4096], line[512];
    const char *p = getenv("XBCTL_TEST_HYPERCALL_LOG");
    const char *t = table_path();
    va_list ap;
    int fd, n;

    if (!p || !*p) {
        if (!t)
            return;
        snprintf(path, sizeof(path), "%s.log", t);
        p = path;
    }
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (write(fd, line, n) < 0) { /* nothing sensible to do */ }
    close(fd);
}

/* ------------------------------------------------------------------ */
/* the table                                                            */
/* ------------------------------------------------------------------ */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* By hand, not sscanf: every hypercall parses every domain's line, and a rig of thousands
 * of domains must cost microseconds per line, as a hypervisor's hypercall does. */
static int parse_uuid(const char *s, uint8_t out[16])
{
    int i = 0;
    while (*s && i < 16) {
        int high, low;
        if (*s == '-') { s++; continue; }
        high = hex_digit(s[0]);
        low = high < 0 ? -1 : hex_digit(s[1]);
        if (low < 0)
            return -1;
        out[i++] = (uint8_t)(high << 4 | low);
        s += 2;
    }
    return i == 16 ? 0 : -1;
}

static void parse_line(struct rig_table *t, char *line)
{
    char *save = NULL, *word = strtok_r(line, " \t\n", &save);
    struct rig_domain *d = NULL;
    struct rig_fail *f = NULL;
    int host = 0;

    if (!word)
        return;
    if (!strcmp(word, "host")) {
        host = 1;
    } else if (!strcmp(word, "domain") && t->nr_domains < MAX_DOMAINS) {
        d = &t->dom[t->nr_domains++];
        memset(d, 0, sizeof(*d));
        d->vcpus = 1;
    } else if (!strcmp(word, "fail") && t->nr_fails < MAX_FAILS) {
        f = &t->fail[t->nr_fails++];
        memset(f, 0, sizeof(*f));
        f->domid = -1;
        f->err = ENOMEM;
        f->times = 1;
    } else {
        return;
    }
    while ((word = strtok_r(NULL, " \t\n", &save))) {
        char *eq = strchr(word, '=');
        const char *key = word, *val;
        uint64_t u;
        if (!eq)
            continue;
        *eq = '\0';
        val = eq + 1;
        u = strtoull(val, NULL, 0);
        if (host) {
            if (!strcmp(key, "total_pages")) t->total_pages = u;
            else if (!strcmp(key, "free_pages")) t->free_pages = u;
            else if (!strcmp(key, "outstanding_pages")) t->outstanding_pages = u;
            else if (!strcmp(key, "nr_cpus")) t->nr_cpus = u;
            else if (!strcmp(key, "cpu_khz")) t->cpu_khz = u;
        } else if (d) {
            if (!strcmp(key, "domid")) d->domid = u;
            else if (!strcmp(key, "flags")) d->flags = u;
            else if (!strcmp(key, "tot_pages")) d->tot_pages = u;
            else if (!strcmp(key, "max_pages")) d->max_pages = u;
            else if (!strcmp(key, "outstanding_pages")) d->outstanding_pages = u;
            else if (!strcmp(key, "pod_target")) d->pod_target = u;
            else if (!strcmp(key, "cpu_time")) d->cpu_time = u;
            else if (!strcmp(key, "vcpus")) d->vcpus = u;
            else if (!strcmp(key, "handle")) parse_uuid(val, d->handle);
        } else if (f) {
            if (!strcmp(key, "op")) snprintf(f->op, sizeof(f->op), "%s", val);
            else if (!strcmp(key, "domid")) f->domid = strtol(val, NULL, 0);
            else if (!strcmp(key, "errno")) f->err = (int)u;
            else if (!strcmp(key, "times")) f->times = strtol(val, NULL, 0);
        }
    }
}

/* The table as this process last loaded or stored it, with its generation: every writer
 * (table_store here, FakeHypervisor in hypervisor.py) raises the `generation=N` line, so a
 * table nobody changed since is not parsed again. A hypercall then costs microseconds
 * however many domains there are, as on a hypervisor (not a parse of thousands of lines). */
static struct rig_table *cached;
static unsigned long long cached_generation;  /* 0: nothing cached */
static char cached_path[4096];
static int layout_known, overlong;  /* see table_store */

/* What a hypercall changed: *dirty is 0 (nothing), DIRTY_TABLE (rewrite it all) or
 * DIRTY_DOMAIN + the index of the one domain whose line changed (rewritten in place). */
#define DIRTY_TABLE 1
#define DIRTY_DOMAIN 2

/* The generation the table file at FD declares on its second line, or 0 (none: parse it). */
static unsigned long long file_generation(int fd)
{
    char head[256];
    ssize_t n = pread(fd, head, sizeof(head) - 1, 0);
    char *at;

    if (n <= 0)
        return 0;
    head[n] = '\0';
    at = strstr(head, "\ngeneration=");
    return at ? strtoull(at + strlen("\ngeneration="), NULL, 10) : 0;
}

/* Open and lock the table; point *T at it (parsed, or as cached).  Returns the locked fd
 * or -errno. */
static int table_load(struct rig_table **tp)
{
    const char *p = table_path();
    struct rig_table *t;
    unsigned long long generation;
    FILE *fp;
    char line[1024];
    int fd;

    if (!p || !*p)
        return -ENODEV;  /* no hypervisor here */
    fd = open(p, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -ENODEV;
    if (flock(fd, LOCK_EX) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (!cached && !(cached = malloc(sizeof(*cached)))) {
        close(fd);
        return -ENOMEM;
    }
    t = *tp = cached;
    generation = file_generation(fd);
    if (generation && generation == cached_generation && !strcmp(cached_path, p))
        return fd;
    cached_generation = 0;
    layout_known = 0;  /* another writer's text: rewritten whole at the next change */
    snprintf(cached_path, sizeof(cached_path), "%s", p);
    memset(t, 0, sizeof(*t));
    fp = fdopen(dup(fd), "r");
    if (!fp) {
        close(fd);
        return -EIO;
    }
    while (fgets(line, sizeof(line), fp))
        parse_line(t, line);
    fclose(fp);
    cached_generation = generation;
    return fd;
}

/* The table's text, formatted by hand into a buffer kept between calls: a rig of thousands
 * of domains rewrites every line at each change, and printf and memory streams made that
 * milliseconds a hypercall. */
static char *text;
static size_t text_len, text_cap;
static int text_failed;

static void put(const char *s, size_t n)
{
    if (text_len + n > text_cap) {
        size_t cap = text_cap ? text_cap : 65536;
        char *grown;
        while (cap < text_len + n)
            cap *= 2;
        if (!(grown = realloc(text, cap))) {
            text_failed = 1;
            return;
        }
        text = grown;
        text_cap = cap;
    }
    memcpy(text + text_len, s, n);
    text_len += n;
}

static void put_text(const char *s)
{
    put(s, strlen(s));
}

static void put_u64(const char *key, uint64_t value)
{
    char digits[24];
    int at = sizeof(digits);

    do {
        digits[--at] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    put_text(key);
    put(digits + at, sizeof(digits) - at);
}

/* Every line but the first is padded with blanks to LINE_WIDTH (both parsers skip them),
 * so the line of domain i lies at a known offset and a change to one domain rewrites that
 * line alone; a table this process wrote itself (layout_known) is rewritten so. */
#define LINE_WIDTH 264  /* the longest domain line (every number at 20 digits) is 259 */
static const char COMMENT[] = "# xbctl test hypervisor (tests/xenharness/hypervisor.py)\n";

static void pad_line(size_t line_start)
{
    static const char blanks[LINE_WIDTH] = { [0 ... LINE_WIDTH - 1] = ' ' };
    size_t used = text_len - line_start;
    if (used < LINE_WIDTH - 1)
        put(blanks, LINE_WIDTH - 1 - used);
    else if (used > LINE_WIDTH - 1)
        overlong = 1;  /* offsets would not hold: no rewriting in place */
    put("\n", 1);
}

static void put_domain(const struct rig_domain *d)
{
    static const char hex[] = "0123456789abcdef";
    char uuid[36];
    int i, at = 0;

    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            uuid[at++] = '-';
        uuid[at++] = hex[d->handle[i] >> 4];
        uuid[at++] = hex[d->handle[i] & 15];
    }
    size_t start = text_len;
    put_u64("domain domid=", d->domid);
    put_u64(" flags=", d->flags);
    put_u64(" tot_pages=", d->tot_pages);
    put_u64(" max_pages=", d->max_pages);
    put_u64(" outstanding_pages=", d->outstanding_pages);
    put_u64(" pod_target=", d->pod_target);
    put_u64(" vcpus=", d->vcpus);
    put_u64(" cpu_time=", d->cpu_time);
    put_text(" handle=");
    put(uuid, sizeof(uuid));
    pad_line(start);
}

/* The generation line, padded: its own line. */
static void put_generation(unsigned long long generation)
{
    size_t start = text_len;
    put_u64("generation=", generation);
    pad_line(start);
}

/* Write what DIRTY says changed (the fd holds the lock): one domain's line and the
 * generation in place, or the whole table. */
static void table_store(int fd, const struct rig_table *t, int dirty)
{
    /* Never 0 (that means "no generation: parse"). */
    unsigned long long next = file_generation(fd) + 1 ? file_generation(fd) + 1 : 1;
    char line[256];
    size_t start;
    int i;

    cached_generation = 0;  /* until the file holds what the cache holds */
    text_len = 0;
    text_failed = overlong = 0;
    if (dirty >= DIRTY_DOMAIN && layout_known) {
        size_t generation_at = sizeof(COMMENT) - 1;
        size_t domain_at = generation_at + 2 * LINE_WIDTH + (size_t)(dirty - DIRTY_DOMAIN) * LINE_WIDTH;
        put_generation(next);
        put_domain(&t->dom[dirty - DIRTY_DOMAIN]);
        if (!text_failed && !overlong && text_len == 2 * LINE_WIDTH &&
            pwrite(fd, text + LINE_WIDTH, LINE_WIDTH, domain_at) == LINE_WIDTH &&
            pwrite(fd, text, LINE_WIDTH, generation_at) == LINE_WIDTH)
            cached_generation = next;
        else
            layout_known = 0;  /* the next change rewrites it all */
        return;
    }
    layout_known = 0;
    put_text(COMMENT);
    put_generation(next);
    start = text_len;
    snprintf(line, sizeof(line), "host total_pages=%" PRIu64 " free_pages=%" PRIu64
             " outstanding_pages=%" PRIu64 " nr_cpus=%u cpu_khz=%u",
             t->total_pages, t->free_pages, t->outstanding_pages, t->nr_cpus, t->cpu_khz);
    put_text(line);
    pad_line(start);
    for (i = 0; i < t->nr_domains; i++)
        put_domain(&t->dom[i]);
    for (i = 0; i < t->nr_fails; i++) {
        const struct rig_fail *f = &t->fail[i];
        if (f->times == 0)
            continue;
        snprintf(line, sizeof(line), "fail op=%s domid=%ld errno=%d times=%ld\n", f->op,
                 f->domid, f->err, f->times);
        put_text(line);
    }
    if (text_failed)
        return;
    /* No fsync: every process of a test reads the table through the page cache, and a
     * hypercall costs a real hypervisor microseconds, not a disk flush. Written over the
     * old text, then cut to length, so its pages stay (1,000 domains are 170 KB). */
    if (pwrite(fd, text, text_len, 0) == (ssize_t)text_len && ftruncate(fd, text_len) == 0) {
        cached_generation = next;
        layout_known = !overlong;
    }
}

static void table_unlock(int fd)
{
    flock(fd, LOCK_UN);
    close(fd);
}

static struct rig_domain *find_exact(struct rig_table *t, uint32_t domid)
{
    int i;
    for (i = 0; i < t->nr_domains; i++)
        if (t->dom[i].domid == domid)
            return &t->dom[i];
    return NULL;
}

/* The existing domain with the smallest id >= domid (Xen's for_each_domain order). */
static struct rig_domain *find_next(struct rig_table *t, uint32_t domid)
{
    struct rig_domain *best = NULL;
    int i;
    for (i = 0; i < t->nr_domains; i++)
        if (t->dom[i].domid >= domid && (!best || t->dom[i].domid < best->domid))
            best = &t->dom[i];
    return best;
}

static void mark_domain(int *dirty, struct rig_table *t, struct rig_domain *d)
{
    if (!*dirty)
        *dirty = DIRTY_DOMAIN + (int)(d - t->dom);
    else if (*dirty != DIRTY_DOMAIN + (int)(d - t->dom))
        *dirty = DIRTY_TABLE;
}

/* An injected failure for (op, domid): its errno (consumed once), else 0. */
static int injected(struct rig_table *t, int *dirty, const char *op, long domid)
{
    int i;
    for (i = 0; i < t->nr_fails; i++) {
        struct rig_fail *f = &t->fail[i];
        if (f->times == 0 || strcmp(f->op, op))
            continue;
        if (f->domid >= 0 && f->domid != domid)
            continue;
        if (f->times > 0) {
            f->times--;
            *dirty = DIRTY_TABLE;
        }
        return f->err;
    }
    return 0;
}

static const char *errname(int e)
{
    const char *name = strerrorname_np(e);  /* "ENOMEM" (glibc >= 2.32) */
    return name ? name : "EUNKNOWN";
}

static void fill_domaininfo(xen_domctl_getdomaininfo_t *info, const struct rig_domain *d)
{
    memset(info, 0, sizeof(*info));
    info->domain = d->domid;
    info->flags = d->flags;
    info->tot_pages = d->tot_pages;
    info->max_pages = d->max_pages;
    info->outstanding_pages = d->outstanding_pages;
    info->cpu_time = d->cpu_time;
    info->nr_online_vcpus = d->vcpus;
    info->max_vcpu_id = d->vcpus ? d->vcpus - 1 : 0;
    memcpy(info->handle, d->handle, sizeof(info->handle));
    info->cpupool = 0;
    info->gpaddr_bits = 52;
}

/* ------------------------------------------------------------------ */
/* the hypercalls                                                       */
/* ------------------------------------------------------------------ */

/* Each returns the hypercall's result: >= 0, or -errno. */

static long do_domctl(struct rig_table *t, int *dirty, struct xen_domctl *op)
{
    struct rig_domain *d;
    int e;

    if (op->interface_version != XEN_DOMCTL_INTERFACE_VERSION) {
        note("domctl cmd=%u interface_version=%#x", op->cmd,
                op->interface_version);
        return -EACCES;
    }
    switch (op->cmd) {
    case XEN_DOMCTL_getdomaininfo:
        note("getdomaininfo domid=%u", op->domain);
        if ((e = injected(t, dirty, "getdomaininfo", op->domain)))
            return -e;
        if (op->domain >= DOMID_FIRST_RESERVED)
            return -EINVAL;
        d = find_next(t, op->domain);
        if (!d)
            return -ESRCH;
        fill_domaininfo(&op->u.getdomaininfo, d);
        op->domain = d->domid;
        return 0;
    case XEN_DOMCTL_max_mem:
        note("max_mem domid=%u max_memkb=%" PRIu64, op->domain,
             (uint64_t)op->u.max_mem.max_memkb);
        if ((e = injected(t, dirty, "max_mem", op->domain)))
            return -e;
        d = find_exact(t, op->domain);
        if (!d)
            return -ESRCH;
        {
            uint64_t new_max = op->u.max_mem.max_memkb >> 2;
            d->max_pages = new_max > UINT32_MAX ? UINT32_MAX : new_max;
        }
        mark_domain(dirty, t, d);
        return 0;
    default:
        note("unknown domctl cmd=%u domid=%u", op->cmd, op->domain);
        return -ENOSYS;
    }
}

static long do_sysctl(struct rig_table *t, int *dirty, struct xen_sysctl *op)
{
    int e;

    if (op->interface_version != XEN_SYSCTL_INTERFACE_VERSION) {
        note("sysctl cmd=%u interface_version=%#x", op->cmd,
                op->interface_version);
        return -EACCES;
    }
    switch (op->cmd) {
    case XEN_SYSCTL_getdomaininfolist: {
        struct xen_sysctl_getdomaininfolist *l = &op->u.getdomaininfolist;
        xen_domctl_getdomaininfo_t *out = l->buffer.p;
        uint32_t n = 0, next = l->first_domain;
        struct rig_domain *d;

        note("getdomaininfolist first=%u max=%u", l->first_domain, l->max_domains);
        if ((e = injected(t, dirty, "getdomaininfolist", l->first_domain)))
            return -e;
        while (n < l->max_domains && next < DOMID_FIRST_RESERVED &&
               (d = find_next(t, next))) {
            fill_domaininfo(&out[n++], d);
            next = d->domid + 1;
        }
        l->num_domains = n;
        return 0;
    }
    case XEN_SYSCTL_physinfo: {
        struct xen_sysctl_physinfo *pi = &op->u.physinfo;
        note("physinfo");
        if ((e = injected(t, dirty, "physinfo", -1)))
            return -e;
        memset(pi, 0, sizeof(*pi));
        pi->threads_per_core = 1;
        pi->cores_per_socket = t->nr_cpus ? t->nr_cpus : 1;
        pi->nr_cpus = t->nr_cpus ? t->nr_cpus : 1;
        pi->max_cpu_id = pi->nr_cpus - 1;
        pi->nr_nodes = 1;
        pi->max_node_id = 0;
        pi->cpu_khz = t->cpu_khz;
        pi->capabilities = XEN_SYSCTL_PHYSCAP_hvm | XEN_SYSCTL_PHYSCAP_pv |
                           XEN_SYSCTL_PHYSCAP_hap | XEN_SYSCTL_PHYSCAP_shadow;
        pi->total_pages = t->total_pages;
        pi->free_pages = t->free_pages;
        pi->scrub_pages = 0;
        pi->outstanding_pages = t->outstanding_pages;
        pi->max_mfn = t->total_pages ? t->total_pages - 1 : 0;
        return 0;
    }
    case XEN_SYSCTL_sched_id:
        note("sched_id");
        op->u.sched_id.sched_id = XEN_SCHEDULER_CREDIT2;
        return 0;
    default:
        note("unknown sysctl cmd=%u", op->cmd);
        return -ENOSYS;
    }
}

static long do_memory_op(struct rig_table *t, int *dirty, unsigned long cmd, void *arg)
{
    struct xen_pod_target *pod = arg;
    struct rig_domain *d;
    int e;

    switch (cmd) {
    case XENMEM_set_pod_target:
        note("set_pod_target domid=%u target_pages=%" PRIu64, pod->domid,
             (uint64_t)pod->target_pages);
        if ((e = injected(t, dirty, "set_pod_target", pod->domid)))
            return -e;
        d = find_exact(t, pod->domid);
        if (!d)
            return -ESRCH;
        if (!(d->flags & XEN_DOMINF_hvm_guest))
            return -EINVAL;  /* Xen: PoD is for HVM/PVH domains only */
        if (pod->target_pages > d->max_pages)
            return -EINVAL;  /* as Xen's memory_op */
        d->pod_target = pod->target_pages;
        mark_domain(dirty, t, d);
        pod->tot_pages = d->tot_pages;
        pod->pod_cache_pages = 0;
        pod->pod_entries = 0;
        return 0;
    case XENMEM_get_pod_target:
        note("get_pod_target domid=%u", pod->domid);
        d = find_exact(t, pod->domid);
        if (!d)
            return -ESRCH;
        pod->target_pages = d->pod_target;
        pod->tot_pages = d->tot_pages;
        pod->pod_cache_pages = 0;
        pod->pod_entries = 0;
        return 0;
    default:
        note("unknown memory_op cmd=%lu", cmd);
        return -ENOSYS;
    }
}

static long do_xen_version(unsigned long cmd, void *arg)
{
    switch (cmd) {
    case XENVER_version:
        note("xen_version cmd=version");
        return (4 << 16) | 17;
    case XENVER_extraversion:
        note("xen_version cmd=extraversion");
        snprintf(arg, sizeof(xen_extraversion_t), ".7-rig");
        return 0;
    case XENVER_compile_info: {
        xen_compile_info_t *ci = arg;
        note("xen_version cmd=compile_info");
        memset(ci, 0, sizeof(*ci));
        snprintf(ci->compiler, sizeof(ci->compiler), "gcc");
        snprintf(ci->compile_by, sizeof(ci->compile_by), "xbctl-tests");
        snprintf(ci->compile_domain, sizeof(ci->compile_domain), "invalid");
        snprintf(ci->compile_date, sizeof(ci->compile_date), "Thu Jan  1 00:00:00 UTC 1970");
        return 0;
    }
    case XENVER_capabilities:
        note("xen_version cmd=capabilities");
        snprintf(arg, sizeof(xen_capabilities_info_t),
                 "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64");
        return 0;
    case XENVER_changeset:
        note("xen_version cmd=changeset");
        snprintf(arg, sizeof(xen_changeset_info_t), "xbctl test rig");
        return 0;
    case XENVER_platform_parameters: {
        xen_platform_parameters_t *pp = arg;
        note("xen_version cmd=platform_parameters");
        pp->virt_start = 0xffff800000000000UL;
        return 0;
    }
    case XENVER_pagesize:
        note("xen_version cmd=pagesize");
        return PAGE_SIZE_BYTES;
    case XENVER_commandline:
        note("xen_version cmd=commandline");
        snprintf(arg, sizeof(xen_commandline_t), "placeholder");
        return 0;
    case XENVER_get_features: {
        xen_feature_info_t *fi = arg;
        note("xen_version cmd=get_features");
        fi->submap = 0;
        return 0;
    }
    default:
        note("unknown xen_version cmd=%lu", cmd);
        return -ENOSYS;
    }
}

/* Log the noted call, with " -> ENAME" when it failed. */
static void log_outcome(long r)
{
    if (!call_note[0])
        return;
    if (r < 0)
        rig_log("%s -> %s", call_note, errname((int)-r));
    else
        rig_log("%s", call_note);
    call_note[0] = '\0';
}

static long dispatch(unsigned int op, const uint64_t a[5])
{
    struct rig_table *t;
    int fd, dirty = 0;
    long r;

    call_note[0] = '\0';
    if (op == __HYPERVISOR_xen_version) {
        r = do_xen_version(a[0], (void *)(uintptr_t)a[1]);
        log_outcome(r);
        return r;
    }
    if (op == __HYPERVISOR_multicall) {
        multicall_entry_t *calls = (void *)(uintptr_t)a[0];
        uint64_t i;
        for (i = 0; i < a[1]; i++) {
            uint64_t args[5];
            int k;
            for (k = 0; k < 5; k++)
                args[k] = calls[i].args[k];
            calls[i].result = (xen_ulong_t)dispatch(calls[i].op, args);
        }
        return 0;
    }
    if (op != __HYPERVISOR_domctl && op != __HYPERVISOR_sysctl &&
        op != __HYPERVISOR_memory_op) {
        rig_log("unknown hypercall op=%u arg0=%#" PRIx64 " -> ENOSYS", op, a[0]);
        return -ENOSYS;
    }
    fd = table_load(&t);
    if (fd < 0) {
        note("hypercall op=%u (no table at $XBCTL_TEST_HYPERVISOR)", op);
        log_outcome(fd);
        return fd;
    }
    if (op == __HYPERVISOR_domctl)
        r = do_domctl(t, &dirty, (void *)(uintptr_t)a[0]);
    else if (op == __HYPERVISOR_sysctl)
        r = do_sysctl(t, &dirty, (void *)(uintptr_t)a[0]);
    else
        r = do_memory_op(t, &dirty, a[0], (void *)(uintptr_t)a[1]);
    if (dirty)
        table_store(fd, t, dirty);
    table_unlock(fd);
    log_outcome(r);
    return r;
}

static long hypercall(unsigned int op, uint64_t a1, uint64_t a2, uint64_t a3,
                      uint64_t a4, uint64_t a5)
{
    uint64_t a[5] = { a1, a2, a3, a4, a5 };
    long r = dispatch(op, a);
    if (r < 0 && r > -4096) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

/* ------------------------------------------------------------------ */
/* the libxencall API (every symbol Debian's libxencall.so.1 exports)   */
/* ------------------------------------------------------------------ */

/*
 * The privcmd device is opened as libxencall opens it (tools/libs/call/linux.c):
 * /dev/xen/privcmd, else /proc/xen/privcmd.  One that is there but refuses us
 * (EACCES: a user who is not root) fails the open with that errno, as on a Xen
 * host; without either (a test machine) the rig is the hypervisor: /dev/null.
 */
static int absent(int err)
{
    return err == ENOENT || err == ENXIO || err == ENODEV || err == ENOTDIR;
}

xencall_handle *xencall_open(void *logger, unsigned open_flags)
{
    xencall_handle *h = calloc(1, sizeof(*h));
    int fd, err;
    (void)logger; (void)open_flags;
    if (!h)
        return NULL;
    fd = open("/dev/xen/privcmd", O_RDWR | O_CLOEXEC);
    if (fd < 0 && absent(errno))
        fd = open("/proc/xen/privcmd", O_RDWR | O_CLOEXEC);
    if (fd < 0 && absent(errno))
        fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        err = errno;
        free(h);
        errno = err;
        return NULL;
    }
    h->fd = fd;
    return h;
}

int xencall_close(xencall_handle *h)
{
    if (!h)
        return 0;
    if (h->fd >= 0)
        close(h->fd);
    free(h);
    return 0;
}

int xencall_fd(xencall_handle *h)
{
    return h->fd;
}

int xencall0(xencall_handle *h, unsigned int op)
{
    (void)h;
    return (int)hypercall(op, 0, 0, 0, 0, 0);
}

int xencall1(xencall_handle *h, unsigned int op, uint64_t a1)
{
    (void)h;
    return (int)hypercall(op, a1, 0, 0, 0, 0);
}

int xencall2(xencall_handle *h, unsigned int op, uint64_t a1, uint64_t a2)
{
    (void)h;
    return (int)hypercall(op, a1, a2, 0, 0, 0);
}

long xencall2L(xencall_handle *h, unsigned int op, uint64_t a1, uint64_t a2)
{
    (void)h;
    return hypercall(op, a1, a2, 0, 0, 0);
}

int xencall3(xencall_handle *h, unsigned int op, uint64_t a1, uint64_t a2, uint64_t a3)
{
    (void)h;
    return (int)hypercall(op, a1, a2, a3, 0, 0);
}

int xencall4(xencall_handle *h, unsigned int op, uint64_t a1, uint64_t a2, uint64_t a3,
             uint64_t a4)
{
    (void)h;
    return (int)hypercall(op, a1, a2, a3, a4, 0);
}

int xencall5(xencall_handle *h, unsigned int op, uint64_t a1, uint64_t a2, uint64_t a3,
             uint64_t a4, uint64_t a5)
{
    (void)h;
    return (int)hypercall(op, a1, a2, a3, a4, a5);
}

void *xencall_alloc_buffer_pages(xencall_handle *h, size_t nr_pages)
{
    void *p = mmap(NULL, nr_pages * PAGE_SIZE_BYTES, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    (void)h;
    if (p == MAP_FAILED)
        return NULL;
    memset(p, 0, nr_pages * PAGE_SIZE_BYTES);
    return p;
}

void xencall_free_buffer_pages(xencall_handle *h, void *p, size_t nr_pages)
{
    int saved = errno;  /* callers read errno of the hypercall after the free */
    (void)h;
    if (p)
        munmap(p, nr_pages * PAGE_SIZE_BYTES);
    errno = saved;
}

void *xencall_alloc_buffer(xencall_handle *h, size_t size)
{
    void *p = NULL;
    (void)h;
    if (posix_memalign(&p, PAGE_SIZE_BYTES, size ? size : 1))
        return NULL;
    memset(p, 0, size ? size : 1);
    return p;
}

void xencall_free_buffer(xencall_handle *h, void *p)
{
    int saved = errno;
    (void)h;
    free(p);
    errno = saved;
}

int xencall_buffers_never_fault(xencall_handle *h)
{
    (void)h;
    return 1;
}
