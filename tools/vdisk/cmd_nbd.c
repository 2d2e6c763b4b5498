/* SPDX-License-Identifier: MIT */
/*
 * tools/vdisk/cmd_nbd.c: `vdisk nbd`, qemu-nbd's server side: exports an
 * image over NBD (TCP or a Unix socket) with the library's server
 * (vdisk/nbd.h).  A command line only: the flags are parsed, the image
 * opened, the server made and its fd polled with a signalfd (SIGINT,
 * SIGTERM, SIGHUP: clients are dropped, the image flushed and closed).
 * Without -t it exits once the clients it served have all gone, as
 * qemu-nbd does.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vdisk/nbd.h>

#include "cli.h"

static void help(void)
{
    printf("usage: vdisk nbd [OPTIONS] IMAGE\n"
           "\n"
           "Exports IMAGE over NBD (the Network Block Device protocol), as qemu-nbd\n"
           "does, to qemu-img, qemu-io, nbdinfo, nbdcopy, the Linux nbd driver...\n"
           "\n"
           "  -p, --port=PORT           TCP port to listen on (default 10809)\n"
           "  -b, --bind=ADDR           address to listen on (default 0.0.0.0)\n"
           "  -k, --socket=PATH         listen on the Unix socket PATH instead\n"
           "  -e, --shared=NUM          clients at once (default 1; 0: no limit)\n"
           "  -t, --persistent          do not exit when the last client goes\n"
           "  -x, --export-name=NAME    the export's name (default \"\")\n"
           "  -D, --description=TEXT    the export's description\n"
           "  -f, --format=FMT          IMAGE's format (probed if not given)\n"
           "  -r, --read-only           export read-only\n"
           "  -A, --allocation-depth    serve the meta context qemu:allocation-depth\n"
           "  -B, --bitmap=NAME         serve the dirty bitmap NAME as the meta context\n"
           "                            qemu:dirty-bitmap:NAME\n"
           "  -n, --nocache             --cache=none\n"
           "      --cache=MODE          none, writeback (default), writethrough,\n"
           "                            directsync, unsafe\n"
           "      --aio=MODE            threads or io_uring (the I/O engine)\n"
           "      --discard=MODE        ignore (default) or unmap: what trims do\n"
           "      --detect-zeroes=MODE  off (default), on, unmap (needs --discard=unmap)\n"
           "      --fork                go to the background once listening\n"
           "      --pid-file=PATH       write the server's process id to PATH\n"
           "  -v, --verbose             log clients connecting and going\n"
           "      --object=tls-creds-x509,id=ID,dir=DIR,endpoint=server[,verify-peer=on|off]\n"
           "                            x509 credentials: DIR/server-cert.pem,\n"
           "                            server-key.pem, ca-cert.pem (verify-peer, the\n"
           "                            default: clients need a certificate of that CA)\n"
           "      --object=tls-creds-psk,id=ID,dir=DIR,endpoint=server\n"
           "                            pre-shared keys: DIR/keys.psk (psktool's format)\n"
           "      --tls-creds=ID        require TLS with the credentials object ID\n"
           "      --object=secret,id=ID,data=TEXT|file=PATH[,format=raw|base64]\n"
           "                            a passphrase, for an encrypted IMAGE given with\n"
           "                            --image-opts ...,key-secret=ID (qcow2:\n"
           "                            encrypt.key-secret=ID)\n"
           "      --image-opts          IMAGE is a list of options (driver=FMT,\n"
           "                            file.filename=PATH,...), as qemu-nbd takes it\n"
           "\n"
           "Without --tls-creds there is no TLS: listen on 127.0.0.1 or a Unix socket\n"
           "unless the network is trusted.\n");
}

/* A --object: qemu's tls-creds-x509 and tls-creds-psk (endpoint=server). */
struct tls_object {
    char *id, *dir;
    unsigned mode;           /* VDISK_NBD_TLS_* */
    bool verify_peer, server;
};

static bool parse_bool(const char *v, bool *out)
{
    if (!strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true"))
        *out = true;
    else if (!strcmp(v, "off") || !strcmp(v, "no") || !strcmp(v, "false"))
        *out = false;
    else
        return false;
    return true;
}

/* Parses ARG (TYPE,KEY=VALUE,...) into O (strings allocated).  Returns 0,
 * or -1 after an error message. */
static int parse_object(const char *arg, struct tls_object *o)
{
    memset(o, 0, sizeof *o);
    o->verify_peer = true; /* qemu's default */
    char *copy = strdup(arg), *save = NULL;
    if (!copy) {
        cli_error("out of memory");
        return -1;
    }
    int r = -1;
    bool first = true;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        const char *key = tok, *val = eq ? eq + 1 : NULL;
        if (eq)
            *eq = 0;
        if (first && !eq)
            val = tok, key = "qom-type";
        first = false;
        if (!val) {
            cli_error("Expected '=' after parameter '%s'", key);
            goto out;
        }
        if (!strcmp(key, "qom-type")) {
            if (!strcmp(val, "tls-creds-x509")) {
                o->mode = VDISK_NBD_TLS_X509;
            } else if (!strcmp(val, "tls-creds-psk")) {
                o->mode = VDISK_NBD_TLS_PSK;
            } else {
                cli_error("--object %s is not supported by vdisk nbd (secret, tls-creds-x509 "
                          "and tls-creds-psk are)", val);
                goto out;
            }
        } else if (!strcmp(key, "id")) {
            free(o->id);
            if (!(o->id = strdup(val)))
                goto oom;
        } else if (!strcmp(key, "dir")) {
            free(o->dir);
            if (!(o->dir = strdup(val)))
                goto oom;
        } else if (!strcmp(key, "endpoint")) {
            if (strcmp(val, "server") && strcmp(val, "client")) {
                cli_error("Parameter 'endpoint' does not accept value '%s'", val);
                goto out;
            }
            o->server = !strcmp(val, "server");
        } else if (!strcmp(key, "verify-peer")) {
            if (!parse_bool(val, &o->verify_peer)) {
                cli_error("Parameter 'verify-peer' expects 'on' or 'off'");
                goto out;
            }
        } else if (strcmp(key, "username") != 0) { /* a PSK client's: unused here */
            cli_error("Parameter '%s' is unexpected", key);
            goto out;
        }
    }
    if (!o->mode) {
        cli_error("Parameter 'qom-type' is missing");
        goto out;
    }
    if (!o->id) {
        cli_error("Parameter 'id' is missing");
        goto out;
    }
    r = 0;
    goto out;
oom:
    cli_error("out of memory");
out:
    free(copy);
    if (r < 0) {
        free(o->id);
        free(o->dir);
    }
    return r;
}

static int write_pid_file(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0) {
        cli_error("Failed to write pid file %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int cmd_nbd(int argc, char **argv)
{
    enum { O_CACHE = 256, O_AIO, O_DISCARD, O_DZ, O_FORK, O_PID, O_OBJECT, O_TLS, O_UNSUP,
           O_IMAGE_OPTS };
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"port", required_argument, NULL, 'p'},
        {"bind", required_argument, NULL, 'b'},
        {"socket", required_argument, NULL, 'k'},
        {"shared", required_argument, NULL, 'e'},
        {"persistent", no_argument, NULL, 't'},
        {"export-name", required_argument, NULL, 'x'},
        {"description", required_argument, NULL, 'D'},
        {"format", required_argument, NULL, 'f'},
        {"read-only", no_argument, NULL, 'r'},
        {"allocation-depth", no_argument, NULL, 'A'},
        {"nocache", no_argument, NULL, 'n'},
        {"cache", required_argument, NULL, O_CACHE},
        {"aio", required_argument, NULL, O_AIO},
        {"discard", required_argument, NULL, O_DISCARD},
        {"detect-zeroes", required_argument, NULL, O_DZ},
        {"fork", no_argument, NULL, O_FORK},
        {"pid-file", required_argument, NULL, O_PID},
        {"verbose", no_argument, NULL, 'v'},
        {"object", required_argument, NULL, O_OBJECT},
        {"tls-creds", required_argument, NULL, O_TLS},
        /* qemu-nbd's that this server does not have (yet): refused by name. */
        {"tls-authz", required_argument, NULL, O_UNSUP},
        {"image-opts", no_argument, NULL, O_IMAGE_OPTS},
        {"connect", required_argument, NULL, O_UNSUP},
        {"disconnect", no_argument, NULL, O_UNSUP},
        {"list", no_argument, NULL, O_UNSUP},
        {"snapshot", no_argument, NULL, O_UNSUP},
        {"load-snapshot", required_argument, NULL, O_UNSUP},
        {"offset", required_argument, NULL, O_UNSUP},
        {"bitmap", required_argument, NULL, 'B'},
        {NULL, 0, NULL, 0},
    };
    struct open_args oa = {.cache = "writeback"};
    struct vdisk_nbd_params p = {.struct_size = sizeof p, .flags = VDISK_NBD_QUIET};
    const char *addr = "0.0.0.0", *sock = NULL, *pid_file = NULL;
    unsigned long port = VDISK_NBD_DEFAULT_PORT;
    bool persistent = false, do_fork = false, unmap = false;
    int dz = 0; /* 0 off, 1 on, 2 unmap */
    int c, li = -1;
    char *end;
    struct tls_object objs[8];
    unsigned nobjs = 0;
    const char *tls_creds = NULL;
    bool image_opts = false;
    char *opts_name = NULL; /* --image-opts: the json: name it stands for */
    int status = 1;
    while ((c = getopt_long(argc, argv, "hp:b:k:e:tx:D:f:rAnvc:dLsl:o:B:", longopts, &li)) !=
           -1) {
        switch (c) {
        case 'h': help(); status = 0; goto out_args;
        case 'p':
            errno = 0;
            port = strtoul(optarg, &end, 10);
            if (errno || !*optarg || *end || port > 65535) {
                cli_error("Invalid port number `%s'", optarg);
                goto out_args;
            }
            break;
        case 'b': addr = optarg; break;
        case 'k': sock = optarg; break;
        case 'e': {
            errno = 0;
            unsigned long n = strtoul(optarg, &end, 0);
            if (errno || !*optarg || *end || optarg[0] == '-' || n > 1024) {
                cli_error("Invalid shared device number '%s'", optarg);
                goto out_args;
            }
            p.max_clients = n ? (unsigned)n : 1024u;
            break;
        }
        case 't': persistent = true; break;
        case 'x': p.export_name = optarg; break;
        case 'D': p.description = optarg; break;
        case 'f': oa.format = optarg; break;
        case 'r': oa.read_only = true; break;
        case 'A': p.flags |= VDISK_NBD_ALLOCATION_DEPTH; break;
        case 'B':
            if (p.bitmap) {
                cli_error("vdisk nbd serves one dirty bitmap (-B given twice)");
                goto out_args;
            }
            p.bitmap = optarg;
            break;
        case 'n': oa.cache = "none"; break;
        case O_CACHE:
            if (cli_check_cache(optarg) < 0)
                goto out_args;
            oa.cache = optarg;
            break;
        case O_AIO:
            if (strcmp(optarg, "threads") == 0) {
                oa.engine = "threads";
            } else if (strcmp(optarg, "io_uring") == 0) {
                oa.engine = "uring";
            } else if (strcmp(optarg, "native") == 0) {
                cli_error("--aio=native is not supported (use threads or io_uring)");
                goto out_args;
            } else {
                cli_error("invalid aio mode '%s'", optarg);
                goto out_args;
            }
            break;
        case O_DISCARD:
            if (!strcmp(optarg, "ignore") || !strcmp(optarg, "off")) {
                unmap = false;
            } else if (!strcmp(optarg, "unmap") || !strcmp(optarg, "on")) {
                unmap = true;
            } else {
                cli_error("Invalid discard mode `%s'", optarg);
                goto out_args;
            }
            break;
        case O_DZ:
            if (!strcmp(optarg, "off")) {
                dz = 0;
            } else if (!strcmp(optarg, "on")) {
                dz = 1;
            } else if (!strcmp(optarg, "unmap")) {
                dz = 2;
            } else {
                cli_error("Failed to parse detect_zeroes mode: invalid parameter value: %s",
                          optarg);
                goto out_args;
            }
            break;
        case O_FORK: do_fork = true; break;
        case O_PID: pid_file = optarg; break;
        case O_OBJECT:
            /* An encrypted image's passphrase (secret.c), as qemu-nbd. */
            if (!strncmp(optarg, "secret,", 7) || !strncmp(optarg, "qom-type=secret,", 16)) {
                if (cli_object_add(optarg) < 0)
                    goto out_args;
                break;
            }
            if (nobjs == sizeof objs / sizeof objs[0]) {
                cli_error("too many --object options (at most %zu)", sizeof objs / sizeof objs[0]);
                goto out_args;
            }
            if (parse_object(optarg, &objs[nobjs]) < 0)
                goto out_args;
            for (unsigned i = 0; i < nobjs; i++)
                if (!strcmp(objs[i].id, objs[nobjs].id)) {
                    cli_error("attempt to add duplicate property '%s' to object (type "
                              "'container')", objs[nobjs].id);
                    nobjs++;
                    goto out_args;
                }
            nobjs++;
            break;
        case O_TLS: tls_creds = optarg; break;
        case O_IMAGE_OPTS: image_opts = true; break;
        case 'v': p.flags &= ~VDISK_NBD_QUIET; break;
        case O_UNSUP:
        case 'c': case 'd': case 'L': case 's': case 'l': case 'o': {
            char opt[3] = {'-', (char)c, 0};
            cli_error("%s%s is not supported by vdisk nbd%s", c == O_UNSUP ? "--" : "",
                      c == O_UNSUP ? longopts[li].name : opt, "");
            goto out_args;
        }
        default:
            fprintf(stderr, "Try 'vdisk nbd --help' for more information.\n");
            goto out_args;
        }
    }
    if (optind != argc - 1) {
        cli_error(optind >= argc ? "Not enough arguments" : "Too many arguments");
        fprintf(stderr, "Try 'vdisk nbd --help' for more information.\n");
        goto out_args;
    }
    if (dz == 2 && !unmap) {
        cli_error("setting detect-zeroes to unmap is not allowed without setting discard "
                  "operation to unmap");
        goto out_args;
    }
    if (unmap)
        p.flags |= VDISK_NBD_UNMAP;
    if (dz)
        p.flags |= VDISK_NBD_DETECT_ZEROES;
    if (oa.read_only)
        p.flags |= VDISK_NBD_READ_ONLY;
    if (tls_creds) {
        const struct tls_object *o = NULL;
        for (unsigned i = 0; i < nobjs; i++)
            if (!strcmp(objs[i].id, tls_creds))
                o = &objs[i];
        if (!o) {
            cli_error("Failed to get TLS creds: No TLS credentials with id '%s'", tls_creds);
            goto out_args;
        }
        if (!o->server) {
            cli_error("Expecting TLS credentials with a server endpoint");
            goto out_args;
        }
        if (!o->dir) {
            cli_error("TLS credentials '%s' have no dir", o->id);
            goto out_args;
        }
        p.tls = o->mode;
        p.tls_dir = o->dir;
        if (o->mode == VDISK_NBD_TLS_X509 && o->verify_peer)
            p.flags |= VDISK_NBD_TLS_VERIFY_PEER;
    }
    const char *image = argv[optind];
    if (image_opts && !(image = opts_name = cli_image_opts(image, oa.format)))
        goto out_args;

    /* --fork: the parent waits until the child listens (or fails), and
     * exits with that outcome. */
    int ready[2] = {-1, -1};
    if (do_fork) {
        if (pipe2(ready, O_CLOEXEC) < 0) {
            cli_error("pipe: %s", strerror(errno));
            goto out_args;
        }
        pid_t pid = fork();
        if (pid < 0) {
            cli_error("fork: %s", strerror(errno));
            goto out_args;
        }
        if (pid > 0) {
            close(ready[1]);
            char b;
            ssize_t n;
            do
                n = read(ready[0], &b, 1);
            while (n < 0 && errno == EINTR);
            if (n == 1)
                _exit(0);
            int st;
            waitpid(pid, &st, 0);
            _exit(WIFEXITED(st) && WEXITSTATUS(st) ? WEXITSTATUS(st) : 1);
        }
        close(ready[0]);
        setsid();
    }

    vdisk_dev *dev = NULL;
    vdisk_nbd *h = NULL;
    int sfd = -1;
    bool pid_written = false;
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    if ((sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
        cli_error("signalfd: %s", strerror(errno));
        goto out;
    }
    if (!(dev = cli_open(image, &oa)))
        goto out;
    uint64_t blen;
    bool bdirty;
    if (p.bitmap && vdisk_get_size(dev) &&
        vdisk_bitmap_status(dev, p.bitmap, 0, 1, &blen, &bdirty) == -ENOENT) {
        cli_error("Bitmap '%s' is not found", p.bitmap); /* (qemu-nbd's words) */
        goto out;
    }
    int r = sock ? vdisk_nbd_listen_unix(&h, dev, sock, &p)
                 : vdisk_nbd_listen_tcp(&h, dev, addr, (uint16_t)port, &p);
    if (r < 0) {
        cli_lib_error();
        goto out;
    }
    if (pid_file) {
        if (write_pid_file(pid_file) < 0)
            goto out;
        pid_written = true;
    }
    if (do_fork) {
        int fd = open("/dev/null", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
            if (fd > 2)
                close(fd);
        }
        if (write(ready[1], "", 1) < 0) {
            /* the parent is gone: serve anyway */
        }
        close(ready[1]);
        ready[1] = -1;
    }

    struct pollfd pf[2] = {{.fd = vdisk_nbd_get_fd(h), .events = POLLIN},
                           {.fd = sfd, .events = POLLIN}};
    for (;;) {
        /* Without -t: done once a client that reached the transmission
         * phase went and none is left (a client that only probed, listed
         * or hung up during the handshake does not end it: qemu-nbd). */
        if (!persistent && vdisk_nbd_served(h) > 0 && vdisk_nbd_clients(h) == 0) {
            status = 0;
            break;
        }
        int n = poll(pf, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cli_error("poll: %s", strerror(errno));
            break;
        }
        if (pf[1].revents) {
            status = 0;
            break;
        }
        if (pf[0].revents && vdisk_nbd_process(h) < 0) {
            cli_lib_error();
            break;
        }
    }
out:
    vdisk_nbd_free(h);
    if (dev) {
        if (!oa.read_only && vdisk_flush(dev) < 0 && status == 0) {
            cli_lib_error();
            status = 1;
        }
        vdisk_close(dev);
    }
    if (pid_written)
        unlink(pid_file);
    if (sfd >= 0)
        close(sfd);
    if (ready[1] >= 0)
        close(ready[1]);
out_args:
    free(opts_name);
    for (unsigned i = 0; i < nobjs; i++) {
        free(objs[i].id);
        free(objs[i].dir);
    }
    return status;
}
