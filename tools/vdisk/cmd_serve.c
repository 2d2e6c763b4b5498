/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/cmd_serve.c: vdisk serve: the virtio-blk and virtio-scsi
 * CD-ROM models of libvdisk served to a hypervisor (QEMU's vhost-user-blk
 * and vhost-user-scsi devices) as a vhost-user back end on Unix sockets.
 *
 * One thread, one epoll loop over: each device's listening socket (while no
 * front end is connected) or its connection, the kick eventfd of each ring,
 * each model's completion fd, a signalfd (SIGINT, SIGTERM: drain, flush,
 * exit 0) and an optional monitor socket (change / eject the CD).
 *
 * This file is the process: options, the socket files, the monitor, the
 * loop.  The protocol, and everything a front end can send, is handled in
 * vhost_user.c (see there for the rules against a hostile front end).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <vdisk/virtio.h>

#include "cli.h"
#include "vhost_user.h"

/* ---- Sockets ------------------------------------------------------------------------ */

/*
 * A listening socket on PATH, created with MODE (0600, or 0660 for a group:
 * GID when not -1) whatever the umask.  An existing socket file is replaced
 * only when nothing listens on it (a stale one); any other file, or a live
 * server's socket, is an error.  Returns the fd (non-blocking) or -1.
 */
static int make_listener(const char *path, mode_t mode, gid_t gid, struct sock_file *sf)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) {
        cli_error("serve: socket path '%s' is longer than %zu bytes", path, sizeof a.sun_path - 1);
        return -1;
    }
    strcpy(a.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            cli_error("serve: '%s' exists and is not a socket", path);
            return -1;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        int c = probe < 0 ? -1 : connect(probe, (struct sockaddr *)&a, sizeof a);
        int e = errno;
        if (probe >= 0)
            close(probe);
        if (c == 0 || e == EAGAIN || e == EINPROGRESS) {
            cli_error("serve: '%s' is in use by another server", path);
            return -1;
        }
        if (e != ECONNREFUSED) {
            cli_error("serve: '%s': %s (cannot tell whether a server listens on it)", path,
                      strerror(e));
            return -1;
        }
        /* A stale socket from an earlier run: the rename below replaces it. */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        cli_error("serve: socket: %s", strerror(errno));
        return -1;
    }
    /* Bind under a temporary name and rename once listening, so that the
     * socket file appears only when it accepts connections. */
    char tmp[sizeof a.sun_path];
    int n = snprintf(tmp, sizeof tmp, "%s.%ld", path, (long)getpid());
    const char *bind_path = n > 0 && (size_t)n < sizeof tmp ? tmp : path;
    strcpy(a.sun_path, bind_path);
    unlink(tmp);
    mode_t old_mask = umask(0177); /* never open to others, even for a moment */
    int r = bind(fd, (struct sockaddr *)&a, sizeof a);
    int e = errno;
    umask(old_mask);
    if (r == 0 && gid != (gid_t)-1 && (chown(bind_path, (uid_t)-1, gid) < 0 ||
                                       chmod(bind_path, mode) < 0)) {
        r = -1;
        e = errno;
    }
    if (r == 0 && listen(fd, 4) < 0) {
        r = -1;
        e = errno;
    }
    if (r == 0 && bind_path != path && rename(bind_path, path) < 0) {
        r = -1;
        e = errno;
    }
    if (r == 0 && lstat(path, &st) < 0) {
        r = -1;
        e = errno;
    }
    if (r < 0) {
        cli_error("serve: %s: %s", path, strerror(e));
        unlink(bind_path);
        close(fd);
        return -1;
    }
    *sf = (struct sock_file){.created = true, .dev = st.st_dev, .ino = st.st_ino};
    return fd;
}

/* Removes PATH if it is still the socket file SF this process made. */
static void remove_listener(const char *path, const struct sock_file *sf)
{
    struct stat st;
    if (sf->created && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == sf->dev &&
        st.st_ino == sf->ino)
        unlink(path);
}

/* ---- The monitor ---------------------------------------------------------------------- */

struct monitor {
    const char *path;
    struct sock_file sock;
    int start_fd;        /* the directory serve started in: relative paths */
    const char *root;    /* --monitor-root, resolved, or NULL */
    int listen_fd, conn_fd;
    char line[4096];
    size_t len;
    struct ev_tag listen_tag, conn_tag;
    struct server *cd;   /* the CD-ROM's server, or NULL */
};

static void mon_say(struct monitor *mon, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mon_say(struct monitor *mon, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
    if (send(mon->conn_fd, buf, len, MSG_NOSIGNAL) < 0) {
        /* The reader went away; the next read sees the end. */
    }
}

/*
 * Opens PATH for `change` (relative to the directory serve started in):
 * a regular file or a block device, under --monitor-root when given,
 * opened without blocking (no FIFO, no device that waits).  Returns the
 * fd, or -1 after answering the error.
 */
static int mon_open_medium(struct monitor *mon, const char *path)
{
    struct stat st, fst;
    if (fstatat(mon->start_fd, path, &st, 0) < 0) {
        mon_say(mon, "error: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        mon_say(mon, "error: %s: not a regular file or block device\n", path);
        return -1;
    }
    int fd = openat(mon->start_fd, path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        mon_say(mon, "error: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &fst) < 0 || (!S_ISREG(fst.st_mode) && !S_ISBLK(fst.st_mode))) {
        mon_say(mon, "error: %s: not a regular file or block device\n", path);
        close(fd);
        return -1;
    }
    if (mon->root) {
        /* Where the file really is (symbolic links and .. resolved). */
        char link[64], real[PATH_MAX];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, real, sizeof real - 1);
        size_t rl = strlen(mon->root);
        if (n > 0)
            real[n] = 0;
        if (n <= 0 || (size_t)n >= sizeof real - 1 ||
            !(strcmp(mon->root, "/") == 0 ||
              (strncmp(real, mon->root, rl) == 0 && real[rl] == '/'))) {
            mon_say(mon, "error: %s: outside the --monitor-root folder %s\n", path, mon->root);
            close(fd);
            return -1;
        }
    }
    return fd;
}

static void mon_command(struct monitor *mon, char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
        line[--n] = 0;
    while (*line == ' ' || *line == '\t')
        line++;
    if (!*line)
        return;
    if (strcmp(line, "help") == 0) {
        mon_say(mon, "commands: change PATH | eject | info | help\n");
        return;
    }
    if (!mon->cd) {
        mon_say(mon, "error: no CD-ROM is served (--vhost-user-scsi)\n");
        return;
    }
    struct server *s = mon->cd;
    if (strncmp(line, "change ", 7) == 0 || strcmp(line, "eject") == 0) {
        const char *iso = NULL;
        if (line[0] == 'c') {
            iso = line + 7;
            while (*iso == ' ')
                iso++;
            if (!*iso) {
                mon_say(mon, "error: change: no path\n");
                return;
            }
        }
        int fd = -1;
        char proc[64];
        if (iso) {
            if ((fd = mon_open_medium(mon, iso)) < 0)
                return;
            /* The library opens the very file checked, through the fd. */
            snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        }
        int r = vdisk_virtio_scsi_change_medium(s->v, iso ? proc : NULL);
        if (fd >= 0)
            close(fd);
        if (r < 0) {
            mon_say(mon, "error: %s%s%s\n", iso ? iso : "", iso ? ": " : "", vdisk_get_error());
            slog(s, "monitor: %s%s%s", iso ? iso : "", iso ? ": " : "", vdisk_get_error());
        } else {
            mon_say(mon, "ok\n");
            if (!s->quiet)
                slog(s, "medium %s%s", iso ? "changed to " : "ejected", iso ? iso : "");
        }
        return;
    }
    if (strcmp(line, "info") == 0) {
        struct vdisk_cdrom_media md = {.struct_size = sizeof md};
        if (vdisk_cdrom_get_media(s->dev, &md) < 0) {
            mon_say(mon, "error: %s\n", vdisk_get_error());
            return;
        }
        if (md.loaded)
            mon_say(mon, "medium: loaded, %" PRIu64 " blocks of 2048 bytes, volume id '%s', "
                    "%" PRIu64 " changes\n", md.blocks, md.volume_id, md.media_changes);
        else
            mon_say(mon, "medium: none, %" PRIu64 " changes\n", md.media_changes);
        return;
    }
    mon_say(mon, "error: unknown command (try 'help')\n");
}

static void mon_close(struct monitor *mon, int epfd)
{
    if (mon->conn_fd < 0)
        return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, mon->conn_fd, NULL);
    close_fd(&mon->conn_fd);
    mon->len = 0;
}

static void mon_accept(struct monitor *mon, int epfd)
{
    int fd = accept4(mon->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    mon_close(mon, epfd); /* one client at a time: the newest */
    mon->conn_fd = fd;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = &mon->conn_tag};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0)
        close_fd(&mon->conn_fd);
}

static void mon_read(struct monitor *mon, int epfd)
{
    for (;;) {
        ssize_t n = read(mon->conn_fd, mon->line + mon->len, sizeof mon->line - 1 - mon->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            if (mon->len) { /* a last line without its newline */
                mon->line[mon->len] = 0;
                mon_command(mon, mon->line);
            }
            mon_close(mon, epfd);
            return;
        }
        mon->len += (size_t)n;
        char *nl;
        while ((nl = memchr(mon->line, '\n', mon->len))) {
            *nl = 0;
            mon_command(mon, mon->line);
            size_t used = (size_t)(nl + 1 - mon->line);
            memmove(mon->line, nl + 1, mon->len - used);
            mon->len -= used;
        }
        if (mon->len == sizeof mon->line - 1) {
            mon_say(mon, "error: line too long\n");
            mon_close(mon, epfd);
            return;
        }
    }
}

/* ---- The command ------------------------------------------------------------------------ */

static void help(void)
{
    printf("usage: vdisk serve --vhost-user-blk SOCKET [-r] [-f FMT] [-t CACHE] [--num-queues N]\n"
           "                   [--serial S] [OPTIONS] IMAGE\n"
           "       vdisk serve --vhost-user-scsi SOCKET [--cdrom ISO] [--monitor MSOCK] [OPTIONS]\n"
           "       vdisk serve --vhost-user-blk SOCKET ... IMAGE --vhost-user-scsi SOCKET2 ...\n"
           "\n"
           "Serves IMAGE as a virtio-blk disk, and/or ISO as a CD-ROM on a virtio-scsi\n"
           "controller, to a hypervisor's vhost-user front end (QEMU's vhost-user-blk and\n"
           "vhost-user-scsi devices) on Unix socket SOCKET.  The socket file is created\n"
           "with mode 0600 (a stale socket is replaced, a live server's socket is not)\n"
           "and removed at exit if it is still ours.  When the front end\n"
           "disconnects, the next one is accepted (QEMU's -chardev socket,reconnect=N).\n"
           "SIGINT, SIGTERM or SIGHUP: requests in flight finish, the image is flushed,\n"
           "and the exit status is 0.\n"
           "\n"
           "  --vhost-user-blk=SOCKET   serve IMAGE as virtio-blk on SOCKET\n"
           "  --vhost-user-scsi=SOCKET  serve a virtio-scsi CD-ROM on SOCKET\n"
           "  --cdrom=ISO               the CD-ROM's medium, a raw image (without it the\n"
           "                            drive is empty)\n"
           "  -f, --format=FMT          IMAGE's format (probed when not given)\n"
           "  -r, --read-only           the disk is read-only (VIRTIO_BLK_F_RO)\n"
           "  -t, --cache=MODE          IMAGE's cache mode (none, writeback, ...)\n"
           "      --num-queues=N        request queues of each device (default 1)\n"
           "      --queue-size=N        the largest ring size accepted (default 1024)\n"
           "      --serial=S            the disk's serial number (GET_ID; 20 bytes at most)\n"
           "      --monitor=MSOCK       a Unix socket taking one command a line:\n"
           "                              change PATH   load another ISO (raw) in the CD-ROM:\n"
           "                                            a regular file or block device; a\n"
           "                                            relative PATH is taken from the\n"
           "                                            directory serve started in\n"
           "                              eject         leave the drive empty\n"
           "                              info          the medium's state\n"
           "                            each answered by 'ok' or 'error: ...' (e.g.\n"
           "                            echo 'change b.iso' | socat - UNIX-CONNECT:MSOCK);\n"
           "                            MSOCK is mode 0600: change opens any file this\n"
           "                            process can read\n"
           "      --monitor-root=DIR    change takes only files under DIR (after symbolic\n"
           "                            links and ..)\n"
           "      --socket-group=GROUP  the vhost-user sockets are mode 0660, group GROUP\n"
           "      --backing-confine=on|off  on (the default): IMAGE's backing files must\n"
           "                            stay inside its folder (names that are absolute,\n"
           "                            protocols, climb out with .. or leave through a\n"
           "                            symbolic link are refused), since the guest may\n"
           "                            have written the image; off allows any name\n"
           "  -q, --quiet               no messages but errors\n"
           "\n"
           "QEMU needs shareable guest memory (-object memory-backend-memfd,...,share=on).\n");
}

int cmd_serve(int argc, char **argv)
{
    enum { O_BLK = 256, O_SCSI, O_CDROM, O_NQ, O_QS, O_SERIAL, O_MON, O_CONFINE, O_GROUP, O_MROOT };
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"vhost-user-blk", required_argument, NULL, O_BLK},
        {"vhost-user-scsi", required_argument, NULL, O_SCSI},
        {"cdrom", required_argument, NULL, O_CDROM},
        {"format", required_argument, NULL, 'f'},
        {"read-only", no_argument, NULL, 'r'},
        {"cache", required_argument, NULL, 't'},
        {"num-queues", required_argument, NULL, O_NQ},
        {"queue-size", required_argument, NULL, O_QS},
        {"serial", required_argument, NULL, O_SERIAL},
        {"monitor", required_argument, NULL, O_MON},
        {"backing-confine", required_argument, NULL, O_CONFINE},
        {"socket-group", required_argument, NULL, O_GROUP},
        {"monitor-root", required_argument, NULL, O_MROOT},
        {"quiet", no_argument, NULL, 'q'},
        {NULL, 0, NULL, 0},
    };
    const char *blk_path = NULL, *scsi_path = NULL, *iso = NULL, *serial = NULL, *mon_path = NULL;
    const char *mon_root = NULL;
    gid_t sock_gid = (gid_t)-1;
    /* The guest writes the image: its backing file names are untrusted. */
    struct open_args oa = {.backing_confine = true};
    /* The front end picks the ring sizes (QEMU's vhost-user-blk: 128 to
     * 1024), with no way to ask: offer the largest the models take. */
    unsigned nqueues = 0, qsize = VDISK_VIRTIO_QUEUE_MAX;
    bool quiet = false;
    int c;
    while ((c = getopt_long(argc, argv, "hf:rt:q", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': help(); return 0;
        case O_BLK: blk_path = optarg; break;
        case O_SCSI: scsi_path = optarg; break;
        case O_CDROM: iso = optarg; break;
        case 'f': oa.format = optarg; break;
        case 'r': oa.read_only = true; break;
        case 't': oa.cache = optarg; break;
        case O_NQ:
        case O_QS: {
            char *end;
            errno = 0;
            unsigned long v = strtoul(optarg, &end, 10);
            if (errno || *end || !*optarg || v == 0 || v > 65536) {
                cli_error("serve: invalid %s '%s'", c == O_NQ ? "--num-queues" : "--queue-size",
                          optarg);
                return 1;
            }
            *(c == O_NQ ? &nqueues : &qsize) = (unsigned)v;
            break;
        }
        case O_SERIAL: serial = optarg; break;
        case O_MON: mon_path = optarg; break;
        case O_MROOT: mon_root = optarg; break;
        case O_GROUP: {
            struct group *g = getgrnam(optarg);
            char *end;
            errno = 0;
            unsigned long v = g ? 0 : strtoul(optarg, &end, 10);
            if (!g && (errno || *end || !*optarg || v >= (unsigned long)(gid_t)-1)) {
                cli_error("serve: --socket-group: no group '%s'", optarg);
                return 1;
            }
            sock_gid = g ? g->gr_gid : (gid_t)v;
            break;
        }
        case O_CONFINE:
            if (strcmp(optarg, "on") == 0 || strcmp(optarg, "off") == 0) {
                oa.backing_confine = strcmp(optarg, "on") == 0;
                break;
            }
            cli_error("serve: --backing-confine takes on or off, not '%s'", optarg);
            return 1;
        case 'q': quiet = true; break;
        default: return 1;
        }
    }
    const char *image = NULL;
    if (optind < argc)
        image = argv[optind++];
    if (optind < argc) {
        cli_error("serve: unexpected argument '%s'", argv[optind]);
        return 1;
    }
    if (!blk_path && !scsi_path) {
        cli_error("serve: nothing to serve (--vhost-user-blk SOCKET IMAGE or "
                  "--vhost-user-scsi SOCKET --cdrom ISO)");
        return 1;
    }
    if (blk_path && !image) {
        cli_error("serve: --vhost-user-blk needs an IMAGE");
        return 1;
    }
    if (!blk_path && image) {
        cli_error("serve: IMAGE '%s' given without --vhost-user-blk", image);
        return 1;
    }
    if (!scsi_path && iso) {
        cli_error("serve: --cdrom needs --vhost-user-scsi");
        return 1;
    }
    if (blk_path && scsi_path && strcmp(blk_path, scsi_path) == 0) {
        cli_error("serve: the two devices need two sockets");
        return 1;
    }
    if (mon_root && !mon_path) {
        cli_error("serve: --monitor-root needs --monitor");
        return 1;
    }
    if (serial && strlen(serial) > 20) {
        cli_error("serve: --serial '%s' is longer than 20 bytes", serial);
        return 1;
    }

    int status = 1;
    struct server srv[2];
    unsigned nsrv = 0;
    struct monitor mon = {.listen_fd = -1, .conn_fd = -1, .start_fd = -1};
    char *mon_root_real = NULL;
    vdisk_options *cd_opts = NULL;
    int epfd = -1, sfd = -1;
    sigset_t mask, oldmask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, &oldmask);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction bus = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO}, old_bus;
    sigemptyset(&bus.sa_mask);
    sigaction(SIGBUS, &bus, &old_bus);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (epfd < 0 || sfd < 0) {
        cli_error("serve: %s: %s", epfd < 0 ? "epoll" : "signalfd", strerror(errno));
        goto out;
    }

    for (int k = 0; k < 2; k++) {
        const char *path = k == 0 ? blk_path : scsi_path;
        if (!path)
            continue;
        struct server *s = &srv[nsrv];
        memset(s, 0, sizeof *s);
        s->kind = k == 0 ? "vhost-user-blk" : "vhost-user-scsi";
        s->path = path;
        s->listen_fd = s->conn_fd = -1;
        s->epfd = epfd;
        s->quiet = quiet;
        int r;
        if (k == 0) {
            if (!(s->dev = cli_open(image, &oa)))
                goto out;
            struct vdisk_virtio_blk_params p = {.struct_size = sizeof p,
                                                .num_queues = nqueues, .queue_size = qsize,
                                                .serial = serial, .read_only = oa.read_only};
            r = vdisk_virtio_blk_new(&s->v, s->dev, &p);
        } else {
            /* ISO images are raw media: never probed, so no backing file. */
            if ((r = vdisk_options_new(&cd_opts)) < 0 ||
                (r = vdisk_options_set(cd_opts, "format", "raw")) < 0 ||
                (r = vdisk_open_cdrom(&s->dev, iso, cd_opts)) < 0) {
                cli_lib_error();
                goto out;
            }
            struct vdisk_virtio_scsi_params p = {.struct_size = sizeof p,
                                                 .num_queues = nqueues, .queue_size = qsize};
            r = vdisk_virtio_scsi_cdrom_new(&s->v, s->dev, &p);
        }
        nsrv++;
        if (r < 0) {
            cli_lib_error();
            goto out;
        }
        /* QEMU's vhost-user-scsi keeps the configuration space itself and
         * warns about a back end offering CONFIG: offer it for the disk. */
        if ((r = server_attach(s, k == 0)) < 0) {
            if (r == -ERANGE)
                cli_error("serve: the device has %u queues", s->nq);
            else
                cli_error("serve: out of memory");
            goto out;
        }
        if ((s->listen_fd = make_listener(path, sock_gid == (gid_t)-1 ? 0600 : 0660, sock_gid,
                                          &s->sock)) < 0)
            goto out;
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &s->done_tag};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, vdisk_virtio_get_fd(s->v), &e) < 0) {
            cli_error("serve: epoll: %s", strerror(errno));
            goto out;
        }
        listen_watch(s, true);
        if (!quiet) {
            if (k == 0)
                fprintf(stderr, "vdisk serve: %s on %s: %s (%" PRIu64 " bytes, %s, %u queue%s)\n",
                        s->kind, path, image, vdisk_get_size(s->dev),
                        oa.read_only ? "read-only" : "read-write", s->nq, s->nq == 1 ? "" : "s");
            else
                fprintf(stderr, "vdisk serve: %s on %s: CD-ROM, %s\n", s->kind, path,
                        iso ? iso : "no medium");
        }
    }

    struct ev_tag sig_tag = {EV_SIGNAL, NULL, 0};
    struct epoll_event se = {.events = EPOLLIN, .data.ptr = &sig_tag};
    epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &se);

    if (mon_path) {
        mon.path = mon_path;
        /* `change` resolves relative paths here, whatever happens later. */
        mon.start_fd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (mon.start_fd < 0) {
            cli_error("serve: the current directory: %s", strerror(errno));
            goto out;
        }
        if (mon_root) {
            struct stat rst;
            if (!(mon_root_real = realpath(mon_root, NULL)) || stat(mon_root_real, &rst) < 0 ||
                !S_ISDIR(rst.st_mode)) {
                cli_error("serve: --monitor-root '%s': %s", mon_root,
                          mon_root_real ? "not a directory" : strerror(errno));
                goto out;
            }
            mon.root = mon_root_real;
        }
        mon.cd = scsi_path ? &srv[nsrv - 1] : NULL;
        mon.listen_tag = (struct ev_tag){EV_MON_LISTEN, NULL, 0};
        mon.conn_tag = (struct ev_tag){EV_MON_CONN, NULL, 0};
        if ((mon.listen_fd = make_listener(mon_path, 0600, (gid_t)-1, &mon.sock)) < 0)
            goto out;
        struct epoll_event me = {.events = EPOLLIN, .data.ptr = &mon.listen_tag};
        epoll_ctl(epfd, EPOLL_CTL_ADD, mon.listen_fd, &me);
        if (!quiet)
            fprintf(stderr, "vdisk serve: monitor on %s\n", mon_path);
    }

    bool stop = false;
    while (!stop) {
        struct epoll_event ev[32];
        int n = epoll_wait(epfd, ev, 32, check_deadlines(srv, nsrv));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            cli_error("serve: epoll_wait: %s", strerror(errno));
            goto out;
        }
        for (int k = 0; k < n && !stop; k++) {
            struct ev_tag *t = ev[k].data.ptr;
            switch (t->kind) {
            case EV_LISTEN:
                if (t->s->conn_fd < 0)
                    on_accept(t->s);
                break;
            case EV_CONN:
                if (t->s->conn_fd >= 0)
                    on_message(t->s);
                break;
            case EV_KICK:
                if (t->s->q[t->q].kick_fd >= 0)
                    on_kick(t->s, t->q);
                break;
            case EV_DONE: {
                int r = vdisk_virtio_poll(t->s->v);
                if (r < 0)
                    slog(t->s, "completions: %s", vdisk_get_error());
                break;
            }
            case EV_SIGNAL: {
                struct signalfd_siginfo si;
                if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                    if (!quiet)
                        fprintf(stderr, "vdisk serve: signal %" PRIu32 ", stopping\n", si.ssi_signo);
                    stop = true;
                }
                break;
            }
            case EV_MON_LISTEN:
                mon_accept(&mon, epfd);
                break;
            case EV_MON_CONN:
                if (mon.conn_fd >= 0)
                    mon_read(&mon, epfd);
                break;
            }
        }
        for (unsigned k = 0; k < nsrv; k++) {
            int ri = mem_vanished(&srv[k]);
            if (ri >= 0 && srv[k].conn_fd >= 0) {
                slog(&srv[k], "guest memory region %d vanished under its mapping (the file was "
                     "shrunk: SIGBUS caught); closing the connection", ri);
                disconnect(&srv[k]);
            }
        }
    }
    status = 0;

out:
    for (unsigned k = 0; k < nsrv; k++) {
        struct server *s = &srv[k];
        if (s->v) {
            if (s->listen_fd >= 0)
                listen_watch(s, false);
            disconnect(s);
            vdisk_virtio_drain(s->v);
        }
    }
    for (unsigned k = 0; k < nsrv; k++) {
        struct server *s = &srv[k];
        log_flush(s);
        if (s->dev && status == 0 && k == 0 && blk_path && !oa.read_only &&
            vdisk_flush(s->dev) < 0) {
            cli_lib_error();
            status = 1;
        }
        vdisk_virtio_free(s->v);
        if (s->dev)
            vdisk_close(s->dev);
        free(s->q);
        close_fd(&s->listen_fd);
        remove_listener(s->path, &s->sock);
    }
    mon_close(&mon, epfd);
    close_fd(&mon.listen_fd);
    remove_listener(mon.path, &mon.sock);
    close_fd(&mon.start_fd);
    free(mon_root_real);
    vdisk_options_free(cd_opts);
    if (sfd >= 0)
        close(sfd);
    if (epfd >= 0)
        close(epfd);
    sigprocmask(SIG_SETMASK, &oldmask, NULL);
    sigaction(SIGBUS, &old_bus, NULL);
    return status;
}
