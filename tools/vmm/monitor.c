/* SPDX-License-Identifier: MIT */
/*
 * vdisk-vmm: the monitor (monitor.h): the library's, over the CD-ROM
 * drive, called under the drive's lock.
 */
#include <stdlib.h>

#include <vdisk/error.h>
#include <vdisk/monitor.h>

#include "monitor.h"
#include "vmm.h"

struct vmm_monitor {
    vdisk_monitor *mon;
    pthread_mutex_t *lock;      /* the drive's, or NULL: no drive */
};

static void monitor_log(void *opaque, const char *line)
{
    (void)opaque;
    vmm_log("cdrom: %s", line);
}

int vmm_monitor_new(struct vmm_monitor **out, const char *path,
                    const struct vmm_monitor_drive *drive)
{
    *out = NULL;
    struct vmm_monitor *m = calloc(1, sizeof(*m));
    if (!m) {
        vmm_log("out of memory");
        return -1;
    }
    struct vdisk_monitor_params p = {
        .struct_size = sizeof p,
        .cdrom = drive->model,
        .cdrom_dev = drive->dev,
        .log = monitor_log,
    };
    m->lock = drive->model ? drive->lock : NULL;
    if (vdisk_monitor_new(&m->mon, &p) < 0 || (path && vdisk_monitor_listen(m->mon, path) < 0)) {
        vmm_log("--monitor: %s", vdisk_get_error());
        vmm_monitor_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

int vmm_monitor_fd(const struct vmm_monitor *m)
{
    return vdisk_monitor_get_fd(m->mon);
}

void vmm_monitor_dispatch(struct vmm_monitor *m)
{
    if (m->lock)
        pthread_mutex_lock(m->lock);
    if (vdisk_monitor_process(m->mon) < 0)
        vmm_log("--monitor: %s", vdisk_get_error());
    if (m->lock)
        pthread_mutex_unlock(m->lock);
}

void vmm_monitor_run(struct vmm_monitor *m, const char *line, char *answer, size_t len)
{
    if (m->lock)
        pthread_mutex_lock(m->lock);
    vdisk_monitor_command(m->mon, line, answer, len);
    if (m->lock)
        pthread_mutex_unlock(m->lock);
}

void vmm_monitor_free(struct vmm_monitor *m)
{
    if (!m)
        return;
    vdisk_monitor_free(m->mon);
    free(m);
}
