/* guest-eject: ejects the medium of a CD-ROM drive from inside the test
 * guest (busybox has no eject applet). Built statically into the initramfs
 * by mkinitramfs.sh.
 *
 *   guest-eject DEVICE
 *
 * Unlocks the door, sends CDROMEJECT (START STOP UNIT with LoEj for sr), then
 * prints the drive status the kernel reports afterwards. Exits 0 when the
 * ioctl succeeded and the drive no longer reports a disc, 1 otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/cdrom.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static const char *status_name(int s)
{
    switch (s) {
    case CDS_NO_INFO: return "no-info";
    case CDS_NO_DISC: return "no-disc";
    case CDS_TRAY_OPEN: return "tray-open";
    case CDS_DRIVE_NOT_READY: return "not-ready";
    case CDS_DISC_OK: return "disc-ok";
    default: return "unknown";
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: guest-eject DEVICE\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY | O_NONBLOCK);
    if (fd < 0) {
        fprintf(stderr, "guest-eject: open %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    int before = ioctl(fd, CDROM_DRIVE_STATUS, CDSL_CURRENT);
    (void)ioctl(fd, CDROM_LOCKDOOR, 0);
    if (ioctl(fd, CDROMEJECT, 0) < 0) {
        fprintf(stderr, "guest-eject: CDROMEJECT %s: %s\n", argv[1], strerror(errno));
        close(fd);
        return 1;
    }
    int after = ioctl(fd, CDROM_DRIVE_STATUS, CDSL_CURRENT);
    printf("guest-eject: %s: before %s, after %s\n", argv[1],
           before < 0 ? strerror(errno) : status_name(before),
           after < 0 ? strerror(errno) : status_name(after));
    close(fd);
    return after == CDS_DISC_OK ? 1 : 0;
}
