/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The jobs' journal (<state_dir>/jobs/<id>.json): each backup job has a
 * record from its BEGIN until it is forgotten (an hour after it ended, or
 * beyond 32 per VM), written whenever what a restart must know changes —
 * begun, its write session (named, see session.h), running, a snapshot view
 * to commit back, how it ended.  After a crash or a restart each job reports
 * what really happened, to its VM (STATUS) and to the admin:
 *
 *   ended before          as it ended (done with its snapshot, failed, cancelled)
 *   committed, not ended  done, with the snapshot that holds its session's name
 *   anything else         failed, saying at which step vbackupd stopped;
 *                         nothing of it was committed
 *
 * Nothing else is needed for the repository: an uncommitted snapshot never
 * became visible.
 */
#include "vbackupd.h"

#include "repo2.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define JOURNAL_DIR "jobs"
#define OLD_DIR     "running"          /* before every job had a record */

bool vbd_job_hurried(const struct vbd_job *j)
{
    /* a guest holding a freeze while the host reads the live image */
    return j->view == VB_VIEW_FROZEN && !j->unfrozen;
}

static void path_of(struct vbd *d, uint64_t id, char *buf, size_t len)
{
    snprintf(buf, len, "%s/" JOURNAL_DIR "/%llu.json", d->cfg->state_dir,
             (unsigned long long)id);
}

/* The record; view: the snapshot view to commit back (NULL: the job's own). */
static void write_record(struct vbd_job *j, json_object *view)
{
    char dir[PATH_MAX], path[PATH_MAX];
    json_object *o;
    const char *s;

    if (j->is_restore || !j->target)
        return;                 /* restores change nothing that a restart must know */
    snprintf(dir, sizeof(dir), "%s/" JOURNAL_DIR, j->d->cfg->state_dir);
    if (vb_mkdir_p(dir, 0700))
        return;                 /* best effort: the backup itself does not depend on it */
    o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_int64((int64_t)j->id));
    json_object_object_add(o, "vm", json_object_new_string(j->vm->name));
    json_object_object_add(o, "kind", json_object_new_int(j->kind));
    json_object_object_add(o, "mode", json_object_new_int(j->mode));
    json_object_object_add(o, "target", json_object_new_string(j->target->name));
    json_object_object_add(o, "state", json_object_new_int(j->state));
    json_object_object_add(o, "created_ns", json_object_new_int64(j->created_ns));
    json_object_object_add(o, "started_ns", json_object_new_int64(j->started_ns));
    if (j->finished_ns)
        json_object_object_add(o, "finished_ns", json_object_new_int64(j->finished_ns));
    if (j->reason[0])
        json_object_object_add(o, "reason", json_object_new_string(j->reason));
    if (j->snapshot)
        json_object_object_add(o, "snapshot", json_object_new_string(j->snapshot));
    if (j->ws)
        json_object_object_add(o, "session", json_object_new_string(vb_sink_token(j->ws)));
    if (view)
        json_object_object_add(o, "view", json_object_get(view));
    else if (j->view_op)
        json_object_object_add(o, "view", vbd_view_json(j));
    s = json_object_to_json_string(o);
    path_of(j->d, j->id, path, sizeof(path));
    vb_write_file_atomic(path, s, strlen(s), false, NULL);
    json_object_put(o);
}

void vbd_journal_running(struct vbd_job *j)
{
    write_record(j, NULL);
}

void vbd_journal_forget(struct vbd_job *j)
{
    /* the view is committed back: the record keeps only how the job ended */
    write_record(j, NULL);
}

void vbd_journal_drop(struct vbd_job *j)
{
    char path[PATH_MAX];

    path_of(j->d, j->id, path, sizeof(path));
    unlink(path);
}

/* The snapshot that session committed in the target, or NULL (*err: it
 * could not be looked for). */
static char *committed_by(struct vbd_target *t, const char *vm, const char *session,
                          vb_error *err)
{
    struct vb_repo *r;
    GPtrArray *snaps;
    char *id = NULL;

    if (!t) {
        vb_seterr(err, -ENOENT, "its target is no longer configured");
        return NULL;
    }
    if (vbd_target_open(t, err))
        return NULL;
    if (g_atomic_pointer_get(&t->repo2)) {
        /* format 2: the token is in the manifest's notes (sink2.c) */
        if (vb2_snap_list(t->repo2, vm, &snaps, NULL, err))
            return NULL;
        for (guint i = snaps->len; i-- > 0 && !id;) {
            struct vb_manifest *m = snaps->pdata[i];
            const char *tok = m->notes ? vb_json_str(m->notes, "session") : NULL;
            if (tok && !strcmp(tok, session))
                id = g_strdup(m->id);
        }
        g_ptr_array_free(snaps, TRUE);
        return id;
    }
    if (!(r = vbd_target_repo(t, err)))
        return NULL;
    if (vb_snap_list(r, vm, &snaps, err))
        return NULL;
    for (guint i = snaps->len; i-- > 0 && !id;) {
        struct vb_snapshot *s = snaps->pdata[i];
        const char *tok = vb_json_str(s->json, "session");
        if (tok && !strcmp(tok, session))
            id = g_strdup(s->id);
    }
    g_ptr_array_free(snaps, TRUE);
    return id;
}

static const char *stopped_while(int state)
{
    switch (state) {
    case VB_JOB_COLLECTING: return "the job was collecting data from the guest";
    case VB_JOB_MAPPING: return "the host was mapping the job's files";
    case VB_JOB_QUEUED:
    case VB_JOB_DEFERRED: return "the job was waiting to run";
    default: return "the job was running";
    }
}

/* false: the record names a VM that is gone */
static bool recover_one(struct vbd *d, json_object *o)
{
    struct vbd_vm *vm = vb_json_str(o, "vm") ? g_hash_table_lookup(d->vms, vb_json_str(o, "vm"))
                                             : NULL;
    json_object *view = json_object_object_get(o, "view");
    const char *session = vb_json_str(o, "session");
    int state = (int)vb_json_int(o, "state", VB_JOB_RUNNING);
    unsigned views_before = d->views_active;
    bool unchecked = false;
    struct vbd_job *j;

    if (!vm)
        return false;           /* the VM is gone from the configuration */
    j = vbd_job_new(d, vm);
    /* keep the id the guest knows */
    g_hash_table_steal(d->jobs, &j->id);
    j->id = (uint64_t)vb_json_int(o, "id", 0);
    g_hash_table_insert(d->jobs, &j->id, j);
    /* new ids come from the clock: after a restart within the same second
     * (or a clock stepped back) they would meet this one, and a new job
     * would replace it in d->jobs */
    if (j->id >= d->next_job)
        d->next_job = j->id + 1;
    j->kind = (uint8_t)vb_json_int(o, "kind", VB_KIND_FILES);
    j->mode = (uint8_t)vb_json_int(o, "mode", VB_MODE_FULL);
    j->target = g_hash_table_lookup(d->targets, vb_json_str(o, "target") ?
                                    vb_json_str(o, "target") : "");
    j->created_ns = vb_json_int(o, "created_ns", j->created_ns);
    j->started_ns = vb_json_int(o, "started_ns", 0);
    j->finished_ns = vb_json_int(o, "finished_ns", 0);
    if (vb_json_str(o, "reason"))
        snprintf(j->reason, sizeof(j->reason), "%s", vb_json_str(o, "reason"));
    if (vb_json_str(o, "snapshot"))
        j->snapshot = g_strdup(vb_json_str(o, "snapshot"));
    if (state == VB_JOB_DONE || state == VB_JOB_FAILED || state == VB_JOB_CANCELLED) {
        j->state = state;               /* it ended: as it ended */
    } else {
        vb_error e = { 0 };
        char *snap = session ? committed_by(j->target, vm->name, session, &e) : NULL;

        j->finished_ns = vb_wall_ns();
        if (snap) {
            j->state = VB_JOB_DONE;
            j->snapshot = snap;
            j->reason[0] = 0;
            vbd_log("job %llu (%s): committed %s before vbackupd stopped: done",
                    (unsigned long long)j->id, vm->name, snap);
        } else {
            j->state = VB_JOB_FAILED;
            unchecked = e.code != 0;    /* the record stays: the next start checks again */
            if (e.code) {
                /* the guest reads the reason: the target's name, the cause to the log */
                vbd_log("job %llu (%s): whether it committed cannot be checked now: %s",
                        (unsigned long long)j->id, vm->name, vb_strerror(&e));
                if (j->target)
                    snprintf(j->reason, sizeof(j->reason), "vbackupd stopped while %s; "
                             "whether it committed cannot be checked now (target '%s' could "
                             "not be read on the host; vbackupd checks again at its next "
                             "start)", stopped_while(state), j->target->name);
                else
                    snprintf(j->reason, sizeof(j->reason), "vbackupd stopped while %s; "
                             "whether it committed cannot be checked now (its target is no "
                             "longer configured)", stopped_while(state));
            } else
                snprintf(j->reason, sizeof(j->reason), "vbackupd stopped while %s; nothing "
                         "of it was committed", stopped_while(state));
            vbd_log("job %llu (%s): failed: %s", (unsigned long long)j->id, vm->name,
                    j->reason);
        }
    }
    if (view)
        vbd_view_recover(j, view);      /* commits the snapshot it left back */
    /* the record now says how it ended; the view stays in it until it is
     * committed back (vbd_journal_forget) */
    if (!unchecked)
        write_record(j, d->views_active != views_before || j->view_op ? view : NULL);
    return true;
}

static void recover_dir(struct vbd *d, const char *name)
{
    GPtrArray *files = g_ptr_array_new_with_free_func(g_free);
    char dir[PATH_MAX];
    DIR *dh;
    struct dirent *de;

    snprintf(dir, sizeof(dir), "%s/%s", d->cfg->state_dir, name);
    if (!(dh = opendir(dir))) {
        g_ptr_array_free(files, TRUE);
        return;
    }
    /* names first: recovering rewrites records in this folder */
    while ((de = readdir(dh)))
        if (de->d_name[0] != '.')
            g_ptr_array_add(files, g_strdup_printf("%s/%s", dir, de->d_name));
    closedir(dh);
    for (guint i = 0; i < files->len; i++) {
        char *data = NULL;
        json_object *o = NULL;
        bool keep = false;

        if (vb_read_file(files->pdata[i], &data, NULL, 65536, NULL) == 0 &&
            (o = json_tokener_parse(data)))
            keep = recover_one(d, o);
        json_object_put(o);
        free(data);
        /* an old-style record is rewritten where records are now */
        if (!keep || strcmp(name, JOURNAL_DIR))
            unlink(files->pdata[i]);
    }
    g_ptr_array_free(files, TRUE);
}

void vbd_journal_recover(struct vbd *d)
{
    recover_dir(d, JOURNAL_DIR);
    recover_dir(d, OLD_DIR);
}
