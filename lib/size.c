/* SPDX-License-Identifier: MIT */
/*
 * lib/size.c: sizes as text ("64k", "1.5G", "0x1000"), parsed as qemu-img
 * 7.2 parses them (the grammar is in vdisk/options.h, vdisk_parse_size),
 * except that a fraction is exact where QEMU goes through a double.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

#include "internal.h"
#include "size.h"

/*
 * Fraction digits kept.  The result is round(fraction * 2^shift), shift at
 * most 60: the rounding depends only on which multiple of 2^-(shift + 1)
 * the fraction lies at or above, and those multiples have at most 61
 * decimal digits.  Digits past FRAC_KEEP only matter as "some are not
 * zero", one more digit (a 1) stands for them.
 */
#define FRAC_KEEP 64

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The C locale's white space, as strtoull skips it. */
static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* The power of two a suffix stands for, or -1. */
static int suffix_shift(char c)
{
    switch (c) {
    case 'b': case 'B': return 0;
    case 'k': case 'K': return 10;
    case 'm': case 'M': return 20;
    case 'g': case 'G': return 30;
    case 't': case 'T': return 40;
    case 'p': case 'P': return 50;
    case 'e': case 'E': return 60;
    default: return -1;
    }
}

/*
 * round(0.DIGITS * 2^shift), halves up: the decimal fraction doubled SHIFT
 * times, each carry out of its first digit a bit of the whole part.
 */
static uint64_t fraction_bytes(uint8_t *digits, size_t n, unsigned shift)
{
    uint64_t whole = 0;
    for (unsigned k = 0; k < shift; k++) {
        unsigned carry = 0;
        for (size_t i = n; i-- > 0;) {
            unsigned d = digits[i] * 2u + carry;
            digits[i] = (uint8_t)(d % 10);
            carry = d / 10;
        }
        whole = whole << 1 | carry;
    }
    if (n > 0 && digits[0] >= 5)
        whole++;
    return whole;
}

static int invalid(const char *text, const char *why)
{
    return err_set(-EINVAL, "invalid size '%s': %s", text, why);
}

int size_parse(const char *text, unsigned bare_shift, uint64_t *out)
{
    if (!text || !out)
        return err_set(-EINVAL, "no size text or no place for the result");
    if (bare_shift > 60 || bare_shift % 10)
        return err_set(-EINVAL, "a number without a suffix cannot count in units of 2^%u "
                       "bytes", bare_shift);

    const char *p = text;
    while (is_space(*p))
        p++;
    if (*p == '+')
        p++;
    if (!is_digit(*p))
        return invalid(text, "expected a number with an optional suffix (b, k, M, G, T, P "
                       "or E)");

    uint64_t whole = 0;
    bool too_big = false;
    uint8_t frac[FRAC_KEEP + 1];
    size_t nfrac = 0;
    bool frac_nonzero = false;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && hex_digit(p[2]) >= 0) {
        p += 2;
        for (int h; (h = hex_digit(*p)) >= 0; p++) {
            if (whole >> 60)
                too_big = true;
            whole = whole << 4 | (unsigned)h;
        }
        if (*p == '.')
            return invalid(text, "a hexadecimal number cannot have a fraction");
    } else {
        for (; is_digit(*p); p++) {
            unsigned d = (unsigned)(*p - '0');
            if (whole > (UINT64_MAX - d) / 10)
                too_big = true;
            whole = whole * 10 + d;
        }
        if (*p == '.') {
            for (p++; is_digit(*p); p++) {
                uint8_t d = (uint8_t)(*p - '0');
                if (nfrac < FRAC_KEEP)
                    frac[nfrac++] = d;
                else if (d && nfrac == FRAC_KEEP)
                    frac[nfrac++] = 1;
                frac_nonzero |= d != 0;
            }
        }
    }

    unsigned shift = bare_shift;
    int s = suffix_shift(*p);
    if (s >= 0) {
        shift = (unsigned)s;
        p++;
    }
    if (*p)
        return invalid(text, "expected a number with an optional suffix (b, k, M, G, T, P "
                       "or E)");
    if (shift == 0 && frac_nonzero)
        return invalid(text, "a fraction of a byte (a fraction needs a suffix k, M, G, T, P "
                       "or E)");
    if (too_big || whole > UINT64_MAX >> shift)
        return err_set(-ERANGE, "size '%s' is too large (at most 16 EiB - 1 byte)", text);
    uint64_t bytes = whole << shift;
    uint64_t part = frac_nonzero ? fraction_bytes(frac, nfrac, shift) : 0;
    if (part > UINT64_MAX - bytes)
        return err_set(-ERANGE, "size '%s' is too large (at most 16 EiB - 1 byte)", text);
    *out = bytes + part;
    return 0;
}

VDISK_EXPORT int vdisk_parse_size(const char *text, uint64_t bare_unit, uint64_t *out)
{
    err_enter(__func__);
    unsigned shift = 0;
    while (shift < 60 && bare_unit > (1ull << shift))
        shift += 10;
    if (bare_unit != (1ull << shift))
        return err_set(-EINVAL, "a number without a suffix cannot count in units of %llu "
                       "bytes (1, 1024, ... 2^60)", (unsigned long long)bare_unit);
    return size_parse(text, shift, out);
}
