/* SPDX-License-Identifier: MIT */
/*
 * formats/blkdebug/blkdebug.c: QEMU's error-injection filter ("blkdebug"),
 * for QEMU's iotests and for testing how a format copes with failing I/O.
 *
 * Named "blkdebug:CONFIG:IMAGE" (CONFIG may be empty), or by a json: name
 * whose rules come inline (lib/json_name.c hands them over as the open
 * option blkdebug.rules, in the config file's syntax).  The device passes
 * every request to IMAGE (opened by its name, a file or another protocol),
 * unless an active rule fails it.
 *
 * The config file, as QEMU reads it:
 *
 *   # a comment
 *   [inject-error]
 *   event = "read_aio"      the event that activates the rule (required)
 *   errno = "5"             the error returned (EIO)
 *   sector = "0"            only requests covering this 512-byte sector
 *   once = "on"             the rule goes after failing one request
 *   immediately = "off"     (QEMU fails at once or after a yield: the same here)
 *   state = "2"             only in this state (0: any)
 *   iotype = "read,write"   which requests (all but block-status)
 *   [set-state]
 *   event = "write_aio"
 *   state = "1"             only in this state (0: any)
 *   new_state = "2"
 *
 * The state starts at 1.  When an event happens, the rules of that event
 * whose state matches run: each inject-error rule becomes active (the
 * first one that does replaces the active ones), a set-state rule sets the
 * state the device moves to afterwards.  A request fails when an active
 * rule matches it (QEMU's rule_check).
 *
 * Events: the formats above say them with dev_debug_event() (QEMU's
 * BLKDBG_EVENT); the device says read_aio and write_aio itself for
 * requests that come with no format above it (a raw image on blkdebug,
 * where QEMU's raw format driver says them).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

#define BD_MAX_RULES 128
#define BD_CONFIG_MAX (64 * 1024)

enum bd_iotype { IO_READ, IO_WRITE, IO_WRITE_ZEROES, IO_DISCARD, IO_FLUSH, IO_BLOCK_STATUS };

struct bd_rule {
    bool inject;           /* inject-error, else set-state */
    char event[32];
    int state;             /* 0: any */
    int error;             /* inject: positive errno */
    int64_t offset;        /* inject: -1 any, else a byte */
    bool once, immediately;
    unsigned iotypes;      /* inject: 1 << IO_* */
    int new_state;         /* set-state */
    bool active, removed;
    unsigned active_seq;   /* the newest active first, as QEMU's list head insert */
};

#define BD_MAX_BREAKS 16
#define BD_TAG_MAX 32

/* A breakpoint (qemu-io's break EVENT TAG): the next request that comes to
 * this device after EVENT is held back, until resumed.  QEMU suspends the
 * coroutine at the event; here the request that comes next (the I/O the
 * event announces: the format sends it right after) waits in its place. */
struct bd_break {
    char event[32], tag[BD_TAG_MAX];
    bool hit;               /* EVENT happened: the next request waits */
    struct vdisk_req *held; /* the request waiting, or NULL */
};

struct blkdebug {
    struct vdisk_dev *child; /* (first: filter_* in lib/device.c) */
    pthread_mutex_t lock;
    struct bd_rule rules[BD_MAX_RULES];
    unsigned nrules;
    int state;
    unsigned seq;
    struct bd_break breaks[BD_MAX_BREAKS];
    unsigned nbreaks;
};

/* QEMU 7.2's BlkdebugEvent names. */
static const char *const bd_events[] = {
    "l1_update", "l1_grow_alloc_table", "l1_grow_write_table", "l1_grow_activate_table",
    "l2_load", "l2_update", "l2_update_compressed", "l2_alloc_cow_read", "l2_alloc_write",
    "read_aio", "read_backing_aio", "read_compressed", "write_aio", "write_compressed",
    "vmstate_load", "vmstate_save", "cow_read", "cow_write", "reftable_load", "reftable_grow",
    "reftable_update", "refblock_load", "refblock_update", "refblock_update_part",
    "refblock_alloc", "refblock_alloc_hookup", "refblock_alloc_write",
    "refblock_alloc_write_blocks", "refblock_alloc_write_table",
    "refblock_alloc_switch_table", "cluster_alloc", "cluster_alloc_bytes", "cluster_free",
    "flush_to_os", "flush_to_disk", "pwritev_rmw_head", "pwritev_rmw_after_head",
    "pwritev_rmw_tail", "pwritev_rmw_after_tail", "pwritev", "pwritev_zero", "pwritev_done",
    "empty_image_prepare", "l1_shrink_write_table", "l1_shrink_free_l2_clusters",
    "cor_write", "cluster_alloc_space", "none",
};

bool blkdebug_is_name(const char *filename)
{
    return !strncmp(filename, "blkdebug:", 9);
}

/* A whole number in [MIN, MAX] from V (decimal), for KEY. */
static int bd_int(const char *where, const char *key, const char *v, int64_t min, int64_t max,
                  int64_t *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || errno || n < min || n > max)
        return err_set(-EINVAL, "%s: '%s' of blkdebug: '%s' is not a number in [%" PRId64
                       ", %" PRId64 "]", where, key, v, min, max);
    *out = n;
    return 0;
}

static int bd_iotypes(const char *where, const char *v, unsigned *out)
{
    static const char *const names[] = {"read", "write", "write-zeroes", "discard", "flush",
                                        "block-status"};
    *out = 0;
    const char *p = v;
    while (*p) {
        size_t n = strcspn(p, ",");
        size_t i;
        for (i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strlen(names[i]) == n && !strncmp(p, names[i], n))
                break;
        if (i == sizeof names / sizeof names[0])
            return err_set(-EINVAL, "%s: blkdebug: unknown iotype in '%s'", where, v);
        *out |= 1u << i;
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

/* One key = value of the rule R being read. */
static int bd_set(const char *where, struct bd_rule *r, const char *key, const char *v)
{
    int64_t n = 0; /* (set by bd_int; GCC -O3 cannot see it) */
    int ret;
    if (!strcmp(key, "event")) {
        size_t i;
        for (i = 0; i < sizeof bd_events / sizeof bd_events[0]; i++)
            if (!strcmp(v, bd_events[i]))
                break;
        if (i == sizeof bd_events / sizeof bd_events[0])
            return err_set(-EINVAL, "Invalid event name \"%s\"", v);
        snprintf(r->event, sizeof r->event, "%s", v);
        return 0;
    }
    if (!strcmp(key, "state")) {
        if ((ret = bd_int(where, key, v, 0, INT32_MAX, &n)) < 0)
            return ret;
        r->state = (int)n;
        return 0;
    }
    if (r->inject) {
        if (!strcmp(key, "errno")) {
            if ((ret = bd_int(where, key, v, 0, 4095, &n)) < 0)
                return ret;
            r->error = (int)n;
            return 0;
        }
        if (!strcmp(key, "sector")) {
            if ((ret = bd_int(where, key, v, -1, INT64_MAX / 512, &n)) < 0)
                return ret;
            r->offset = n < 0 ? -1 : n * 512;
            return 0;
        }
        if (!strcmp(key, "once") || !strcmp(key, "immediately")) {
            bool b;
            if ((ret = opt_bool(key, v, &b)) < 0)
                return ret;
            *(!strcmp(key, "once") ? &r->once : &r->immediately) = b;
            return 0;
        }
        if (!strcmp(key, "iotype"))
            return bd_iotypes(where, v, &r->iotypes);
    } else if (!strcmp(key, "new_state")) {
        if ((ret = bd_int(where, key, v, 0, INT32_MAX, &n)) < 0)
            return ret;
        r->new_state = (int)n;
        return 0;
    }
    return err_set(-EINVAL, "%s: blkdebug: the %s rules have no option '%s'", where,
                   r->inject ? "inject-error" : "set-state", key);
}

static int bd_end_rule(const char *where, struct blkdebug *s, struct bd_rule *r)
{
    if (!r)
        return 0;
    if (!r->event[0])
        return err_set(-EINVAL, "%s: blkdebug: a rule without an event", where);
    (void)s;
    return 0;
}

/*
 * Reads rules in the config file syntax from TEXT (LEN bytes; WHERE names
 * it in messages): "[section]" lines, 'key = "value"' lines, '#' comments
 * and blank lines; any other line is refused.
 */
static int bd_parse(struct blkdebug *s, const char *text, size_t len, const char *where)
{
    struct bd_rule *cur = NULL;
    bool skip = false; /* a section that is not a rule */
    unsigned lineno = 0;
    for (size_t pos = 0; pos < len;) {
        size_t e = pos;
        while (e < len && text[e] != '\n')
            e++;
        char line[1200];
        size_t n = e - pos;
        lineno++;
        if (n >= sizeof line)
            return err_set(-EINVAL, "%s:%u: line too long", where, lineno);
        memcpy(line, text + pos, n);
        line[n] = '\0';
        pos = e < len ? e + 1 : e;
        if (memchr(line, '\0', n))
            return err_set(-EINVAL, "%s:%u: a NUL byte", where, lineno);
        char *p = line;
        while (*p == ' ' || *p == '\t' || *p == '\r')
            p++;
        size_t l = strlen(p);
        while (l && (p[l - 1] == ' ' || p[l - 1] == '\t' || p[l - 1] == '\r'))
            p[--l] = '\0';
        if (!*p || *p == '#')
            continue;
        if (*p == '[') {
            int r = bd_end_rule(where, s, cur);
            if (r < 0)
                return r;
            cur = NULL;
            skip = false;
            if (p[l - 1] != ']')
                return err_set(-EINVAL, "%s:%u: parse error", where, lineno);
            p[l - 1] = '\0';
            p++;
            bool inject = !strcmp(p, "inject-error");
            if (!inject && strcmp(p, "set-state")) {
                skip = true; /* QEMU ignores groups it does not know */
                continue;
            }
            if (s->nrules == BD_MAX_RULES)
                return err_set(-EINVAL, "%s: more than %d blkdebug rules", where, BD_MAX_RULES);
            cur = &s->rules[s->nrules++];
            *cur = (struct bd_rule){.inject = inject, .error = EIO, .offset = -1,
                                    .iotypes = (1u << IO_READ) | (1u << IO_WRITE) |
                                               (1u << IO_WRITE_ZEROES) | (1u << IO_DISCARD) |
                                               (1u << IO_FLUSH)};
            continue;
        }
        /* key = "value" */
        char *eq = strchr(p, '=');
        if (!eq)
            return err_set(-EINVAL, "%s:%u: parse error", where, lineno);
        char *k = p, *ke = eq;
        while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t'))
            ke--;
        *ke = '\0';
        char *v = eq + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t vl = strlen(v);
        if (vl < 2 || v[0] != '"' || v[vl - 1] != '"' || !*k)
            return err_set(-EINVAL, "%s:%u: parse error", where, lineno);
        v[vl - 1] = '\0';
        v++;
        if (skip)
            continue;
        if (!cur)
            return err_set(-EINVAL, "%s:%u: no group defined", where, lineno);
        int r = bd_set(where, cur, k, v);
        if (r < 0)
            return r;
    }
    return bd_end_rule(where, s, cur);
}

int blkdebug_parse_rules(const char *text, size_t len)
{
    struct blkdebug *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    int r = bd_parse(s, text, len, "blkdebug rules");
    free(s);
    return r;
}

static int bd_read_config(struct blkdebug *s, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return err_set(-errno, "Could not read blkdebug config file: %s", strerror(errno));
    char *buf = malloc(BD_CONFIG_MAX + 1);
    if (!buf) {
        fclose(f);
        return err_set(-ENOMEM, "out of memory");
    }
    size_t n = fread(buf, 1, BD_CONFIG_MAX + 1, f);
    bool error = ferror(f);
    fclose(f);
    int r;
    if (error)
        r = err_set(-EIO, "Could not read blkdebug config file %s", path);
    else if (n > BD_CONFIG_MAX)
        r = err_set(-EFBIG, "%s: a blkdebug config file of more than %d bytes", path,
                    BD_CONFIG_MAX);
    else
        r = bd_parse(s, buf, n, path);
    free(buf);
    return r;
}

/* QEMU's blkdebug_debug_event. */
static void bd_event(struct vdisk_dev *dev, const char *event)
{
    struct blkdebug *s = dev->priv;
    pthread_mutex_lock(&s->lock);
    int new_state = s->state;
    bool injected = false;
    for (unsigned i = 0; i < s->nrules; i++) {
        struct bd_rule *r = &s->rules[i];
        if (r->removed || strcmp(r->event, event) || (r->state && r->state != s->state))
            continue;
        if (r->inject) {
            if (!injected) {
                for (unsigned k = 0; k < s->nrules; k++)
                    s->rules[k].active = false;
                injected = true;
            }
            r->active = true;
            r->active_seq = ++s->seq;
        } else {
            new_state = r->new_state;
        }
    }
    s->state = new_state;
    /* Breakpoints on the event (one each, as QEMU removes a breakpoint
     * when it suspends a request). */
    for (unsigned i = 0; i < s->nbreaks; i++)
        if (!s->breaks[i].hit && !strcmp(s->breaks[i].event, event))
            s->breaks[i].hit = true;
    pthread_mutex_unlock(&s->lock);
}

/* Under the lock: the breakpoint that holds the request arriving back
 * (hit, holding nothing yet), or NULL. */
static struct bd_break *bd_break_for(struct blkdebug *s)
{
    for (unsigned i = 0; i < s->nbreaks; i++)
        if (s->breaks[i].hit && !s->breaks[i].held)
            return &s->breaks[i];
    return NULL;
}

static void bd_continue(struct vdisk_req *req);
static void bd_write_done(struct vdisk_req *child, int ret);

/* Under the lock: breakpoint I goes. */
static void bd_drop(struct blkdebug *s, unsigned i)
{
    s->breaks[i] = s->breaks[s->nbreaks - 1];
    __atomic_store_n(&s->nbreaks, s->nbreaks - 1, __ATOMIC_RELEASE);
}

static int bd_debug_break(struct vdisk_dev *dev, enum debug_break_op op, const char *event,
                          const char *tag)
{
    struct blkdebug *s = dev->priv;
    if (strlen(tag) >= BD_TAG_MAX)
        return err_set(-EINVAL, "blkdebug: the tag '%s' is longer than %d bytes", tag,
                       BD_TAG_MAX - 1);
    pthread_mutex_lock(&s->lock);
    int r = 0;
    struct vdisk_req *resume = NULL;
    unsigned i;
    for (i = 0; i < s->nbreaks && strcmp(s->breaks[i].tag, tag); i++)
        ;
    switch (op) {
    case DEBUG_BREAK: {
        size_t e;
        for (e = 0; e < sizeof bd_events / sizeof bd_events[0] && strcmp(event, bd_events[e]);
             e++)
            ;
        if (e == sizeof bd_events / sizeof bd_events[0])
            r = err_set(-ENOENT, "Invalid event name \"%s\"", event);
        else if (s->nbreaks == BD_MAX_BREAKS)
            r = err_set(-ENOSPC, "blkdebug: at most %d breakpoints", BD_MAX_BREAKS);
        if (r == 0) {
            struct bd_break *b = &s->breaks[s->nbreaks];
            *b = (struct bd_break){0};
            snprintf(b->event, sizeof b->event, "%s", event);
            snprintf(b->tag, sizeof b->tag, "%s", tag);
            __atomic_store_n(&s->nbreaks, s->nbreaks + 1, __ATOMIC_RELEASE);
        }
        break;
    }
    case DEBUG_REMOVE_BREAK:
        /* (a breakpoint holding a request stays until it is resumed) */
        if (i == s->nbreaks || s->breaks[i].held)
            r = err_set(-ENOENT, "Breakpoint with tag '%s' not found", tag);
        else
            bd_drop(s, i);
        break;
    case DEBUG_RESUME:
        if (i == s->nbreaks || !s->breaks[i].held) {
            r = err_set(-ENOENT, "Failed to resume request: No such file or directory");
        } else {
            resume = s->breaks[i].held;
            bd_drop(s, i);
        }
        break;
    case DEBUG_IS_SUSPENDED:
        r = i < s->nbreaks && s->breaks[i].held != NULL;
        break;
    }
    pthread_mutex_unlock(&s->lock);
    if (resume) /* (on its queue's thread, where requests are sent) */
        req_resume_later(resume, bd_continue, NULL);
    return r;
}

/* QEMU's rule_check: the error an active rule gives this request, or 0. */
static int bd_check(struct blkdebug *s, enum bd_iotype t, uint64_t off, uint64_t len)
{
    pthread_mutex_lock(&s->lock);
    struct bd_rule *hit = NULL;
    for (unsigned i = 0; i < s->nrules; i++) {
        struct bd_rule *r = &s->rules[i];
        if (!r->active || r->removed || !(r->iotypes & (1u << t)))
            continue;
        if (r->offset >= 0 && !(len && (uint64_t)r->offset >= off &&
                                (uint64_t)r->offset - off < len))
            continue;
        if (!hit || r->active_seq > hit->active_seq)
            hit = r;
    }
    int err = hit ? hit->error : 0;
    if (hit && err && hit->once)
        hit->removed = true;
    pthread_mutex_unlock(&s->lock);
    return err;
}

static void bd_submit(struct vdisk_req *req)
{
    struct vdisk_dev *dev = req->dev;
    struct blkdebug *s = dev->priv;
    /* Opened as a raw image, the events QEMU's raw driver says (not while
     * the format is probed). */
    if (dev->raw_image && req->op == VDISK_OP_READ)
        bd_event(dev, "read_aio");
    else if (dev->raw_image && req->op == VDISK_OP_WRITE)
        bd_event(dev, "write_aio");
    /* What QEMU's block layer says of every write that reaches the device
     * (bdrv_aligned_pwritev); pwritev_done when it is done (bd_write_done). */
    if (req->op == VDISK_OP_WRITE)
        bd_event(dev, "pwritev");
    else if (req->op == VDISK_OP_WRITE_ZEROES)
        bd_event(dev, "pwritev_zero");
    if (__atomic_load_n(&s->nbreaks, __ATOMIC_ACQUIRE)) {
        pthread_mutex_lock(&s->lock);
        struct bd_break *b = bd_break_for(s);
        if (b)
            b->held = req; /* until resumed (bd_debug_break) */
        pthread_mutex_unlock(&s->lock);
        if (b)
            return;
    }
    bd_continue(req);
}

/* REQ past its breakpoints: the rules' errors, else on to the image. */
static void bd_continue(struct vdisk_req *req)
{
    struct blkdebug *s = req->dev->priv;
    static const enum bd_iotype types[] = {
        [VDISK_OP_READ] = IO_READ, [VDISK_OP_WRITE] = IO_WRITE, [VDISK_OP_FLUSH] = IO_FLUSH,
        [VDISK_OP_DISCARD] = IO_DISCARD, [VDISK_OP_WRITE_ZEROES] = IO_WRITE_ZEROES,
    };
    int err = bd_check(s, types[req->op], req->op == VDISK_OP_FLUSH ? 0 : req->offset,
                       req->op == VDISK_OP_FLUSH ? 0 : req->length);
    if (err) {
        req_fail(req, -err, "%s of %" PRIu64 " bytes at offset %" PRIu64 ": blkdebug: %s",
                 op_name(req->op), req->length, req->offset, strerror(err));
        return;
    }
    unsigned flags = req->flags & (VDISK_REQ_FUA | VDISK_REQ_MAY_UNMAP | VDISK_REQ_NO_FALLBACK);
    if (req->op != VDISK_OP_WRITE && req->op != VDISK_OP_WRITE_ZEROES) {
        req_send_child(req, s->child, req->op, req->offset, req->length, req->iov, req->iovcnt,
                       flags);
        return;
    }
    struct vdisk_req *c = req_new_child(req, s->child, req->op, req->offset, req->length,
                                        req->iov, req->iovcnt, flags, bd_write_done, NULL);
    if (!c) {
        req_fail(req, -ENOMEM, "out of memory");
        return;
    }
    req_submit(c);
}

static void bd_write_done(struct vdisk_req *child, int ret)
{
    bd_event(child->parent->dev, "pwritev_done");
    req_child_finishes_parent(child, ret);
}

static void bd_set_growable(struct vdisk_dev *dev)
{
    struct blkdebug *s = dev->priv;
    dev_set_growable(s->child);
}

static int bd_block_status(struct vdisk_dev *dev, uint64_t off, uint64_t len,
                           struct vdisk_extent *ext)
{
    struct blkdebug *s = dev->priv;
    int err = bd_check(s, IO_BLOCK_STATUS, off, len);
    if (err)
        return err_set(-err, "%s: blkdebug: %s", dev->filename, strerror(err));
    return dev_block_status(s->child, off, len, ext);
}

static void bd_close(struct vdisk_dev *dev)
{
    struct blkdebug *s = dev->priv;
    dev_remove_upper(s->child, dev);
    dev_unref(s->child);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int bd_open(struct vdisk_dev *dev, struct vdisk_dev *file, struct opt_set *os)
{
    (void)file;
    const char *name = dev->filename;
    if (!blkdebug_is_name(name))
        return err_set(-EINVAL, "File name string must start with 'blkdebug:'");
    const char *conf = name + 9, *colon = strchr(conf, ':');
    if (!colon)
        return err_set(-EINVAL, "blkdebug requires both config file and image path");
    const char *image = colon + 1;
    if (!*image)
        return err_set(-EINVAL, "%s: blkdebug: no image named", name);
    struct blkdebug *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(-ENOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    s->state = 1;
    int r = 0;
    if (colon > conf) {
        char *path = strndup(conf, (size_t)(colon - conf));
        r = path ? bd_read_config(s, path) : err_set(-ENOMEM, "out of memory");
        free(path);
    }
    /* align: the request alignment blkdebug asks of the layers above (the
     * core then reads, modifies and writes around unaligned writes). */
    uint64_t align = 0;
    const char *av = opt_take(os, "blkdebug.align");
    if (r == 0 && av && (r = opt_size("align", av, 1, 1u << 20, &align)) == 0 &&
        (align & (align - 1)))
        r = err_set(-EINVAL, "Cannot meet constraints with align %" PRIu64, align);
    const char *rules = opt_take(os, "blkdebug.rules");
    if (r == 0 && rules)
        r = bd_parse(s, rules, strlen(rules), "blkdebug rules");
    if (r == 0)
        r = dev_open_file(&s->child, image, os, &dev->params);
    if (r < 0) {
        pthread_mutex_destroy(&s->lock);
        free(s);
        return r;
    }
    struct vdisk_dev *c = s->child;
    dev->priv = s;
    dev->engine = c->engine;
    dev->size = dev_size(c);
    dev->file_length = c->file_length;
    dev->block_size = c->block_size;
    dev->align = align > c->align ? (uint32_t)align : c->align;
    dev->caps = c->caps;
    dev_add_upper(c, dev);
    return 0;
}

const struct vdisk_driver vdisk_driver_blkdebug = {
    .name = "blkdebug",
    .protocol = true,
    .set_growable = bd_set_growable,
    .open = bd_open,
    .take_perms = filter_take_perms,
    .submit = bd_submit,
    .block_status = bd_block_status,
    .allocated_size = filter_allocated_size,
    .truncate = filter_truncate,
    .debug_event = bd_event,
    .debug_break = bd_debug_break,
    .close = bd_close,
};
