/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Retention: which snapshots a prune keeps, in one group or grouped here.
 * Pure logic (no repository, no clock): the caller passes the creation
 * times, the planner answers with the rules that keep each one; prune on
 * either repository format plans with it.  docs/repository.md.
 *
 * Calendar rules count in the local time zone of the process (TZ), like
 * restic, borg and Proxmox: "daily" means the user's calendar days, 23 or
 * 25 hours long on DST changes.  An hour repeated when clocks go back is
 * two hours (the bucket includes tm_isdst).
 */
#ifndef VB_RETENTION_H
#define VB_RETENTION_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

enum vb_keep_rule {
    VB_KEEP_LAST = 0,
    VB_KEEP_HOURLY,
    VB_KEEP_DAILY,
    VB_KEEP_WEEKLY,          /* ISO 8601 weeks (Monday first; week-based year) */
    VB_KEEP_MONTHLY,
    VB_KEEP_YEARLY,
    VB_KEEP_N_RULES
};

/* keep[rule]: 0 = rule off, N > 0 = the newest snapshot of each of the last N
 * buckets that hold snapshots (for LAST: the N newest), -1 = every bucket. */
struct vb_retention {
    int keep[VB_KEEP_N_RULES];
};

const char *vb_keep_rule_name(enum vb_keep_rule r);
/* true when at least one rule is on */
int vb_retention_any(const struct vb_retention *p);

/* The bucket key of time t (ns since the epoch, may be negative) for a
 * calendar rule, as text ("2028-02-29", "2028-W09", "2028-03-26T02+1"...).
 * Returns -EINVAL for LAST or an unknown rule, -ERANGE if the time has no
 * local calendar representation. */
int vb_retention_bucket(enum vb_keep_rule r, int64_t t_ns, char *out, size_t len);

/* times_ns: the snapshots of one group, newest first (ties: any order).
 * keeps[i] gets a bit (1u << rule) for each rule that keeps snapshot i;
 * 0 means prune removes it.  A time without a calendar representation is
 * kept by every calendar rule that is on (never removed by doubt). */
void vb_retention_plan(const struct vb_retention *p, const int64_t *times_ns, size_t n,
                       unsigned *keeps);

/* A snapshot as prune sees it, whatever the repository's format. */
struct vb_retention_snap {
    const char *id;
    const char *vm;
    const char *type;        /* "disk", "files" */
    const char *group;       /* a disk, or a set of backed-up paths ("" when none) */
    int64_t created_ns;
};

/*
 * prune's plan for snapshots of many groups (in any order): grouped by
 * (vm, type, group), each group planned newest first by vb_retention_plan
 * (equal times: the one later in snaps counts as newer).  Returns a JSON
 * array (a new reference) of {id, keep: bool, reasons: [rule names]}, the
 * groups in byte order of (vm, type, group), each newest first.  keeps (may
 * be NULL; n entries) gets the rule bits of snaps[i], in snaps' order.
 */
json_object *vb_retention_plan_groups(const struct vb_retention *p,
                                      const struct vb_retention_snap *snaps, size_t n,
                                      unsigned *keeps);

#endif
