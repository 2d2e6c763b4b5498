/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: the terminal: raw mode while the guest has the serial console,
 * restored at exit and on a crash.
 */
#include <signal.h>
#include <stdlib.h>
#include <termios.h>
#include <unistd.h>

#include "vmm.h"

/*
 * What the terminal was: process-wide, as the terminal is, and read by the
 * crash handler and atexit, which take no arguments.
 */
static struct termios saved_termios;
static volatile sig_atomic_t termios_saved;

void vmm_term_restore(void)
{
    if (termios_saved) {
        tcsetattr(0, TCSANOW, &saved_termios);
        termios_saved = 0;
    }
}

static void crash_handler(int sig)
{
    vmm_term_restore();
    signal(sig, SIG_DFL);
    raise(sig);
}

void vmm_term_raw(void)
{
    if (!isatty(0) || tcgetattr(0, &saved_termios) < 0)
        return;
    struct termios raw = saved_termios;
    raw.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    raw.c_oflag &= ~(tcflag_t)OPOST;
    raw.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    raw.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
    raw.c_cflag |= CS8;
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    termios_saved = 1;
    atexit(vmm_term_restore);
    static const int crash[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };
    for (size_t i = 0; i < sizeof(crash) / sizeof(crash[0]); i++) {
        struct sigaction sa = { .sa_handler = crash_handler };
        sigaction(crash[i], &sa, NULL);
    }
    tcsetattr(0, TCSANOW, &raw);
}
