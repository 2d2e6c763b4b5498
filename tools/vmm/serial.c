/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: a 16550A UART at 0x3F8, IRQ 4.  Transmission is instantaneous
 * (the transmitter is always empty); received bytes come from stdin through
 * the I/O thread.
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "vmm.h"

/* Register offsets */
#define UART_RBR 0   /* read, DLAB 0 */
#define UART_THR 0   /* write, DLAB 0 */
#define UART_IER 1
#define UART_IIR 2   /* read */
#define UART_FCR 2   /* write */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define LCR_DLAB    0x80
#define IER_RDI     0x01
#define IER_THRI    0x02
#define IIR_NONE    0x01
#define IIR_THRI    0x02
#define IIR_RDI     0x04
#define IIR_FIFO    0xC0
#define FCR_FIFO    0x01
#define FCR_CLR_RX  0x02
#define LSR_DR      0x01
#define LSR_THRE    0x20
#define LSR_TEMT    0x40
#define MCR_DTR     0x01
#define MCR_RTS     0x02
#define MCR_OUT1    0x04
#define MCR_OUT2    0x08
#define MCR_LOOP    0x10
#define MSR_CTS     0x10
#define MSR_DSR     0x20
#define MSR_RI      0x40
#define MSR_DCD     0x80

void vmm_serial_init(struct vmm_serial *s, int vm_fd, int out_fd)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->vm_fd = vm_fd;
    s->out_fd = out_fd;
    s->mcr = MCR_OUT2;
    s->lcr = 0x03;
    s->dll = 12;    /* 9600 baud, as after a BIOS */
}

void vmm_serial_destroy(struct vmm_serial *s)
{
    pthread_mutex_destroy(&s->lock);
}

static uint8_t serial_iir(const struct vmm_serial *s)
{
    uint8_t fifo = (s->fcr & FCR_FIFO) ? IIR_FIFO : 0;
    if ((s->ier & IER_RDI) && s->rx_len > 0)
        return fifo | IIR_RDI;
    if ((s->ier & IER_THRI) && s->thre_pending)
        return fifo | IIR_THRI;
    return fifo | IIR_NONE;
}

static void serial_update_irq(struct vmm_serial *s)
{
    int level = (serial_iir(s) & IIR_NONE) == 0;
    if (level == s->irq_level)
        return;
    s->irq_level = level;
    struct kvm_irq_level l = { .irq = VMM_SERIAL_IRQ, .level = (uint32_t)level };
    if (s->vm_fd >= 0 && ioctl(s->vm_fd, KVM_IRQ_LINE, &l) < 0) {
        static int once;
        if (!once++)
            vmm_log("serial: KVM_IRQ_LINE: %s", strerror(errno));
    }
}

static void serial_push_rx(struct vmm_serial *s, uint8_t b)
{
    if (s->rx_len >= sizeof(s->rx))
        return; /* overrun: dropped */
    s->rx[(s->rx_head + s->rx_len) % sizeof(s->rx)] = b;
    s->rx_len++;
}

static void serial_output(struct vmm_serial *s, uint8_t b)
{
    for (;;) {
        ssize_t n = write(s->out_fd, &b, 1);
        if (n == 1 || (n < 0 && errno != EINTR && errno != EAGAIN))
            return; /* a closed stdout loses the output, the guest goes on */
    }
}

static uint8_t serial_msr(const struct vmm_serial *s)
{
    if (s->mcr & MCR_LOOP) {
        uint8_t m = 0;
        if (s->mcr & MCR_RTS)  m |= MSR_CTS;
        if (s->mcr & MCR_DTR)  m |= MSR_DSR;
        if (s->mcr & MCR_OUT1) m |= MSR_RI;
        if (s->mcr & MCR_OUT2) m |= MSR_DCD;
        return m;
    }
    return MSR_DCD | MSR_DSR | MSR_CTS;
}

void vmm_serial_io(struct vmm_serial *s, unsigned port, int is_write, uint8_t *data)
{
    pthread_mutex_lock(&s->lock);
    int dlab = (s->lcr & LCR_DLAB) != 0;
    if (is_write) {
        uint8_t v = *data;
        switch (port) {
        case UART_THR:
            if (dlab) {
                s->dll = v;
                break;
            }
            if (s->mcr & MCR_LOOP)
                serial_push_rx(s, v);
            else
                serial_output(s, v);
            s->thre_pending = 1;
            break;
        case UART_IER:
            if (dlab) {
                s->dlm = v;
                break;
            }
            if ((v & IER_THRI) && !(s->ier & IER_THRI))
                s->thre_pending = 1;
            s->ier = v & 0x0F;
            break;
        case UART_FCR:
            s->fcr = v & (FCR_FIFO | 0xC0);
            if (v & FCR_CLR_RX)
                s->rx_len = 0;
            break;
        case UART_LCR: s->lcr = v; break;
        case UART_MCR: s->mcr = v & 0x1F; break;
        case UART_SCR: s->scr = v; break;
        default: break; /* LSR, MSR: read-only */
        }
    } else {
        uint8_t v = 0;
        switch (port) {
        case UART_RBR:
            if (dlab) {
                v = s->dll;
                break;
            }
            if (s->rx_len > 0) {
                v = s->rx[s->rx_head];
                s->rx_head = (s->rx_head + 1) % sizeof(s->rx);
                s->rx_len--;
            }
            break;
        case UART_IER: v = dlab ? s->dlm : s->ier; break;
        case UART_IIR:
            v = serial_iir(s);
            if ((v & 0x0F) == IIR_THRI)
                s->thre_pending = 0;
            break;
        case UART_LCR: v = s->lcr; break;
        case UART_MCR: v = s->mcr; break;
        case UART_LSR: v = LSR_THRE | LSR_TEMT | (s->rx_len ? LSR_DR : 0); break;
        case UART_MSR: v = serial_msr(s); break;
        case UART_SCR: v = s->scr; break;
        default: break;
        }
        *data = v;
    }
    serial_update_irq(s);
    pthread_mutex_unlock(&s->lock);
}

unsigned vmm_serial_rx_room(struct vmm_serial *s)
{
    pthread_mutex_lock(&s->lock);
    unsigned room = (unsigned)sizeof(s->rx) - s->rx_len;
    pthread_mutex_unlock(&s->lock);
    return room;
}

void vmm_serial_rx(struct vmm_serial *s, const uint8_t *buf, unsigned len)
{
    pthread_mutex_lock(&s->lock);
    if (!(s->mcr & MCR_LOOP))
        for (unsigned i = 0; i < len; i++)
            serial_push_rx(s, buf[i]);
    serial_update_irq(s);
    pthread_mutex_unlock(&s->lock);
}

void vmm_serial_bus_io(void *opaque, uint64_t off, uint8_t *data, unsigned len, int is_write)
{
    for (unsigned k = 0; k < len; k++)
        vmm_serial_io(opaque, (unsigned)(off + k), is_write, &data[k]);
}
