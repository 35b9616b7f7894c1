/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Optimizer policy plugins (include/vbackup/policy.h): the loader, the
 * chain's runner with its plan check, and batches (arena memory, plan notes,
 * helpers to build a plan).  docs/policies.md describes the rules.
 */
#ifndef VB_POLICYLOAD_H
#define VB_POLICYLOAD_H

#include <glib.h>
#include <stdint.h>

#include "util.h"
#include "vbackup/policy.h"

/* The file of a policy named NAME: <plugin_dir>/NAME.so */
#define VBD_POLICY_SUFFIX ".so"

struct vbd_policy;   /* one configured instance in the chain */

/*
 * Load and configure one policy.  name_or_path: a name ("merge" →
 * <plugin_dir>/merge.so; plugin_dir must then be given) or a path containing
 * '/'.  kv: NULL-terminated array of "key=value" strings (may be NULL).
 * Every error names the plugin file and the problem.  0 or -errno.
 */
int vbd_policy_load(const char *name_or_path, const char *plugin_dir, char *const *kv,
                    struct vbd_policy **out, vb_error *e);
const char *vbd_policy_name(const struct vbd_policy *p);
const char *vbd_policy_description(const struct vbd_policy *p);   /* "" when none */
const char *vbd_policy_path(const struct vbd_policy *p);
/*
 * Run the policy's optimize() on b, then check the plan it leaves: every
 * read targets a file of the batch, has a length > 0 and does not overflow;
 * every consumer lies inside its read and belongs to a job of the batch; the
 * jobs and files arrays are untouched; and every consumer that went in comes
 * out (same job, token, file bytes), so no wanted byte is lost.  A broken
 * plan fails with a message naming the policy (-EPROTO).  When optimize()
 * fails or leaves a broken plan, the batch is put back as it was before the
 * call (reads, jobs, rate limit, notes), so the caller may skip the policy
 * and go on.  b must come from vbd_batch_new().
 */
int vbd_policy_run(struct vbd_policy *p, struct vbp_batch *b, vb_error *e);
void vbd_policy_free(struct vbd_policy *p);   /* destroy() + dlclose */

/* Batches: arena memory and plan notes, used by the daemon and by tests. */
struct vbd_note {
    char *policy;
    uint64_t job;                /* 0: the whole batch */
    char *text;
};

/* alloc and note wired, n_* = 0, max_read_bytes = 4 MiB, daemon = NULL. */
struct vbp_batch *vbd_batch_new(uint64_t id);
void vbd_batch_free(struct vbp_batch *b);
GPtrArray *vbd_batch_notes(struct vbp_batch *b);   /* of struct vbd_note *, in order */

/* Building a plan.  Adds the file unless (dev, ino) is there; its index. */
uint32_t vbd_batch_add_file(struct vbp_batch *b, const char *path, uint64_t dev,
                            uint64_t ino, uint64_t size);
/* The job pointer stays valid until the next vbd_batch_add_job. */
struct vbp_job *vbd_batch_add_job(struct vbp_batch *b, uint64_t id, const char *vm,
                                  uint32_t kind, uint32_t mode);
/* One read with one consumer covering it (offset 0); adds len to the job's bytes. */
void vbd_batch_add_read(struct vbp_batch *b, uint32_t file, uint64_t off, uint64_t len,
                        uint32_t flags, uint64_t job, uint64_t token);
/*
 * After the chain: drop consumers of jobs deferred past load.now_ns
 * (defer_until_ns > now), drop reads left without consumers and trim the
 * others to the bytes their remaining consumers want.  Bytes no longer read.
 */
uint64_t vbd_batch_strip_deferred(struct vbp_batch *b);
/* Sum of read lengths / of consumer lengths (what is read / what is wanted). */
uint64_t vbd_batch_read_bytes(const struct vbp_batch *b);
uint64_t vbd_batch_wanted_bytes(const struct vbp_batch *b);

#endif
