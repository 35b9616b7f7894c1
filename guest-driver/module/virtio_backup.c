// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * virtio_backup - guest driver for the vbackup virtio device
 *
 * The device has one virtqueue.  Each request is one device-readable buffer
 * holding a protocol frame (include/vbackup/frame.h) followed by one
 * device-writable buffer for the reply frame.  User space talks to the
 * driver through /dev/vbackup and the VBACKUP_IOC_CALL ioctl: the frame is
 * copied in, queued, and the caller sleeps until the device answers.  The
 * driver does not look inside frames; the device and the host daemon check
 * them.
 *
 * Lifetime: a request is shared by its caller and the virtqueue, and holds
 * one reference for each.  A caller interrupted by a signal drops its
 * reference and leaves; the completion path (or device removal) drops the
 * other and frees the buffers.  The device structure is reference counted
 * by open files, so an ioctl after removal fails with -ENODEV instead of
 * touching freed memory.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/miscdevice.h>
#include <linux/fs.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/mm.h>
#include <linux/scatterlist.h>
#include <linux/completion.h>
#include <linux/wait.h>
#include <linux/kref.h>
#include <linux/refcount.h>
#include <linux/idr.h>
#include <linux/uaccess.h>

#include "vbackup/frame.h"
#include "virtio_backup_test.h"

/*
 * Buffers up to this size are kmalloc'ed (one segment); larger ones are
 * vmalloc'ed and described page by page.
 */
#define VB_KMALLOC_MAX		(64 * 1024)

static bool vb_test_malformed;
module_param(vb_test_malformed, bool, 0444);
MODULE_PARM_DESC(vb_test_malformed,
		 "Enable the test-only VBACKUP_IOC_TEST_RAW ioctl (default: off)");

/* Requests allocated and not yet freed, for leak checks in tests. */
static atomic_t vb_live_requests = ATOMIC_INIT(0);

static int vb_live_requests_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&vb_live_requests));
}

static const struct kernel_param_ops vb_live_requests_ops = {
	.get = vb_live_requests_get,
};
module_param_cb(live_requests, &vb_live_requests_ops, NULL, 0444);
MODULE_PARM_DESC(live_requests, "Requests currently allocated (read-only)");

static DEFINE_IDA(vbackup_ida);

struct vbackup_dev {
	struct virtio_device *vdev;
	struct virtqueue *vq;
	/* protects vq, removed, inflight, completions */
	spinlock_t lock;
	bool removed;
	unsigned int inflight;		/* requests on the ring */
	unsigned long completions;	/* bumped whenever ring space frees up */
	wait_queue_head_t ring_wait;	/* callers waiting for ring space */
	struct miscdevice misc;
	char name[16];
	int index;
	struct kref ref;		/* probe + one per open file */
};

struct vbackup_buf {
	void *data;
	size_t len;
	struct scatterlist *sgl;
	struct scatterlist one;
};

struct vbackup_req {
	refcount_t refs;		/* caller + virtqueue */
	struct completion done;
	struct list_head node;		/* device removal only */
	int status;			/* 0, or -ENODEV when the device went away */
	unsigned int used_len;		/* bytes the device wrote */
	unsigned int n_out;
	unsigned int n_in;
	struct vbackup_buf bufs[2 * VBACKUP_TEST_MAX_SEGS];
};

static int vbackup_buf_alloc(struct vbackup_buf *b, size_t len, bool zero)
{
	unsigned int i, n;

	b->len = len;
	if (len <= VB_KMALLOC_MAX) {
		b->data = kmalloc(max_t(size_t, len, 1),
				  zero ? GFP_KERNEL | __GFP_ZERO : GFP_KERNEL);
		if (!b->data)
			return -ENOMEM;
		sg_init_one(&b->one, b->data, len);
		b->sgl = &b->one;
		return 0;
	}

	b->data = zero ? vzalloc(len) : vmalloc(len);
	if (!b->data)
		return -ENOMEM;
	n = DIV_ROUND_UP(len, PAGE_SIZE);
	b->sgl = kmalloc_array(n, sizeof(*b->sgl), GFP_KERNEL);
	if (!b->sgl) {
		vfree(b->data);
		b->data = NULL;
		return -ENOMEM;
	}
	sg_init_table(b->sgl, n);
	for (i = 0; i < n; i++) {
		size_t off = (size_t)i * PAGE_SIZE;

		sg_set_page(&b->sgl[i], vmalloc_to_page(b->data + off),
			    min_t(size_t, len - off, PAGE_SIZE), 0);
	}
	return 0;
}

/* May run in interrupt context: vfree() defers the unmap there. */
static void vbackup_buf_free(struct vbackup_buf *b)
{
	if (b->sgl != &b->one)
		kfree(b->sgl);
	kvfree(b->data);
}

static void vbackup_req_free(struct vbackup_req *r)
{
	unsigned int i;

	for (i = 0; i < r->n_out + r->n_in; i++)
		vbackup_buf_free(&r->bufs[i]);
	kfree(r);
	atomic_dec(&vb_live_requests);
}

static void vbackup_req_put(struct vbackup_req *r)
{
	if (refcount_dec_and_test(&r->refs))
		vbackup_req_free(r);
}

/*
 * Allocate a request with n_out device-readable and n_in device-writable
 * buffers of the given sizes; reply buffers are zeroed.
 */
static struct vbackup_req *vbackup_req_alloc(const u32 *out_len,
					     unsigned int n_out,
					     const u32 *in_len,
					     unsigned int n_in)
{
	struct vbackup_req *r;
	unsigned int i;

	r = kzalloc(sizeof(*r), GFP_KERNEL);
	if (!r)
		return NULL;
	atomic_inc(&vb_live_requests);
	refcount_set(&r->refs, 1);
	init_completion(&r->done);
	INIT_LIST_HEAD(&r->node);

	for (i = 0; i < n_out; i++) {
		if (vbackup_buf_alloc(&r->bufs[r->n_out], out_len[i], false))
			goto fail;
		r->n_out++;
	}
	for (i = 0; i < n_in; i++) {
		if (vbackup_buf_alloc(&r->bufs[r->n_out + r->n_in], in_len[i],
				      true))
			goto fail;
		r->n_in++;
	}
	return r;

fail:
	vbackup_req_free(r);
	return NULL;
}

/* Virtqueue callback, in interrupt context. */
static void vbackup_vq_done(struct virtqueue *vq)
{
	struct vbackup_dev *vb = vq->vdev->priv;
	struct vbackup_req *r, *tmp;
	unsigned long flags;
	unsigned int len;
	LIST_HEAD(done);

	spin_lock_irqsave(&vb->lock, flags);
	while ((r = virtqueue_get_buf(vq, &len))) {
		r->used_len = len;
		list_add_tail(&r->node, &done);
		vb->inflight--;
		vb->completions++;
	}
	spin_unlock_irqrestore(&vb->lock, flags);

	if (list_empty(&done))
		return;
	list_for_each_entry_safe(r, tmp, &done, node) {
		list_del_init(&r->node);
		complete(&r->done);
		vbackup_req_put(r);
	}
	wake_up_interruptible_all(&vb->ring_wait);
}

/*
 * Put a request on the ring, waiting for space if it is full.  On success
 * the ring owns one reference.  Returns 0, -EINTR (not queued), -ENODEV,
 * -ENOMEM (the chain can never fit) or another error of virtqueue_add_sgs.
 */
static int vbackup_submit(struct vbackup_dev *vb, struct vbackup_req *r)
{
	struct scatterlist *sgs[2 * VBACKUP_TEST_MAX_SEGS];
	unsigned int i, n = r->n_out + r->n_in;
	unsigned long seen;
	bool notify;
	int err;

	for (i = 0; i < n; i++)
		sgs[i] = r->bufs[i].sgl;

	for (;;) {
		spin_lock_irq(&vb->lock);
		if (vb->removed) {
			spin_unlock_irq(&vb->lock);
			return -ENODEV;
		}
		refcount_inc(&r->refs);
		err = virtqueue_add_sgs(vb->vq, sgs, r->n_out, r->n_in, r,
					GFP_ATOMIC);
		if (!err) {
			vb->inflight++;
			notify = virtqueue_kick_prepare(vb->vq);
			spin_unlock_irq(&vb->lock);
			if (notify)
				virtqueue_notify(vb->vq);
			return 0;
		}
		refcount_dec(&r->refs);
		seen = vb->completions;
		if (err == -ENOSPC && !vb->inflight)
			err = -ENOMEM;	/* does not fit even in an empty ring */
		spin_unlock_irq(&vb->lock);
		if (err != -ENOSPC)
			return err;

		/* Ring full: sleep until a request completes. */
		if (wait_event_interruptible(vb->ring_wait,
					     READ_ONCE(vb->completions) != seen ||
					     READ_ONCE(vb->removed)))
			return -EINTR;
	}
}

/*
 * Wait for the device to answer.  Returns 0, -EINTR or -ETIMEDOUT (the
 * request stays in flight and is freed when it completes), or -ENODEV.
 */
static int vbackup_wait(struct vbackup_req *r, unsigned long timeout)
{
	long ret;

	if (timeout)
		ret = wait_for_completion_interruptible_timeout(&r->done,
								timeout);
	else
		ret = wait_for_completion_interruptible(&r->done) ?: 1;
	if (ret == 0)
		return -ETIMEDOUT;
	if (ret < 0 && !try_wait_for_completion(&r->done))
		return -EINTR;
	return r->status;
}

static long vbackup_ioc_call(struct vbackup_dev *vb,
			     struct vbackup_call __user *ucall)
{
	struct vbackup_call call;
	struct vbackup_req *r;
	struct vbackup_buf *reply;
	u32 out_len, in_len;
	long ret;

	if (copy_from_user(&call, ucall, sizeof(call)))
		return -EFAULT;
	if (call.flags ||
	    call.req_len < VB_HDR_SIZE || call.req_len > VB_MAX_FRAME ||
	    call.reply_cap < VB_HDR_SIZE || call.reply_cap > VB_MAX_FRAME)
		return -EINVAL;

	out_len = call.req_len;
	in_len = call.reply_cap;
	r = vbackup_req_alloc(&out_len, 1, &in_len, 1);
	if (!r)
		return -ENOMEM;
	if (copy_from_user(r->bufs[0].data, u64_to_user_ptr(call.req),
			   call.req_len)) {
		ret = -EFAULT;
		goto out;
	}

	ret = vbackup_submit(vb, r);
	if (ret)
		goto out;
	ret = vbackup_wait(r, 0);
	if (ret)
		goto out;

	reply = &r->bufs[1];
	if (r->used_len < VB_HDR_SIZE || r->used_len > call.reply_cap) {
		pr_warn_ratelimited("device wrote %u bytes into a %u byte reply buffer\n",
				    r->used_len, call.reply_cap);
		ret = -EIO;
		goto out;
	}
	if (copy_to_user(u64_to_user_ptr(call.reply), reply->data,
			 r->used_len) ||
	    put_user(r->used_len, &ucall->reply_len)) {
		ret = -EFAULT;
		goto out;
	}
	ret = 0;
out:
	vbackup_req_put(r);
	return ret;
}

static long vbackup_ioc_test_raw(struct vbackup_dev *vb,
				 struct vbackup_test_raw __user *utest)
{
	struct vbackup_test_raw t;
	struct vbackup_req *r;
	unsigned int i;
	size_t off;
	long ret;

	if (!vb_test_malformed)
		return -ENOTTY;
	if (copy_from_user(&t, utest, sizeof(t)))
		return -EFAULT;
	if (t.n_out > VBACKUP_TEST_MAX_SEGS || t.n_in > VBACKUP_TEST_MAX_SEGS ||
	    t.n_out + t.n_in == 0)
		return -EINVAL;
	for (i = 0; i < t.n_out; i++)
		if (t.out_len[i] > VBACKUP_TEST_MAX_SEG)
			return -EINVAL;
	for (i = 0; i < t.n_in; i++)
		if (t.in_len[i] > VBACKUP_TEST_MAX_SEG)
			return -EINVAL;

	r = vbackup_req_alloc(t.out_len, t.n_out, t.in_len, t.n_in);
	if (!r)
		return -ENOMEM;
	for (i = 0, off = 0; i < t.n_out; off += t.out_len[i], i++) {
		if (copy_from_user(r->bufs[i].data,
				   u64_to_user_ptr(t.out + off),
				   t.out_len[i])) {
			ret = -EFAULT;
			goto out;
		}
	}

	ret = vbackup_submit(vb, r);
	if (ret)
		goto out;
	ret = vbackup_wait(r, msecs_to_jiffies(t.timeout_ms ?: 5000));
	if (ret)
		goto out;

	for (i = 0, off = 0; i < t.n_in; off += t.in_len[i], i++) {
		if (copy_to_user(u64_to_user_ptr(t.in + off),
				 r->bufs[t.n_out + i].data, t.in_len[i])) {
			ret = -EFAULT;
			goto out;
		}
	}
	if (put_user(r->used_len, &utest->used_len))
		ret = -EFAULT;
out:
	vbackup_req_put(r);
	return ret;
}

static void vbackup_dev_release(struct kref *ref)
{
	struct vbackup_dev *vb = container_of(ref, struct vbackup_dev, ref);

	ida_free(&vbackup_ida, vb->index);
	kfree(vb);
}

static int vbackup_open(struct inode *inode, struct file *file)
{
	struct vbackup_dev *vb = container_of(file->private_data,
					      struct vbackup_dev, misc);

	/* misc_open() holds misc_mtx: remove cannot have dropped vb yet. */
	kref_get(&vb->ref);
	file->private_data = vb;
	return 0;
}

static int vbackup_release(struct inode *inode, struct file *file)
{
	struct vbackup_dev *vb = file->private_data;

	kref_put(&vb->ref, vbackup_dev_release);
	return 0;
}

static long vbackup_ioctl(struct file *file, unsigned int cmd,
			  unsigned long arg)
{
	struct vbackup_dev *vb = file->private_data;

	switch (cmd) {
	case VBACKUP_IOC_CALL:
		return vbackup_ioc_call(vb, (void __user *)arg);
	case VBACKUP_IOC_TEST_RAW:
		return vbackup_ioc_test_raw(vb, (void __user *)arg);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations vbackup_fops = {
	.owner = THIS_MODULE,
	.open = vbackup_open,
	.release = vbackup_release,
	.unlocked_ioctl = vbackup_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static int vbackup_probe(struct virtio_device *vdev)
{
	struct vbackup_dev *vb;
	int err;

	vb = kzalloc(sizeof(*vb), GFP_KERNEL);
	if (!vb)
		return -ENOMEM;
	kref_init(&vb->ref);
	spin_lock_init(&vb->lock);
	init_waitqueue_head(&vb->ring_wait);
	vb->vdev = vdev;
	vdev->priv = vb;

	vb->index = ida_alloc(&vbackup_ida, GFP_KERNEL);
	if (vb->index < 0) {
		err = vb->index;
		goto err_free;
	}
	if (vb->index == 0)
		strscpy(vb->name, "vbackup", sizeof(vb->name));
	else
		snprintf(vb->name, sizeof(vb->name), "vbackup%d", vb->index);

	vb->vq = virtio_find_single_vq(vdev, vbackup_vq_done, "requests");
	if (IS_ERR(vb->vq)) {
		err = PTR_ERR(vb->vq);
		goto err_ida;
	}

	virtio_device_ready(vdev);

	vb->misc.minor = MISC_DYNAMIC_MINOR;
	vb->misc.name = vb->name;
	vb->misc.fops = &vbackup_fops;
	vb->misc.mode = 0600;
	err = misc_register(&vb->misc);
	if (err)
		goto err_reset;

	dev_info(&vdev->dev, "/dev/%s ready, %u ring entries\n", vb->name,
		 virtqueue_get_vring_size(vb->vq));
	return 0;

err_reset:
	virtio_reset_device(vdev);
	vdev->config->del_vqs(vdev);
err_ida:
	ida_free(&vbackup_ida, vb->index);
err_free:
	kfree(vb);
	return err;
}

static void vbackup_remove(struct virtio_device *vdev)
{
	struct vbackup_dev *vb = vdev->priv;
	struct vbackup_req *r, *tmp;
	unsigned int n = 0;
	LIST_HEAD(gone);

	/* No new opens; open files see removed and fail with -ENODEV. */
	misc_deregister(&vb->misc);
	spin_lock_irq(&vb->lock);
	vb->removed = true;
	spin_unlock_irq(&vb->lock);
	wake_up_interruptible_all(&vb->ring_wait);

	/* Stop the device; virtio_pci also waits for running callbacks. */
	virtio_reset_device(vdev);

	spin_lock_irq(&vb->lock);
	while ((r = virtqueue_detach_unused_buf(vb->vq))) {
		list_add_tail(&r->node, &gone);
		vb->inflight--;
	}
	spin_unlock_irq(&vb->lock);

	list_for_each_entry_safe(r, tmp, &gone, node) {
		list_del_init(&r->node);
		r->status = -ENODEV;
		complete(&r->done);
		vbackup_req_put(r);
		n++;
	}
	if (n)
		dev_info(&vdev->dev, "removed with %u requests in flight\n", n);

	vdev->config->del_vqs(vdev);
	vb->vq = NULL;
	kref_put(&vb->ref, vbackup_dev_release);
}

static const struct virtio_device_id id_table[] = {
	{ VB_VIRTIO_ID, VIRTIO_DEV_ANY_ID },
	{ 0 },
};
MODULE_DEVICE_TABLE(virtio, id_table);

static struct virtio_driver virtio_backup_driver = {
	.driver.name = KBUILD_MODNAME,
	.driver.owner = THIS_MODULE,
	.id_table = id_table,
	.probe = vbackup_probe,
	.remove = vbackup_remove,
};

module_virtio_driver(virtio_backup_driver);

MODULE_DESCRIPTION("Guest driver for the vbackup virtio device");
MODULE_AUTHOR("The vbackup authors");
MODULE_LICENSE("GPL");
