/* SPDX-License-Identifier: MIT */
/*
 * formats/qcow2/check.c: consistency check and repair (being written).
 */
#include <errno.h>

#include "qcow2.h"

int qcow2_rebuild_refcounts(struct qcow2 *s)
{
    return err_set(-ENOTSUP, "%s: the image has the dirty bit set (lazy refcounts after a "
                   "crash); repairing it is not supported yet", s->dev->filename);
}
