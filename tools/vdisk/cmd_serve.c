/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/cmd_serve.c: vdisk serve: the virtio-blk and virtio-scsi
 * CD-ROM models of libvdisk served to a hypervisor (QEMU's vhost-user-blk
 * and vhost-user-scsi devices) as a vhost-user back end on Unix sockets.
 *
 * A thin command line over the library: the options, the devices and
 * models opened, then one thread, one epoll loop over each device's
 * vhost-user handle (vdisk/vhost_user.h: the protocol, the sockets, and
 * every rule against a hostile front end live there), the monitor
 * (vdisk/monitor.h) and a signalfd (SIGINT, SIGTERM, SIGHUP: drain, flush,
 * exit 0).
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#include "cli.h"

/* The library's message without the name of its call: "serve: MESSAGE". */
static void serve_lib_error(void)
{
    const char *e = vdisk_get_error(), *c = strstr(e, ": ");
    if (strncmp(e, "vdisk_", 6) == 0 && c)
        e = c + 2;
    cli_error("serve: %s", e);
}

/* A device's log lines: "vdisk serve: SOCKET: LINE". */
static void serve_log(void *opaque, const char *line)
{
    fprintf(stderr, "vdisk serve: %s: %s\n", (const char *)opaque, line);
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
    struct {
        vdisk_dev *dev;
        vdisk_virtio *v;
        vdisk_vhost *h;
        const char *path;
    } srv[2];
    unsigned nsrv = 0;
    memset(srv, 0, sizeof srv);
    vdisk_monitor *mon = NULL;
    vdisk_options *cd_opts = NULL;
    int epfd = -1, sfd = -1;
    sigset_t mask, oldmask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, &oldmask);
    signal(SIGPIPE, SIG_IGN);
    /* A front end that shrinks its memory file costs its connection, not
     * the process. */
    if (vdisk_vhost_sigbus_install() < 0) {
        serve_lib_error();
        goto out;
    }

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
        unsigned i = nsrv++;
        srv[i].path = path;
        int r;
        if (k == 0) {
            if (!(srv[i].dev = cli_open(image, &oa)))
                goto out;
            struct vdisk_virtio_blk_params p = {.struct_size = sizeof p,
                                                .num_queues = nqueues, .queue_size = qsize,
                                                .serial = serial, .read_only = oa.read_only};
            r = vdisk_virtio_blk_new(&srv[i].v, srv[i].dev, &p);
        } else {
            /* ISO images are raw media: never probed, so no backing file. */
            if ((r = vdisk_options_new(&cd_opts)) < 0 ||
                (r = vdisk_options_set(cd_opts, "format", "raw")) < 0 ||
                (r = vdisk_open_cdrom(&srv[i].dev, iso, cd_opts)) < 0) {
                cli_lib_error();
                goto out;
            }
            struct vdisk_virtio_scsi_params p = {.struct_size = sizeof p,
                                                 .num_queues = nqueues, .queue_size = qsize};
            r = vdisk_virtio_scsi_cdrom_new(&srv[i].v, srv[i].dev, &p);
        }
        if (r < 0) {
            cli_lib_error();
            goto out;
        }
        /* QEMU's vhost-user-scsi keeps the configuration space itself and
         * warns about a back end offering CONFIG: offer it for the disk. */
        struct vdisk_vhost_params hp = {
            .struct_size = sizeof hp,
            .flags = (quiet ? VDISK_VHOST_QUIET : 0) | (k == 1 ? VDISK_VHOST_NO_CONFIG : 0) |
                     (sock_gid != (gid_t)-1 ? VDISK_VHOST_SOCKET_GROUP : 0),
            .socket_gid = (uint32_t)sock_gid,
            .log = serve_log,
            .log_opaque = (void *)path,
        };
        if (vdisk_vhost_listen(&srv[i].h, srv[i].v, path, &hp) < 0) {
            serve_lib_error();
            goto out;
        }
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = i};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, vdisk_vhost_get_fd(srv[i].h), &e) < 0) {
            cli_error("serve: epoll: %s", strerror(errno));
            goto out;
        }
        if (!quiet) {
            unsigned nq = vdisk_virtio_num_queues(srv[i].v);
            if (k == 0)
                fprintf(stderr, "vdisk serve: vhost-user-blk on %s: %s (%" PRIu64 " bytes, %s, "
                        "%u queue%s)\n", path, image, vdisk_get_size(srv[i].dev),
                        oa.read_only ? "read-only" : "read-write", nq, nq == 1 ? "" : "s");
            else
                fprintf(stderr, "vdisk serve: vhost-user-scsi on %s: CD-ROM, %s\n", path,
                        iso ? iso : "no medium");
        }
    }

    enum { TAG_SIGNAL = 2, TAG_MONITOR };
    struct epoll_event se = {.events = EPOLLIN, .data.u32 = TAG_SIGNAL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &se);

    if (mon_path) {
        /* `change` resolves relative paths from here, whatever happens later. */
        bool cd = scsi_path != NULL;
        struct vdisk_monitor_params mp = {
            .struct_size = sizeof mp,
            .flags = quiet ? VDISK_MONITOR_QUIET : 0,
            .cdrom = cd ? srv[nsrv - 1].v : NULL,
            .cdrom_dev = cd ? srv[nsrv - 1].dev : NULL,
            .root = mon_root,
            .root_name = "--monitor-root folder",
            .log = cd ? serve_log : NULL,
            .log_opaque = (void *)scsi_path,
        };
        int r = vdisk_monitor_new(&mon, &mp);
        if (r < 0) {
            if (mon_root && strstr(vdisk_get_error(), "the root '"))
                cli_error("serve: --monitor-root '%s': %s", mon_root,
                          r == -ENOTDIR ? "not a directory" : strerror(-r));
            else
                serve_lib_error();
            goto out;
        }
        if (vdisk_monitor_listen(mon, mon_path) < 0) {
            serve_lib_error();
            goto out;
        }
        struct epoll_event me = {.events = EPOLLIN, .data.u32 = TAG_MONITOR};
        epoll_ctl(epfd, EPOLL_CTL_ADD, vdisk_monitor_get_fd(mon), &me);
        if (!quiet)
            fprintf(stderr, "vdisk serve: monitor on %s\n", mon_path);
    }

    bool stop = false;
    while (!stop) {
        struct epoll_event ev[8];
        int n = epoll_wait(epfd, ev, 8, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            cli_error("serve: epoll_wait: %s", strerror(errno));
            goto out;
        }
        for (int k = 0; k < n && !stop; k++) {
            uint32_t t = ev[k].data.u32;
            if (t < nsrv) {
                if (vdisk_vhost_process(srv[t].h) < 0) {
                    serve_lib_error();
                    goto out;
                }
            } else if (t == TAG_MONITOR) {
                vdisk_monitor_process(mon);
            } else if (t == TAG_SIGNAL) {
                struct signalfd_siginfo si;
                if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                    if (!quiet)
                        fprintf(stderr, "vdisk serve: signal %" PRIu32 ", stopping\n",
                                si.ssi_signo);
                    stop = true;
                }
            }
        }
    }
    status = 0;

out:
    /* The front ends go (requests in flight finish), the disk is flushed,
     * then the sockets go. */
    for (unsigned k = 0; k < nsrv; k++)
        vdisk_vhost_disconnect(srv[k].h);
    for (unsigned k = 0; k < nsrv; k++) {
        if (srv[k].dev && status == 0 && srv[k].path == blk_path && !oa.read_only &&
            vdisk_flush(srv[k].dev) < 0) {
            cli_lib_error();
            status = 1;
        }
        vdisk_vhost_free(srv[k].h);
        vdisk_virtio_free(srv[k].v);
        if (srv[k].dev)
            vdisk_close(srv[k].dev);
    }
    vdisk_monitor_free(mon);
    vdisk_options_free(cd_opts);
    if (sfd >= 0)
        close(sfd);
    if (epfd >= 0)
        close(epfd);
    sigprocmask(SIG_SETMASK, &oldmask, NULL);
    return status;
}
