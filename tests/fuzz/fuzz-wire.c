/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer harness for vbackupd's request parsers (hostd/vbackupd/wire.c)
 * and the protocol library's record decoder (hostd/lib/protolib.c):
 * everything a guest can send is parsed there.  The first byte picks the
 * parser; the rest is the payload.  Built with clang by run-fuzz.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char msg[VBD_MSG];
    uint8_t sel;

    if (size < 1)
        return 0;
    sel = data[0];
    data++;
    size--;
    /* a copy with exactly the payload's size, so ASan sees any overread */
    uint8_t *p = malloc(size ? size : 1);
    memcpy(p, data, size);

    switch (sel % 13) {
    case 0: {
        struct vbd_begin b;
        if (vbd_parse_begin(p, size, &b, msg) == VB_S_OK)
            vbd_begin_clear(&b);
        break;
    }
    case 1: {
        static const uint64_t sizes[2] = { 1ull << 30, 4096 };
        static const char *const names[2] = { "vda", "vdb" };
        struct vbd_files_ctx ctx = { .n_disks = 2, .disk_sizes = sizes, .disk_names = names,
                                     .files_left = 100000, .prev_path = "a/b",
                                     .prev_path_len = 3, .prev_can_continue = sel & 0x80 };
        struct vbd_files f;
        if (vbd_parse_files(p, size, &ctx, &f, msg) == VB_S_OK)
            vbd_files_clear(&f);
        break;
    }
    case 2: {
        struct vbd_data d;
        vbd_parse_data(p, size, &d, msg);
        break;
    }
    case 3: {
        struct vbd_list l;
        vbd_parse_list(p, size, &l, msg);
        break;
    }
    case 4: {
        struct vbd_restore_begin rb;
        if (vbd_parse_restore_begin(p, size, &rb, msg) == VB_S_OK)
            vbd_restore_begin_clear(&rb);
        break;
    }
    case 5: {
        uint64_t job, start;
        vbd_parse_restore_list(p, size, &job, &start, msg);
        break;
    }
    case 6: {
        struct vb_restore_read rr;
        vbd_parse_restore_read(p, size, &rr, msg);
        break;
    }
    case 7: {
        struct vb_hello h;
        vbd_parse_hello(p, size, &h, msg);
        break;
    }
    case 8:
        if (size >= sizeof(struct vb_hdr)) {
            struct vb_hdr h;
            memcpy(&h, p, sizeof(h));
            vbd_check_header(&h, msg);
        }
        break;
    case 9: {
        char why[96];
        vbd_check_path((const char *)p, size, sel & 0x80, why, sizeof(why));
        vbd_check_name((const char *)p, size);
        break;
    }
    case 10: {
        uint64_t job;
        vbd_parse_job_ref(p, size, &job, msg);
        vbd_peek_job(p, size, &job, msg);
        break;
    }
    case 11: {
        struct vbd_problems pr;
        if (vbd_parse_problems(p, size, &pr, msg) == VB_S_OK)
            vbd_problems_clear(&pr);
        break;
    }
    case 12: {
        /* a RESTORE_LIST record as the guest tool checks it */
        struct vb_rec r;
        size_t used;
        char why[160];
        if (vb_rec_decode(p, size, (sel & 0x80) ? VB_REC_RESTORE : VB_REC_BACKUP, &r, &used,
                          why, sizeof(why)) == VB_S_OK) {
            struct vb_xattr_view x;
            size_t off = 0;
            while (vb_xattr_next(r.xattrs, r.xattr_len, &off, &x))
                ;
        }
        break;
    }
    }
    free(p);
    return 0;
}
