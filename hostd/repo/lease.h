/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Writer leases, the two-phase deletion of packs and the maintenance lock
 * (docs/repository-v2.md, "Concurrency"), on top of the store.
 *
 * Clocks.  Whether a lease or the maintenance lock has expired is decided
 * by comparing two readings of the store's own clock: the store's
 * modification time of the lease (struct vb_obj_info.mtime_ns) and a "now"
 * that is the modification time of an object just written (the lock, a
 * condemned list, vb_lease_store_now()).  The host clocks of writers and
 * maintenance never meet.  A "now" read earlier than the true now only makes
 * leases look younger, which is safe.  A holder decides whether its own
 * lease may have expired from this host's monotonic clock, measured since
 * the start of its last successful refresh, with a margin for the time the
 * commit takes and for the two clocks' rates (ppm) — the only assumption
 * about clocks.
 *
 * Every name here is made by names.c; every object read is checked
 * (size limit, JSON types, ids) and a damaged one is -EBADMSG naming it.
 */
#ifndef VB_REPO_LEASE_H
#define VB_REPO_LEASE_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "names.h"
#include "store.h"
#include "util.h"

#define VB_LEASE_ID_LEN       16
#define VB_LEASE_EXPIRY_NS    (15 * 60 * INT64_C(1000000000))   /* default expiry */
#define VB_LEASE_REFRESH_NS   (60 * INT64_C(1000000000))        /* refresh this often */
#define VB_LEASE_MARGIN_NS    (3 * 60 * INT64_C(1000000000))    /* stop this long before expiry */

/* ---- leases --------------------------------------------------------------- */

/* A lease this process holds. */
struct vb_lease {
    char name[VB_OBJ_NAME_MAX];     /* leases/<32 hex> */
    int64_t stamp_ns;               /* store clock: its mtime after the last create/refresh */
    int64_t mono_ns;                /* this host's monotonic clock when that put began */
    char kind[32];
    int64_t created_ns;             /* this host's wall clock at create (in the lease) */
};

/* What a lease (or the maintenance lock) says about its holder; informative. */
struct vb_lease_owner {
    char host[256];                 /* non-printable bytes replaced by '?' */
    int64_t pid;
    char kind[32];                  /* "backup", "copy", "gc", "clock", ... */
    int64_t created_ns;             /* the holder's wall clock: for people only */
};

/* A lease seen in the store. */
struct vb_lease_info {
    char name[VB_OBJ_NAME_MAX];
    uint8_t id[VB_LEASE_ID_LEN];
    int64_t mtime_ns;               /* store clock */
};

/* CLOCK_MONOTONIC in nanoseconds (what vb_lease.mono_ns holds). */
int64_t vb_lease_mono_now(void);

/* kind: [a-z0-9-]{1,31}.  Puts leases/<random id> with {host, pid, kind,
 * created} and reads back its store mtime. */
int vb_lease_create(struct vb_store *s, const char *kind, struct vb_lease *l, vb_error *e);
/*
 * Re-put the lease (its store mtime moves on).  -ESTALE, without writing,
 * when the lease may already have expired (vb_lease_safe() is false now) or
 * is gone: the holder must then stop and not commit.
 */
int vb_lease_refresh(struct vb_store *s, struct vb_lease *l, int64_t expiry_ns,
                     int64_t margin_ns, vb_error *e);
int vb_lease_remove(struct vb_store *s, const struct vb_lease *l, vb_error *e);
/* May the holder still rely on its lease at monotonic time mono_now_ns?
 * True while less than expiry - margin has passed since its last refresh
 * began. */
bool vb_lease_safe(const struct vb_lease *l, int64_t mono_now_ns, int64_t expiry_ns,
                   int64_t margin_ns);

/* Every lease in the store: *out is a GArray of struct vb_lease_info.
 * Foreign names under leases/ are ignored. */
int vb_lease_list(struct vb_store *s, GArray **out, vb_error *e);
int vb_lease_read(struct vb_store *s, const char *name, struct vb_lease_owner *o, vb_error *e);
/* Live: its mtime is less than expiry_ns before store_now_ns (both the
 * store's clock); one from the "future" of now is live. */
bool vb_lease_live(int64_t mtime_ns, int64_t store_now_ns, int64_t expiry_ns);
/* A reading of the store's clock: the mtime of a short-lived lease of kind
 * "clock" (put, stat, removed). */
int vb_lease_store_now(struct vb_store *s, int64_t *now_ns, vb_error *e);

/* ---- two-phase deletion ----------------------------------------------------- */

struct vb_pack_id { uint8_t b[VB_OBJ_ID_LEN]; };
struct vb_lease_id { uint8_t b[VB_LEASE_ID_LEN]; };

/* A condemned list, gc/condemned-<id>: {packs: [hex], leases_seen: [hex] or
 * null while gc writes it, created: RFC 3339}. */
struct vb_condemned {
    char name[VB_OBJ_NAME_MAX];
    int64_t mtime_ns;               /* store clock: when it was (last) written */
    int64_t created_ns;             /* gc host's wall clock, for people only */
    GArray *packs;                  /* struct vb_pack_id */
    GArray *leases_seen;            /* struct vb_lease_id; NULL: not yet known */
};

/*
 * Phase 1: put gc/condemned-<random id> naming packs (leases_seen null),
 * then list the leases, then put it again naming them.  The order matters:
 * a writer whose lease the listing missed began after the list was
 * visible, so it sees the list and avoids the packs.  *out (free with
 * vb_condemned_free) has mtime_ns of the final put: a "now" on the store's
 * clock.  On failure after the first put the list is removed (best effort;
 * one left behind only keeps its packs a while longer).
 */
int vb_condemn(struct vb_store *s, const struct vb_pack_id *packs, size_t n,
               struct vb_condemned **out, vb_error *e);
/* Every condemned list (a GPtrArray of struct vb_condemned *, freeing them).
 * -EAGAIN when a listed one vanished before it could be read (gc deleted
 * its packs meanwhile): the caller starts over, reloading what it knows of
 * packs. */
int vb_condemned_read_all(struct vb_store *s, GPtrArray **out, vb_error *e);
int vb_condemned_remove(struct vb_store *s, const struct vb_condemned *c, vb_error *e);
void vb_condemned_free(struct vb_condemned *c);
/*
 * Phase 2's rule: the packs of c may be deleted when c's leases_seen is
 * known and every lease in it is absent from leases (a listing taken after
 * c was written) or not live at store_now_ns.  *blocker (may be NULL) is set
 * to the first live one, or NULL.  The caller also re-marks its packs from
 * the manifests that exist now; this says only that no writer it could not
 * see is left.
 */
bool vb_condemned_may_delete(const struct vb_condemned *c, const struct vb_lease_info *leases,
                             size_t n, int64_t store_now_ns, int64_t expiry_ns,
                             const struct vb_lease_info **blocker);

/* ---- the maintenance lock: locks/maintenance ------------------------------- */

struct vb_maint_lock {
    char token[33];                 /* random; in the lock, proves it is still ours */
    int64_t stamp_ns;               /* store clock at the last take/refresh */
    int64_t mono_ns;                /* monotonic clock when that put began */
    int64_t expiry_ns;
    char kind[32];
    int64_t created_ns;
};

struct vb_maint_holder {
    struct vb_lease_owner owner;
    char token[33];
    int64_t mtime_ns;               /* store clock */
    int64_t expiry_ns;              /* as the holder declared it */
    int64_t age_ns;                 /* store now - mtime_ns */
    bool stale;                     /* age_ns >= expiry_ns */
};

/*
 * Take the lock (put NOREPLACE of {host, pid, kind, created, token,
 * expiry_s}); l->stamp_ns is a "now" on the store's clock.  When it is
 * held: -EBUSY (live) or -ESTALE (its holder stopped refreshing it for
 * longer than its expiry), with *holder filled (may be NULL) and a message
 * naming the holder.  A stale lock is never broken here: only
 * vb_maint_lock_break does that, when asked to.
 */
int vb_maint_lock_take(struct vb_store *s, const char *kind, int64_t expiry_ns,
                       struct vb_maint_lock *l, struct vb_maint_holder *holder, vb_error *e);
/* Re-put it; -ESTALE without writing when it may have expired (less than
 * margin_ns left by this host's monotonic clock) or is no longer ours. */
int vb_maint_lock_refresh(struct vb_store *s, struct vb_maint_lock *l, int64_t margin_ns,
                          vb_error *e);
/* Remove it if it is still ours; -ESTALE if it was broken. */
int vb_maint_lock_release(struct vb_store *s, const struct vb_maint_lock *l, vb_error *e);
/* Break a stale lock whose token is token (as reported by take): -EBUSY if
 * it is live, -ESTALE if it is another lock by now, -ENOENT if none. */
int vb_maint_lock_break(struct vb_store *s, const char *token, vb_error *e);

#endif
