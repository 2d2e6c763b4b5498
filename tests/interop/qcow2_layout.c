/* SPDX-License-Identifier: MIT */
/*
 * tests/interop/qcow2_layout.c: where vdisk puts clusters, against QEMU
 * 7.2 (the host offsets and zero clusters that QEMU's iotests print: 066 154
 * 252 292).
 *
 *   - an L1 table that grows frees the old one at once (its header is
 *     durable), and the next allocation reuses it, as in QEMU;
 *   - a write into preallocated zero clusters (zero flag, host cluster,
 *     COPIED) keeps their host clusters (066: "Successfully reused
 *     original clusters"), and reads back what was written and zeroes;
 *   - a grow reads zeroes in the new part: the rest of a partial last
 *     cluster is zeroed (292), and where a backing file reaches past the
 *     old end the new clusters become zero clusters, not the backing
 *     file's data (as qemu-img resize makes them);
 *   - write zeroes over part of a cluster whose rest reads zeroes makes a
 *     zero cluster, as QEMU does (154), not written zeroes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/vdisk.h>

#include "harness.h"

/* qemu-img map --output=json of PATH (a copy). */
static char *map_of(const char *path)
{
    struct run *r = run("qemu-img map --output=json '%s'", path);
    ck_assert_msg(r->status == 0, "%s", r->err);
    return strdup(r->out);
}

/* The qemu-io commands CMDS on q.qcow2 and the same vdisk io commands on
 * v.qcow2 (both made by MAKE, a command with %s for the image) give the
 * same map. */
static void same_layout(const char *make, const char *cmds)
{
    const char *q = scratch("q.qcow2"), *v = scratch("v.qcow2");
    RUN_OK(make, q);
    RUN_OK(make, v);
    RUN_OK("qemu-io %s '%s'", cmds, q);
    RUN_OK("%s io %s '%s'", vdisk_bin(), cmds, v);
    char *mq = map_of(q), *mv = map_of(v);
    ck_assert_msg(strcmp(mq, mv) == 0, "qemu-io:\n%s\nvdisk io:\n%s", mq, mv);
    free(mq);
    free(mv);
    RUN_OK("qemu-img check '%s'", v);
}

START_TEST(test_l1_reused)
{
    require_program("qemu-img");
    require_program("qemu-io");
    /* the L1 table grows (a resize), then a write allocates */
    const char *q = scratch("q.qcow2"), *v = scratch("v.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 -o cluster_size=512 '%s' 1M", q);
    RUN_OK("qemu-img create -q -f qcow2 -o cluster_size=512 '%s' 1M", v);
    RUN_OK("qemu-img resize '%s' 64M && qemu-io -c 'write -P 5 60M 1k' '%s'", q, q);
    RUN_OK("%s resize '%s' 64M && %s io -c 'write -P 5 60M 1k' '%s'", vdisk_bin(), v,
           vdisk_bin(), v);
    char *mq = map_of(q), *mv = map_of(v);
    ck_assert_msg(strcmp(mq, mv) == 0, "qemu:\n%s\nvdisk:\n%s", mq, mv);
    free(mq);
    free(mv);
    RUN_OK("qemu-img check '%s'", v);
}
END_TEST

START_TEST(test_zero_clusters_reused)
{
    require_program("qemu-img");
    require_program("qemu-io");
    const char *img = scratch("z.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 '%s' 67109376", img);
    RUN_OK("qemu-io -c 'write -P 42 1M 256k' '%s'", img);
    char *before = map_of(img);
    RUN_OK("qemu-io -c 'write -z 1M 256k' '%s'", img);
    RUN_OK("%s io -c 'write -P 23 1081344 192k' '%s'", vdisk_bin(), img);
    char *after = map_of(img);
    ck_assert_msg(strcmp(before, after) == 0, "before:\n%s\nafter:\n%s", before, after);
    free(before);
    free(after);
    RUN_OK("qemu-img check '%s'", img);
    RUN_OK("qemu-io -c 'read -P 0 1M 32k' -c 'read -P 23 1081344 192k' "
           "-c 'read -P 0 1277952 32k' '%s'", img);
    /* shared with a snapshot: a new cluster, the snapshot keeps its zeroes */
    RUN_OK("qemu-img create -q -f qcow2 '%s' 64k", img);
    RUN_OK("qemu-io -c 'write -P 42 0 64k' -c 'write -z 0 64k' '%s'", img);
    RUN_OK("%s snapshot -c foo '%s'", vdisk_bin(), img);
    RUN_OK("%s io -c 'write -P 23 0 64k' '%s'", vdisk_bin(), img);
    RUN_OK("qemu-img check '%s'", img);
    RUN_OK("qemu-io -c 'read -P 23 0 64k' '%s'", img);
    RUN_OK("%s snapshot -a foo '%s'", vdisk_bin(), img);
    RUN_OK("qemu-io -c 'read -P 0 0 64k' '%s'", img);
}
END_TEST

START_TEST(test_grow_reads_zeroes)
{
    require_program("qemu-img");
    require_program("qemu-io");
    const char *base = scratch("b.raw"), *q = scratch("q.qcow2"), *v = scratch("v.qcow2");
    RUN_OK("qemu-img create -q -f raw '%s' 4M && qemu-io -f raw -c 'write -P 0x11 0 4M' '%s'",
           base, base);
    /* a backing file longer than the overlay: the grown part is zero clusters */
    for (int i = 0; i < 2; i++) {
        const char *img = i ? v : q;
        RUN_OK("qemu-img create -q -f qcow2 -b '%s' -F raw '%s' 1M", base, img);
        if (i)
            RUN_OK("%s resize '%s' 3M", vdisk_bin(), img);
        else
            RUN_OK("qemu-img resize '%s' 3M", img);
    }
    char *mq = map_of(q), *mv = map_of(v);
    ck_assert_msg(strcmp(mq, mv) == 0, "qemu:\n%s\nvdisk:\n%s", mq, mv);
    free(mq);
    free(mv);
    RUN_OK("qemu-io -c 'read -P 0x11 0 1M' -c 'read -P 0 1M 2M' '%s'", v);
    /* 292: shrink and grow inside one cluster: the tail reads zeroes */
    for (int i = 0; i < 2; i++) {
        const char *img = i ? v : q;
        const char *tool = i ? vdisk_bin() : "qemu-img";
        RUN_OK("qemu-img create -q -f qcow2 -b '%s' -F raw '%s' 1M", base, img);
        RUN_OK("qemu-io -c 'write -P 0x22 0 1M' '%s'", img);
        RUN_OK("%s resize --shrink '%s' 520k && %s resize '%s' 567k", tool, img, tool, img);
    }
    RUN_OK("qemu-io -c 'read -P 0x22 0 520k' -c 'read -P 0 520k 47k' '%s'", v);
    mq = map_of(q);
    mv = map_of(v);
    ck_assert_msg(strcmp(mq, mv) == 0, "qemu:\n%s\nvdisk:\n%s", mq, mv);
    free(mq);
    free(mv);
    RUN_OK("qemu-img check '%s'", v);
}
END_TEST

START_TEST(test_partial_zeroes)
{
    require_program("qemu-img");
    require_program("qemu-io");
    /* 154: write zeroes over part of a 4 KiB cluster whose rest reads
     * zeroes (over an empty backing file) makes a zero cluster; over data,
     * written zeroes */
    const char *base = scratch("b.qcow2");
    RUN_OK("qemu-img create -q -f qcow2 -o cluster_size=512 '%s' 1M", base);
    RUN_OK("qemu-io -c 'write -P 0x11 40k 1k' '%s'", base);
    same_layout(fmt("qemu-img create -q -f qcow2 -o cluster_size=4k -b '%s' -F qcow2 %%s",
                    base),
                "-c 'write -z 0 2k' -c 'write -z 10k 2k' -c 'write -z 17k 2k' "
                "-c 'write -z 27k 2k' -c 'write -z 41k 1k' -c 'write -P 3 64k 1k' "
                "-c 'write -z 65k 1k'");
    RUN_OK("qemu-io -c 'read -P 0 0 40k' -c 'read -P 0x11 40k 1k' -c 'read -P 0 41k 1k' "
           "-c 'read -P 3 64k 1k' -c 'read -P 0 65k 1k' '%s'", scratch("v.qcow2"));
    /* the image's last, short cluster */
    same_layout("qemu-img create -q -f qcow2 -o cluster_size=4k %s 134219776",
                "-c 'write -z 134218752 512'");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("interop-qcow2-layout");
    TCase *tc = tcase_create("layout");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_l1_reused);
    tcase_add_test(tc, test_zero_clusters_reused);
    tcase_add_test(tc, test_grow_reads_zeroes);
    tcase_add_test(tc, test_partial_zeroes);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
