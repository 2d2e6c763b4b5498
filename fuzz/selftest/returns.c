/* SPDX-License-Identifier: MIT */
/*
 * fuzz/selftest/returns.c: a harness that returns its input's first byte,
 * so that CTest can show that fuzz-replay fails an input on which the
 * harness returns non-zero (fuzz-replay-selftest-nonzero, WILL_FAIL).
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return size ? data[0] : 0;
}
