/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: the event loop, on the main thread (the I/O thread): an epoll
 * set over the stop eventfd, a signalfd, the devices' ioeventfds (queue
 * kicks) and completion fds, stdin (the UART's input) and the monitor's fd;
 * the watchdog's clock.  Requests to stop the VM, from any thread, wake it
 * through the stop eventfd (struct vmm_control).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <vdisk/error.h>
#include <vdisk/virtio.h>

#include "monitor.h"
#include "vmm.h"

void vmm_request_stop(struct vmm_control *ctl, int code)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&ctl->stop_requested, &expected, 1))
        return;
    atomic_store(&ctl->exit_code, code);
    uint64_t one = 1;
    if (write(ctl->stop_fd, &one, sizeof(one)) < 0) {
        /* the eventfd cannot overflow with one write; nothing else to do */
    }
}

int vmm_loop_signals(struct vmm_loop *l, struct vmm_control *ctl)
{
    /* Signals: handled by the I/O thread through a signalfd; SIGUSR2 kicks vCPUs */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    sigdelset(&set, SIGUSR2);
    l->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    ctl->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->signal_fd < 0 || ctl->stop_fd < 0) {
        vmm_log("signalfd/eventfd: %s", strerror(errno));
        return -1;
    }
    return 0;
}

enum { EV_STOP = 1, EV_SIGNAL, EV_STDIN, EV_MONITOR, EV_DEV_POLL, EV_DEV_KICK };

static uint64_t ev_tag(unsigned kind, unsigned a, unsigned b)
{
    return (uint64_t)kind << 48 | (uint64_t)a << 24 | b;
}

static int ep_add(struct vmm_loop *l, int fd, uint64_t tag)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };
    return epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
}

/* The monitor's CD-ROM drive: the devices' own, or none. */
static struct vmm_monitor_drive cdrom_drive(struct vmm_devices *devs)
{
    struct vmm_monitor_drive drive = { NULL, NULL, NULL };
    for (unsigned i = 0; i < devs->n; i++)
        if (devs->dev[i].is_cdrom) {
            drive.model = devs->dev[i].model;
            drive.dev = devs->cdrom_dev;
            drive.lock = &devs->dev[i].lock;
        }
    return drive;
}

static void stdin_read(struct vmm *vmm)
{
    struct vmm_loop *l = &vmm->loop;
    struct vmm_serial *serial = &vmm->devices.serial;
    uint8_t buf[256];
    unsigned room = vmm_serial_rx_room(serial);
    if (room == 0) {
        /* the guest has not read what it has: stop watching stdin until it has */
        epoll_ctl(l->epoll_fd, EPOLL_CTL_DEL, 0, NULL);
        l->stdin_paused = 1;
        return;
    }
    ssize_t n = read(0, buf, room < sizeof(buf) ? room : sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        epoll_ctl(l->epoll_fd, EPOLL_CTL_DEL, 0, NULL); /* EOF: the guest gets no more input */
        l->stdin_open = 0;
        return;
    }
    if (!l->stdin_tty) {
        vmm_serial_rx(serial, buf, (unsigned)n);
        return;
    }
    /* Ctrl-A x quits, Ctrl-A Ctrl-A sends Ctrl-A */
    uint8_t out[256];
    unsigned m = 0;
    for (ssize_t i = 0; i < n; i++) {
        uint8_t b = buf[i];
        if (l->ctrl_a) {
            l->ctrl_a = 0;
            if (b == 'x' || b == 'X') {
                vmm_log("quit (Ctrl-A x)");
                vmm_request_stop(&vmm->ctl, 1);
                return;
            }
            out[m++] = b;
        } else if (b == 0x01) {
            l->ctrl_a = 1;
        } else {
            out[m++] = b;
        }
    }
    vmm_serial_rx(serial, out, m);
}

static void handle_signal(struct vmm *vmm)
{
    struct signalfd_siginfo si;
    while (read(vmm->loop.signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGUSR1) {
            /* the monitor's eject, which logs "cdrom: medium ejected" */
            char answer[1024];
            if (!vmm->monitor) {
                vmm_log("SIGUSR1: no CD-ROM drive to eject (--cdrom)");
                continue;
            }
            vmm_monitor_run(vmm->monitor, "eject", answer, sizeof(answer));
            answer[strcspn(answer, "\n")] = 0;
            if (strcmp(answer, "ok") != 0)
                vmm_log("SIGUSR1: eject: %s", answer);
        } else {
            int sig = (int)si.ssi_signo;
            vmm_log("terminated by %s", sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT"
                                        : sig == SIGHUP ? "SIGHUP" : "a signal");
            vmm_request_stop(&vmm->ctl, 1);
        }
    }
}

int vmm_loop_setup(struct vmm *vmm)
{
    struct vmm_loop *l = &vmm->loop;
    l->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epoll_fd < 0 || ep_add(l, vmm->ctl.stop_fd, ev_tag(EV_STOP, 0, 0)) < 0 ||
        ep_add(l, l->signal_fd, ev_tag(EV_SIGNAL, 0, 0)) < 0) {
        vmm_log("epoll: %s", strerror(errno));
        return -1;
    }
    for (unsigned i = 0; i < vmm->devices.n; i++) {
        struct vmm_mmio_dev *d = &vmm->devices.dev[i];
        int fd = vdisk_virtio_get_fd(d->model);
        if (fd < 0 || ep_add(l, fd, ev_tag(EV_DEV_POLL, i, 0)) < 0) {
            vmm_log("%s: the model's fd: %s", d->name, fd < 0 ? vdisk_get_error() : strerror(errno));
            return -1;
        }
        for (unsigned q = 0; q < d->nqueues; q++)
            if (d->kickfd[q] >= 0 && ep_add(l, d->kickfd[q], ev_tag(EV_DEV_KICK, i, q)) < 0) {
                vmm_log("epoll: %s", strerror(errno));
                return -1;
            }
    }
    l->stdin_tty = isatty(0);
    l->stdin_open = ep_add(l, 0, ev_tag(EV_STDIN, 0, 0)) == 0; /* not for regular files, closed fds */
    /* The monitor: on its socket, and for SIGUSR1's eject. */
    if (vmm->cfg.monitor || vmm->cfg.cdrom) {
        struct vmm_monitor_drive drive = cdrom_drive(&vmm->devices);
        if (vmm_monitor_new(&vmm->monitor, vmm->cfg.monitor, &drive) < 0)
            return -1;
    }
    if (vmm->cfg.monitor) {
        if (ep_add(l, vmm_monitor_fd(vmm->monitor), ev_tag(EV_MONITOR, 0, 0)) < 0) {
            vmm_log("epoll: %s", strerror(errno));
            return -1;
        }
    }
    return 0;
}

void vmm_loop_run(struct vmm *vmm)
{
    struct vmm_loop *l = &vmm->loop;
    struct vmm_devices *devs = &vmm->devices;
    struct epoll_event evs[32];
    for (;;) {
        int wait = vmm_watchdog_timeout(&vmm->watchdog);
        if (l->stdin_paused)
            wait = 10;
        int n = epoll_wait(l->epoll_fd, evs, 32, wait);
        if (n < 0 && errno != EINTR) {
            vmm_log("epoll_wait: %s", strerror(errno));
            vmm_request_stop(&vmm->ctl, 1);
            return;
        }
        if (vmm_watchdog_check(&vmm->watchdog, atomic_load(&vmm->ctl.life)))
            vmm_request_stop(&vmm->ctl, 2);
        if (l->stdin_paused && vmm_serial_rx_room(&devs->serial) > 0) {
            l->stdin_paused = 0;
            if (ep_add(l, 0, ev_tag(EV_STDIN, 0, 0)) < 0)
                l->stdin_open = 0;
        }
        for (int i = 0; i < n; i++) {
            uint64_t tag = evs[i].data.u64;
            unsigned kind = (unsigned)(tag >> 48), a = (unsigned)(tag >> 24) & 0xFFFFFF;
            unsigned b = (unsigned)tag & 0xFFFFFF;
            switch (kind) {
            case EV_STOP:
                return;
            case EV_SIGNAL:
                handle_signal(vmm);
                break;
            case EV_STDIN:
                stdin_read(vmm);
                break;
            case EV_MONITOR:
                vmm_monitor_dispatch(vmm->monitor);
                break;
            case EV_DEV_POLL:
                vmm_mmio_poll(&devs->dev[a]);
                break;
            case EV_DEV_KICK: {
                uint64_t cnt;
                if (read(devs->dev[a].kickfd[b], &cnt, sizeof(cnt)) == (ssize_t)sizeof(cnt)) {
                    atomic_fetch_add_explicit(&vmm->ctl.life, 1, memory_order_relaxed);
                    vmm_mmio_kick(&devs->dev[a], b);
                }
                break;
            }
            default:
                break;
            }
        }
    }
}

void vmm_loop_close(struct vmm_loop *l, struct vmm_control *ctl)
{
    if (l->epoll_fd >= 0)
        close(l->epoll_fd);
    if (ctl->stop_fd >= 0)
        close(ctl->stop_fd);
    if (l->signal_fd >= 0)
        close(l->signal_fd);
    l->epoll_fd = l->signal_fd = ctl->stop_fd = -1;
}
