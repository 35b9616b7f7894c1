/* SPDX-License-Identifier: GPL-2.0-or-later */
/* libext2fs reads a file system from an image chain (ext2io.h). */
#include "ext2io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imageread.h"

struct chan {
    struct vb_image *img;
    uint64_t offset;
};

/* ext2fs_open2 names the channel; the image it reads is handed over here
 * (the mapper opens its file systems one after the other, on one thread). */
static struct chan pending;
static vb_error last;

static errcode_t vi_open(const char *name, int flags, io_channel *channel);
static errcode_t vi_close(io_channel channel);
static errcode_t vi_set_blksize(io_channel channel, int blksize);
static errcode_t vi_read_blk(io_channel channel, unsigned long block, int count, void *data);
static errcode_t vi_read_blk64(io_channel channel, unsigned long long block, int count,
                               void *data);
static errcode_t vi_write_blk(io_channel channel, unsigned long block, int count,
                              const void *data);
static errcode_t vi_write_blk64(io_channel channel, unsigned long long block, int count,
                                const void *data);
static errcode_t vi_write_byte(io_channel channel, unsigned long offset, int count,
                               const void *data);
static errcode_t vi_flush(io_channel channel);
static errcode_t vi_set_option(io_channel channel, const char *option, const char *arg);

static struct struct_io_manager vi_manager = {
    .magic = EXT2_ET_MAGIC_IO_MANAGER,
    .name = "vbackup image chain",
    .open = vi_open,
    .close = vi_close,
    .set_blksize = vi_set_blksize,
    .read_blk = vi_read_blk,
    .write_blk = vi_write_blk,
    .flush = vi_flush,
    .write_byte = vi_write_byte,
    .set_option = vi_set_option,
    .read_blk64 = vi_read_blk64,
    .write_blk64 = vi_write_blk64,
};

const char *vb_ext2io_last_error(void)
{
    return last.msg;
}

errcode_t vb_ext2io_open(struct vb_image *img, uint64_t offset, int flags, ext2_filsys *fs)
{
    errcode_t err;

    initialize_ext2_error_table();     /* error_message() knows libext2fs's codes */
    if (flags & EXT2_FLAG_RW)
        return EXT2_ET_OP_NOT_SUPPORTED;
    pending.img = img;
    pending.offset = offset;
    err = ext2fs_open2("image", NULL, flags, 0, 0, &vi_manager, fs);
    pending.img = NULL;
    return err;
}

static errcode_t vi_open(const char *name, int flags, io_channel *channel)
{
    io_channel io = NULL;
    struct chan *c = NULL;
    errcode_t err;

    if (!pending.img || (flags & IO_FLAG_RW))
        return EXT2_ET_BAD_DEVICE_NAME;
    if ((err = ext2fs_get_memzero(sizeof(*io), &io)) ||
        (err = ext2fs_get_memzero(sizeof(*c), &c)) ||
        (err = ext2fs_get_mem(strlen(name) + 1, &io->name))) {
        ext2fs_free_mem(&c);
        ext2fs_free_mem(&io);
        return err;
    }
    strcpy(io->name, name);
    *c = pending;
    io->magic = EXT2_ET_MAGIC_IO_CHANNEL;
    io->manager = &vi_manager;
    io->block_size = 1024;
    io->refcount = 1;
    io->private_data = c;
    *channel = io;
    return 0;
}

static errcode_t vi_close(io_channel channel)
{
    if (--channel->refcount > 0)
        return 0;
    ext2fs_free_mem(&channel->private_data);
    ext2fs_free_mem(&channel->name);
    ext2fs_free_mem(&channel);
    return 0;
}

static errcode_t vi_set_blksize(io_channel channel, int blksize)
{
    if (blksize < 512 || blksize > 65536 || (blksize & (blksize - 1)))
        return EXT2_ET_INVALID_ARGUMENT;
    channel->block_size = blksize;
    return 0;
}

static errcode_t vi_read_blk64(io_channel channel, unsigned long long block, int count,
                               void *data)
{
    struct chan *c = channel->private_data;
    uint64_t size, off;
    int ret;

    size = count < 0 ? (uint64_t)-(int64_t)count : (uint64_t)count * (uint64_t)channel->block_size;
    if (block > UINT64_MAX / (uint64_t)channel->block_size)
        return EXT2_ET_SHORT_READ;
    off = block * (uint64_t)channel->block_size;
    if (off > UINT64_MAX - c->offset || off + c->offset > c->img->size ||
        size > c->img->size - (off + c->offset)) {
        vb_seterr(&last, -EIO, "a read of %llu bytes at %#llx of the disk lies past its end "
                  "(%llu bytes)", (unsigned long long)size,
                  (unsigned long long)(off + c->offset), (unsigned long long)c->img->size);
        return EXT2_ET_SHORT_READ;
    }
    ret = vb_image_pread(c->img, data, size, off + c->offset, &last);
    return ret ? EXT2_ET_SHORT_READ : 0;
}

static errcode_t vi_read_blk(io_channel channel, unsigned long block, int count, void *data)
{
    return vi_read_blk64(channel, block, count, data);
}

static errcode_t vi_write_blk64(io_channel channel, unsigned long long block, int count,
                                const void *data)
{
    (void)channel;
    (void)block;
    (void)count;
    (void)data;
    return EXT2_ET_OP_NOT_SUPPORTED;
}

static errcode_t vi_write_blk(io_channel channel, unsigned long block, int count,
                              const void *data)
{
    return vi_write_blk64(channel, block, count, data);
}

static errcode_t vi_write_byte(io_channel channel, unsigned long offset, int count,
                               const void *data)
{
    (void)channel;
    (void)offset;
    (void)count;
    (void)data;
    return EXT2_ET_OP_NOT_SUPPORTED;
}

static errcode_t vi_flush(io_channel channel)
{
    (void)channel;
    return 0;
}

static errcode_t vi_set_option(io_channel channel, const char *option, const char *arg)
{
    (void)channel;
    (void)option;
    (void)arg;
    return EXT2_ET_INVALID_ARGUMENT;
}
