/* SPDX-License-Identifier: MIT */
/*
 * tests/guest/lib.c: what the test guest has instead of a libc: the serial
 * port (a 16550 at 0x3F8), a small printf, a bump allocator, CRC-32 and
 * power-off (ACPI PM1a control at 0x604, then the i8042 reset line).
 */
#include "guest.h"

#define COM1 0x3F8
#define COM1_LSR (COM1 + 5)
#define LSR_THRE 0x20

unsigned failures;

/*
 * Guest instructions may be emulated one by one (see guest.h), so the bulk
 * of memset and memcpy moves 32-bit words with one `rep` instruction.
 */
void *memset(void *d, int c, size_t n)
{
    void *edi = d;
    u32 v = (u8)c * 0x01010101u;
    size_t words = n / 4, rest = n % 4;
    __asm__ __volatile__("rep stosl" : "+D"(edi), "+c"(words) : "a"(v) : "memory");
    __asm__ __volatile__("rep stosb" : "+D"(edi), "+c"(rest) : "a"(v) : "memory");
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    void *edi = d;
    size_t words = n / 4, rest = n % 4;
    __asm__ __volatile__("rep movsl" : "+D"(edi), "+S"(s), "+c"(words) : : "memory");
    __asm__ __volatile__("rep movsb" : "+D"(edi), "+S"(s), "+c"(rest) : : "memory");
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const u8 *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

u32 first_difference(const void *a, const void *b, u32 n)
{
    const void *esi = a, *edi = b;
    u32 left = n / 4;
    if (left) {
        __asm__ __volatile__("repe cmpsl" : "+S"(esi), "+D"(edi), "+c"(left) : : "memory", "cc");
        if (left || ((const u32 *)esi)[-1] != ((const u32 *)edi)[-1])
            left++; /* the last word compared differs */
    }
    u32 i = n / 4 * 4 - left * 4;
    const u8 *x = a, *y = b;
    while (i < n && x[i] == y[i])
        i++;
    return i;
}

/* ---- serial ----------------------------------------------------------------- */

void serial_init(void)
{
    outb(COM1 + 1, 0x00); /* no interrupts */
    outb(COM1 + 3, 0x80); /* DLAB: divisor 1 (115200 baud) */
    outb(COM1 + 0, 0x01);
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); /* 8N1 */
    outb(COM1 + 2, 0x07); /* FIFOs on and cleared */
}

/*
 * Output is gathered a line at a time, then written to the UART 16 bytes
 * (its FIFO) per check of THRE: each port access is a VM exit, and each
 * instruction may be emulated.
 */
static char line[256];
static u32 line_len;

static void put_char(char c)
{
    if (line_len < sizeof line)
        line[line_len++] = c;
}

static void flush(void)
{
    for (u32 i = 0; i < line_len; i++) {
        if (i % 16 == 0) {
            /* Bounded: a UART that never drains must not hang the guest. */
            for (unsigned n = 0; n < 100000 && !(inb(COM1_LSR) & LSR_THRE); n++)
                ;
        }
        outb(COM1, (u8)line[i]);
    }
    line_len = 0;
}

static void put_str(const char *s, int width)
{
    int n = 0;
    for (const char *p = s; *p; p++)
        n++;
    for (; n < width; n++)
        put_char(' ');
    for (; *s; s++)
        put_char(*s);
}

/* u64 / 10 without libgcc: long division in 16-bit steps. */
static u64 div10(u64 v, unsigned *rem)
{
    u64 q = 0;
    u32 r = 0;
    for (int shift = 48; shift >= 0; shift -= 16) {
        u32 cur = (r << 16) | (u32)((v >> shift) & 0xffff);
        q |= (u64)(cur / 10) << shift;
        r = cur % 10;
    }
    *rem = r;
    return q;
}

static void put_num(u64 v, unsigned base, int width, char pad, int upper)
{
    char buf[24];
    int n = 0;
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    do {
        unsigned d;
        if (base == 10) {
            v = div10(v, &d);
        } else {
            d = (unsigned)(v & 15);
            v >>= 4;
        }
        buf[n++] = digits[d];
    } while (v);
    for (int i = n; i < width; i++)
        put_char(pad);
    while (n)
        put_char(buf[--n]);
}

/* %s %c %d %u %x %X %p, with l / ll, a width and the 0 flag, into line[]. */
static void vgprintf(const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put_char(*fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        int width = 0, longs = 0;
        if (*fmt == '0') {
            pad = '0';
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') {
            longs++;
            fmt++;
        }
        u64 v;
        switch (*fmt) {
        case 's':
            put_str(va_arg(ap, const char *), width);
            break;
        case 'c':
            put_char((char)va_arg(ap, int));
            break;
        case 'd': {
            long long s = longs >= 2 ? va_arg(ap, long long) : va_arg(ap, int);
            if (s < 0) {
                put_char('-');
                v = (u64)-s;
            } else {
                v = (u64)s;
            }
            put_num(v, 10, width, pad, 0);
            break;
        }
        case 'u':
        case 'x':
        case 'X':
            v = longs >= 2 ? va_arg(ap, u64) : va_arg(ap, u32);
            put_num(v, *fmt == 'u' ? 10 : 16, width, pad, *fmt == 'X');
            break;
        case 'p':
            put_char('0');
            put_char('x');
            put_num((u32)va_arg(ap, void *), 16, 8, '0', 0);
            break;
        case '%':
            put_char('%');
            break;
        default:
            put_char('%');
            put_char(*fmt ? *fmt : '?');
            if (!*fmt)
                return;
        }
    }
}

static void put_line(const char *prefix, const char *fmt, va_list ap)
{
    while (*prefix)
        put_char(*prefix++);
    vgprintf(fmt, ap);
    line_len = line_len < sizeof line - 2 ? line_len : sizeof line - 2;
    put_char('\r');
    put_char('\n');
    flush();
}

void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    put_line("GUEST: ", fmt, ap);
    va_end(ap);
}

void fail(const char *fmt, ...)
{
    va_list ap;
    failures++;
    va_start(ap, fmt);
    put_line("GUEST: FAIL ", fmt, ap);
    va_end(ap);
}

/* ---- memory ----------------------------------------------------------------- */

#define HEAP_START 0x200000u

static u32 heap_next = HEAP_START, heap_end = HEAP_START;

void heap_init(u32 mem_size)
{
    heap_end = mem_size;
}

void *alloc_raw(u32 size, u32 align)
{
    u32 p = (heap_next + align - 1) & ~(align - 1);
    if (p < heap_next || p > heap_end || heap_end - p < size) {
        fail("out of memory: %u bytes wanted at %p, memory ends at %p", size, (void *)p,
             (void *)heap_end);
        return 0;
    }
    heap_next = p + size;
    return (void *)p;
}

void *alloc(u32 size, u32 align)
{
    void *p = alloc_raw(size, align);
    if (p)
        memset(p, 0, size);
    return p;
}

/* ---- CRC-32 ----------------------------------------------------------------- */

static u32 crc_table[256];

void crc32_init(void)
{
    /*
     * The table is linear (T[a ^ b] = T[a] ^ T[b]): eight single-bit
     * entries by the bitwise algorithm, the rest by XOR, so that setting
     * it up costs ~2000 instructions instead of ~20000 (they may be
     * emulated).
     */
    for (u32 bit = 1; bit < 256; bit <<= 1) {
        u32 c = bit;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[bit] = c;
    }
    crc_table[0] = 0;
    for (u32 i = 3; i < 256; i++)
        if (i & (i - 1))
            crc_table[i] = crc_table[i & (i - 1)] ^ crc_table[i & -i];
}

u32 crc32_update(u32 crc, const void *buf, u32 len)
{
    const u8 *p = buf;
    crc = ~crc;
    while (len--)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- byte order --------------------------------------------------------------- */

u16 be16(const u8 *p)
{
    return (u16)(p[0] << 8 | p[1]);
}

u32 be32(const u8 *p)
{
    return (u32)p[0] << 24 | (u32)p[1] << 16 | (u32)p[2] << 8 | p[3];
}

u32 le32(const u8 *p)
{
    return (u32)p[3] << 24 | (u32)p[2] << 16 | (u32)p[1] << 8 | p[0];
}

void put_be32(u8 *p, u32 v)
{
    p[0] = (u8)(v >> 24);
    p[1] = (u8)(v >> 16);
    p[2] = (u8)(v >> 8);
    p[3] = (u8)v;
}

void put_be16(u8 *p, u16 v)
{
    p[0] = (u8)(v >> 8);
    p[1] = (u8)v;
}

/* ---- power ------------------------------------------------------------------ */

void power_off(void)
{
    /* ACPI PM1a control: SLP_TYP 5, SLP_EN. */
    outw(0x604, 0x2000 | (5 << 10));
    /* Still here: the i8042 reset line. */
    outb(0x64, 0xFE);
    for (;;)
        __asm__ __volatile__("cli; hlt");
}
