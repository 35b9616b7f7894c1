/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The point-in-time view of a job's disks (view.c) and the two ways of
 * taking it: QEMU's monitor (qmp.c) and libvirt (libvirt.c).  A backend
 * only talks to QEMU; every decision and every check is view.c's.
 */
#ifndef VBD_VIEW_H
#define VBD_VIEW_H

#include "chain.h"
#include "vbackupd.h"

/* One disk of the view. */
struct vbd_view_disk {
    char *image;             /* the file the disk is configured on: active before the view,
                              * or right under its tracking overlay (docs/cbt.md) */
    char *serial;
    char *target;            /* libvirt: the disk's target ("vda") */
    char *overlay;           /* the overlay the view puts on: temporary, or (rotate) the
                              * disk's next tracking overlay */
    char *top_node;          /* QMP: the overlay's node name (ours) */
    struct vbd_chain *before;    /* QEMU's chain before the view, active first (NULL: unknown) */
    struct vbd_file_id *ids;     /* of before->files: the active layer's once it is
                                  * read-only, the others' before the snapshot (NULL: unknown) */
    bool committed;          /* QEMU runs on before again (rotated: on the new normal chain) */
    /* changed-block tracking */
    char *active;            /* the file QEMU ran the disk on: image, or its tracking overlay */
    struct vb_cbt_record *rec;   /* the disk's tracking record, when it is of image */
    struct vb_cbt_record *next;  /* rotated: the record of the new overlay (pending) */
    char *cbt_why;           /* what keeps the tracking from proving anything, if known */
    bool precreated;         /* overlay made by vbackupd (rotate) */
    bool rotated;            /* overlay kept, the previous tracking overlay folded down */
};

struct vbd_view {
    struct vbd_job *job;
    uint64_t job_id;
    char *vm;
    const struct vbd_view_backend *be;
    char *qmp_path;          /* QMP */
    char *lv_uri;            /* libvirt */
    char *lv_domain;
    GPtrArray *disks;        /* struct vbd_view_disk * */
    char *state_dir;         /* tracking records */
    bool cbt;                /* the VM's disks are tracked: IMAGE.vbackup-top names a
                              * disk's tracking overlay (docs/cbt.md) */
    bool rotate;             /* a tracked disk job: on success the new overlay stays and
                              * the previous one is folded into the image (docs/cbt.md) */
    bool keep;               /* this release is that success */
    bool held;               /* overlays may exist: the view must be released */
    bool fatal;              /* a failed snapshot fails the job (no frozen fallback) */
    bool for_commit;         /* released before the job's commit: exec.c goes on */
    int err;
    vb_error e;              /* the details, with file names (logged) */
    char summary[160];       /* what the job's reason says: no host paths */
    double seconds;
    struct vbd_req *reply;   /* SEAL, answered once the view is taken */
};

/* The backends, called on view threads; conn is what open() returned. */
struct vbd_view_backend {
    const char *name;
    void *(*open)(struct vbd_view *v, vb_error *e);
    void (*close)(void *conn);
    /* query-block's "return" array */
    int (*query_block)(void *conn, json_object **blocks, vb_error *e);
    /* an overlay on every disk, at one instant, or none */
    int (*snapshot)(void *conn, struct vbd_view *v, vb_error *e);
    /* fold exactly disk i's overlay (now: QEMU's chain, overlay first) into
     * the image under it, and come back when QEMU runs on that image */
    int (*commit)(void *conn, struct vbd_view *v, guint i, const struct vbd_chain *now,
                  vb_error *e);
    /* rotate: fold disk i's tracking overlay (now: the new overlay, the
     * tracking overlay, the image, ...) into exactly the image under it
     * while QEMU runs on the new overlay, and come back when it is done */
    int (*commit_down)(void *conn, struct vbd_view *v, guint i, const struct vbd_chain *now,
                       vb_error *e);
};

extern const struct vbd_view_backend vbd_view_qmp;
extern const struct vbd_view_backend vbd_view_libvirt;

#endif
