/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Test-only interface of virtio_backup.ko.
 *
 * Present only when the module is loaded with vb_test_malformed=1.  It lets
 * a test put descriptor chains on the virtqueue that the regular
 * VBACKUP_IOC_CALL never produces (no reply buffer, no request buffer,
 * reply buffer smaller than a header, oversized or zero-length segments),
 * to check that the device answers or refuses them without harm.  Not part
 * of the protocol; include/vbackup/proto.h is the real interface.
 */
#ifndef VIRTIO_BACKUP_TEST_H
#define VIRTIO_BACKUP_TEST_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/ioctl.h>
#else
#include <stdint.h>
#include <sys/ioctl.h>
#endif

#define VBACKUP_TEST_MAX_SEGS   4

/* Largest segment accepted: a little more than a frame, to test oversize. */
#define VBACKUP_TEST_MAX_SEG    (VB_MAX_FRAME + 4096u)

struct vbackup_test_raw {
	uint64_t out;		/* user memory: the out segments back to back */
	uint64_t in;		/* user memory: receives the in segments */
	uint32_t out_len[VBACKUP_TEST_MAX_SEGS];
	uint32_t in_len[VBACKUP_TEST_MAX_SEGS];
	uint32_t n_out;		/* device-readable segments, 0..4 */
	uint32_t n_in;		/* device-writable segments, 0..4 */
	uint32_t timeout_ms;	/* give up waiting after this; 0 = 5000 */
	uint32_t used_len;	/* out: bytes the device reported written */
};

/*
 * Returns 0, or -1 with errno ETIMEDOUT (still in flight), EINTR, ENODEV,
 * EINVAL, ENOMEM, EFAULT, ENOTTY (test mode off).
 */
#define VBACKUP_IOC_TEST_RAW    _IOWR('V', 0x70, struct vbackup_test_raw)

#ifndef __cplusplus
_Static_assert(sizeof(struct vbackup_test_raw) == 64, "vbackup_test_raw");
#endif

#endif /* VIRTIO_BACKUP_TEST_H */
