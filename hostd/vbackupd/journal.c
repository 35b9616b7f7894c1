/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A journal of running jobs (<state_dir>/running/<id>.json), so that a job
 * that was running when vbackupd died is reported as failed after a
 * restart instead of vanishing: its VM sees it in STATUS, the admin in
 * `vbackupctl jobs`.  Nothing else is needed for the repository: an
 * uncommitted snapshot never became visible.
 */
#include "vbackupd.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool vbd_job_hurried(const struct vbd_job *j)
{
    /* a guest holding a freeze while the host reads the live image */
    return j->view == VB_VIEW_FROZEN && !j->unfrozen;
}

static void path_of(struct vbd *d, uint64_t id, char *buf, size_t len)
{
    snprintf(buf, len, "%s/running/%llu.json", d->cfg->state_dir, (unsigned long long)id);
}

void vbd_journal_running(struct vbd_job *j)
{
    char dir[PATH_MAX], path[PATH_MAX];
    json_object *o = json_object_new_object();
    const char *s;

    snprintf(dir, sizeof(dir), "%s/running", j->d->cfg->state_dir);
    if (vb_mkdir_p(dir, 0700)) {
        json_object_put(o);
        return;         /* best effort: the backup itself does not depend on it */
    }
    json_object_object_add(o, "id", json_object_new_int64((int64_t)j->id));
    json_object_object_add(o, "vm", json_object_new_string(j->vm->name));
    json_object_object_add(o, "kind", json_object_new_int(j->kind));
    json_object_object_add(o, "mode", json_object_new_int(j->mode));
    json_object_object_add(o, "target", json_object_new_string(j->target->name));
    json_object_object_add(o, "started_ns", json_object_new_int64(j->started_ns));
    if (j->view_op)
        json_object_object_add(o, "view", vbd_view_json(j));
    s = json_object_to_json_string(o);
    path_of(j->d, j->id, path, sizeof(path));
    vb_write_file_atomic(path, s, strlen(s), false, NULL);
    json_object_put(o);
}

void vbd_journal_forget(struct vbd_job *j)
{
    char path[PATH_MAX];

    path_of(j->d, j->id, path, sizeof(path));
    unlink(path);
}

void vbd_journal_recover(struct vbd *d)
{
    char dir[PATH_MAX];
    DIR *dh;
    struct dirent *de;

    snprintf(dir, sizeof(dir), "%s/running", d->cfg->state_dir);
    if (!(dh = opendir(dir)))
        return;
    while ((de = readdir(dh))) {
        char path[PATH_MAX], *data = NULL;
        json_object *o;
        struct vbd_vm *vm;
        struct vbd_job *j;
        bool keep = false;

        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (vb_read_file(path, &data, NULL, 65536, NULL) == 0 && (o = json_tokener_parse(data))) {
            vm = vb_json_str(o, "vm") ? g_hash_table_lookup(d->vms, vb_json_str(o, "vm")) : NULL;
            if (vm) {
                j = vbd_job_new(d, vm);
                /* keep the id the guest knows */
                g_hash_table_steal(d->jobs, &j->id);
                j->id = (uint64_t)vb_json_int(o, "id", 0);
                g_hash_table_insert(d->jobs, &j->id, j);
                /* new ids come from the clock: after a restart within the
                 * same second (or a clock stepped back) they would meet this
                 * one, and a new job would replace it in d->jobs */
                if (j->id >= d->next_job)
                    d->next_job = j->id + 1;
                j->kind = (uint8_t)vb_json_int(o, "kind", VB_KIND_FILES);
                j->mode = (uint8_t)vb_json_int(o, "mode", VB_MODE_FULL);
                j->target = g_hash_table_lookup(d->targets, vb_json_str(o, "target") ?
                                                vb_json_str(o, "target") : "");
                j->started_ns = vb_json_int(o, "started_ns", 0);
                j->state = VB_JOB_FAILED;
                j->finished_ns = vb_wall_ns();
                snprintf(j->reason, sizeof(j->reason), "vbackupd stopped while the job was "
                         "running; nothing of it was committed");
                vbd_log("job %llu (%s): failed: %s", (unsigned long long)j->id, vm->name,
                        j->reason);
                if (json_object_object_get(o, "view")) {
                    vbd_view_recover(j, json_object_object_get(o, "view"));
                    keep = j->view_op != NULL || j->d->views_active;   /* forgotten once committed */
                }
            }
            json_object_put(o);
        }
        free(data);
        if (!keep)
            unlink(path);
    }
    closedir(dh);
}
