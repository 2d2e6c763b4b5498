/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: the monitor (monitor.h): a listening Unix socket and up to
 * MON_MAX_CLIENTS connections, all in an epoll set of the monitor's own
 * whose fd the caller's event loop watches.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "monitor.h"
#include "vmm.h"

#define MON_MAX_CLIENTS 8
#define MON_LISTEN_TAG  MON_MAX_CLIENTS   /* epoll tag of the listening socket */

struct mon_client {
    int fd;
    size_t len;
    char buf[4096];
};

struct vmm_monitor {
    const struct vmm_monitor_ops *ops;
    void *opaque;
    char *path;
    int epoll_fd;
    int listen_fd;
    struct mon_client client[MON_MAX_CLIENTS];
};

static int mon_watch(struct vmm_monitor *m, int fd, unsigned tag)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = tag };
    return epoll_ctl(m->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
}

int vmm_monitor_new(struct vmm_monitor **out, const char *path, const struct vmm_monitor_ops *ops,
                    void *opaque)
{
    *out = NULL;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sa.sun_path)) {
        vmm_log("--monitor %s: path too long", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    struct vmm_monitor *m = calloc(1, sizeof(*m));
    if (!m || !(m->path = strdup(path))) {
        vmm_log("out of memory");
        free(m);
        return -1;
    }
    m->ops = ops;
    m->opaque = opaque;
    m->listen_fd = -1;
    for (unsigned i = 0; i < MON_MAX_CLIENTS; i++)
        m->client[i].fd = -1;
    m->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (m->epoll_fd < 0) {
        vmm_log("epoll: %s", strerror(errno));
        vmm_monitor_free(m);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        vmm_log("--monitor: socket: %s", strerror(errno));
        vmm_monitor_free(m);
        return -1;
    }
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path); /* a stale socket */
    mode_t old = umask(077);
    int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    int e = errno;
    umask(old);
    if (r < 0 || listen(fd, 4) < 0) {
        vmm_log("--monitor %s: %s", path, strerror(r < 0 ? e : errno));
        close(fd);
        vmm_monitor_free(m);
        return -1;
    }
    m->listen_fd = fd;
    if (mon_watch(m, fd, MON_LISTEN_TAG) < 0) {
        vmm_log("epoll: %s", strerror(errno));
        vmm_monitor_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

int vmm_monitor_fd(const struct vmm_monitor *m)
{
    return m->epoll_fd;
}

static void monitor_close_client(struct vmm_monitor *m, struct mon_client *c)
{
    epoll_ctl(m->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->len = 0;
}

static void monitor_answer(struct vmm_monitor *m, struct mon_client *c, const char *answer)
{
    char line[4200];
    int n = snprintf(line, sizeof(line), "%s\n", answer);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line))
        n = (int)sizeof(line) - 1;
    if (send(c->fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n)
        monitor_close_client(m, c);
}

void vmm_monitor_command(const struct vmm_monitor_ops *ops, void *opaque, char *line,
                         char *answer, size_t len)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
        line[--n] = 0;
    while (*line == ' ' || *line == '\t')
        line++;
    if (strcmp(line, "eject") == 0) {
        ops->change(opaque, NULL, answer, len);
    } else if (strncmp(line, "change", 6) == 0 && (line[6] == ' ' || line[6] == '\t' || !line[6])) {
        const char *iso = line + 6;
        while (*iso == ' ' || *iso == '\t')
            iso++;
        if (!*iso)
            snprintf(answer, len, "error: change needs an ISO file");
        else
            ops->change(opaque, iso, answer, len);
    } else if (strcmp(line, "info") == 0) {
        ops->info(opaque, answer, len);
    } else if (!*line) {
        snprintf(answer, len, "error: empty command (change ISO, eject, info)");
    } else {
        snprintf(answer, len, "error: unknown command (change ISO, eject, info)");
    }
}

static void monitor_accept(struct vmm_monitor *m)
{
    int fd = accept4(m->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    for (unsigned i = 0; i < MON_MAX_CLIENTS; i++) {
        if (m->client[i].fd >= 0)
            continue;
        m->client[i].fd = fd;
        m->client[i].len = 0;
        if (mon_watch(m, fd, i) < 0) {
            close(fd);
            m->client[i].fd = -1;
        }
        return;
    }
    static const char busy[] = "error: too many monitor connections\n";
    send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
}

static void monitor_read(struct vmm_monitor *m, struct mon_client *c)
{
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        monitor_close_client(m, c);
        return;
    }
    c->len += (size_t)n;
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (!nl)
            break;
        *nl = 0;
        size_t used = (size_t)(nl - c->buf) + 1;
        char answer[4096];
        vmm_monitor_command(m->ops, m->opaque, c->buf, answer, sizeof(answer));
        monitor_answer(m, c, answer);
        if (c->fd < 0)
            return;
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
    }
    if (c->len >= sizeof(c->buf) - 1) {
        monitor_answer(m, c, "error: line too long");
        if (c->fd >= 0)
            monitor_close_client(m, c);
    }
}

void vmm_monitor_dispatch(struct vmm_monitor *m)
{
    struct epoll_event evs[MON_MAX_CLIENTS + 1];
    int n = epoll_wait(m->epoll_fd, evs, MON_MAX_CLIENTS + 1, 0);
    for (int i = 0; i < n; i++) {
        unsigned tag = evs[i].data.u32;
        if (tag == MON_LISTEN_TAG)
            monitor_accept(m);
        else if (tag < MON_MAX_CLIENTS && m->client[tag].fd >= 0)
            monitor_read(m, &m->client[tag]);
    }
}

void vmm_monitor_free(struct vmm_monitor *m)
{
    if (!m)
        return;
    for (unsigned i = 0; i < MON_MAX_CLIENTS; i++)
        if (m->client[i].fd >= 0)
            monitor_close_client(m, &m->client[i]);
    if (m->listen_fd >= 0) {
        close(m->listen_fd);
        unlink(m->path);
    }
    if (m->epoll_fd >= 0)
        close(m->epoll_fd);
    free(m->path);
    free(m);
}
