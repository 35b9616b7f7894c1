/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackupd.conf (GKeyFile).  See docs/vbackupd.md and the example in
 * hostd/vbackupd.conf.example:
 *
 *   [daemon]      runtime_dir, admin_socket, plugin_dir, psi_dir, policies,
 *                 batch_seconds, batch_max, frozen_wait, workers, mapper,
 *                 mapper_user, mapper_memory, mapper_seconds, max_mappers, ...
 *   [target NAME] repository = DIR or LOCATION (format 2: password_file = FILE |
 *                 password_credential = NAME when encrypted), copy_to = LOCATION (format 2),
 *                 copy_password_file = FILE | copy_credential = NAME
 *   [policy NAME] key = value ...      (passed to the plugin)
 *   [vm NAME]     socket = PATH, qmp = PATH, cbt = true|false,
 *                 disk.SERIAL = IMAGE,format=FMT[,backing_format=FMT],
 *                 pidfile = PATH, peer_label = LABEL, max_job_bytes = SIZE,
 *                 max_total_bytes = SIZE, max_bytes_per_day = SIZE,
 *                 max_jobs_per_day = N, dedup_group = NAME|@vm
 *   [libvirt]     uri = URI, pid_dir = DIR, cbt = true|false, and the
 *                 quotas of [vm NAME] for every domain found
 */
#include "vbackupd.h"
#include "wire.h"

#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef VBD_PLUGIN_DIR
#define VBD_PLUGIN_DIR "/usr/local/lib/vbackup/policies"
#endif
#ifndef VBD_MAPPER
#define VBD_MAPPER "/usr/local/libexec/vbackup/vbackup-mapper"
#endif

static const char *daemon_keys[] = {
    "runtime_dir", "state_dir", "socket_group", "admin_socket", "plugin_dir", "psi_dir", "policies", "batch_seconds",
    "batch_max", "frozen_wait", "workers", "max_jobs_per_vm", "max_connections_per_vm",
    "max_requests_in_flight", "max_files_per_job", "idle_timeout", "cache", "vm_memory",
    "max_extents_per_job", "output_buffer", "reclaim", "reclaim_interval", "mapper",
    "mapper_user", "mapper_memory", "mapper_seconds", "max_mappers", "dedup_group", NULL,
};

static void free_disk(gpointer p)
{
    struct vbd_disk_cfg *d = p;

    g_free(d->serial);
    g_free(d->image);
    g_free(d->format);
    g_free(d->backing_format);
    g_free(d->target);
    g_free(d);
}

void vbd_vm_cfg_free(gpointer p);
void vbd_vm_cfg_free(gpointer p)
{
    struct vbd_vm_cfg *v = p;

    g_free(v->name);
    g_free(v->socket);
    g_free(v->qmp);
    g_free(v->libvirt);
    g_free(v->pidfile);
    g_free(v->peer_label);
    g_free(v->dedup_group);
    g_ptr_array_free(v->disks, TRUE);
    g_free(v);
}

static void free_vm(gpointer p)
{
    vbd_vm_cfg_free(p);
}

static void free_target(gpointer p)
{
    struct vbd_target_cfg *t = p;

    g_free(t->name);
    g_free(t->repository);
    g_free(t->copy_to);
    g_free(t->copy_password_file);
    g_free(t->copy_credential);
    g_free(t->password_file);
    g_free(t->credential);
    if (t->store_opts)
        g_ptr_array_free(t->store_opts, TRUE);
    g_free(t);
}

static void free_policy(gpointer p)
{
    struct vbd_policy_cfg *c = p;

    g_free(c->name);
    g_ptr_array_free(c->kv, TRUE);
    g_free(c);
}

void vbd_config_free(struct vbd_config *c)
{
    if (!c)
        return;
    g_free(c->path);
    g_free(c->runtime_dir);
    g_free(c->admin_socket);
    g_free(c->plugin_dir);
    g_free(c->psi_dir);
    g_free(c->state_dir);
    g_free(c->socket_group);
    g_free(c->libvirt_uri);
    g_free(c->libvirt_pid_dir);
    g_free(c->mapper);
    g_free(c->mapper_user);
    g_free(c->dedup_group);
    g_ptr_array_free(c->targets, TRUE);
    g_ptr_array_free(c->policies, TRUE);
    g_ptr_array_free(c->vms, TRUE);
    g_free(c);
}

static bool is_key(const char *k, const char **list)
{
    for (; *list; list++)
        if (!strcmp(k, *list))
            return true;
    return false;
}

static int get_double(GKeyFile *kf, const char *g, const char *k, double dflt, double min,
                      double max, double *out, vb_error *e)
{
    GError *ge = NULL;
    double v;

    if (!g_key_file_has_key(kf, g, k, NULL)) {
        *out = dflt;
        return 0;
    }
    v = g_key_file_get_double(kf, g, k, &ge);
    if (ge || v < min || v > max) {
        int r = vb_seterr(e, -EINVAL, "[%s] %s: %s (expected a number from %g to %g)", g, k,
                          ge ? ge->message : "out of range", min, max);
        g_clear_error(&ge);
        return r;
    }
    *out = v;
    return 0;
}

static int get_size(GKeyFile *kf, const char *g, const char *k, uint64_t dflt, uint64_t *out,
                    vb_error *e)
{
    g_autofree char *s = g_key_file_get_string(kf, g, k, NULL);

    if (!s) {
        *out = dflt;
        return 0;
    }
    g_strstrip(s);
    if (vb_parse_size(s, out))
        return vb_seterr(e, -EINVAL, "[%s] %s: '%s' is not a size (e.g. 512M)", g, k, s);
    return 0;
}

static char *get_str(GKeyFile *kf, const char *g, const char *k, const char *dflt)
{
    char *s = g_key_file_get_string(kf, g, k, NULL);

    if (s)
        return g_strstrip(s);
    return dflt ? g_strdup(dflt) : NULL;
}

/* One quota key of [vm NAME] or [libvirt]; false when KEY is none.  A size
 * or a count; 0 (the default) is no limit. */
static bool quota_key(GKeyFile *kf, const char *g, const char *key, struct vbd_quota *q,
                      int *ret, vb_error *e)
{
    static const struct {
        const char *key;
        size_t off;
        bool count;
    } keys[] = {
        { "max_job_bytes", offsetof(struct vbd_quota, job_bytes), false },
        { "max_total_bytes", offsetof(struct vbd_quota, total_bytes), false },
        { "max_bytes_per_day", offsetof(struct vbd_quota, day_bytes), false },
        { "max_jobs_per_day", offsetof(struct vbd_quota, day_jobs), true },
    };

    for (size_t i = 0; i < VB_ARRAY_SIZE(keys); i++) {
        g_autofree char *v = NULL;
        uint64_t *dst = (uint64_t *)((char *)q + keys[i].off);
        char *end;

        if (strcmp(key, keys[i].key))
            continue;
        v = get_str(kf, g, key, "0");
        if (keys[i].count) {
            errno = 0;
            *dst = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-')
                *ret = vb_seterr(e, -EINVAL, "[%s] %s: '%s' is not a number of jobs", g, key,
                                 v);
        } else if (vb_parse_size(v, dst)) {
            *ret = vb_seterr(e, -EINVAL, "[%s] %s: '%s' is not a size (e.g. 20G)", g, key, v);
        }
        return true;
    }
    return false;
}

/*
 * IMAGE,format=raw|qcow2[,backing_format=raw|qcow2].  The format is
 * required: it is never guessed from the image, whose bytes a guest writes
 * (a raw disk holding a qcow2 header would name any host file as its
 * backing file).  backing_format is the format of backing files whose
 * overlay's header names none (images made by an old qemu-img).
 */
static int parse_disk(const char *val, struct vbd_disk_cfg *d, const char *group,
                      const char *key, vb_error *e)
{
    g_auto(GStrv) parts = g_strsplit(val, ",", -1);

    if (!parts[0] || !*g_strstrip(parts[0]))
        return vb_seterr(e, -EINVAL, "[%s] %s: the image is missing (IMAGE,format=raw|qcow2)",
                         group, key);
    d->image = g_strdup(parts[0]);
    for (char **o = parts + 1; *o; o++) {
        char **slot = NULL;
        const char *opt = g_strstrip(*o), *eq = strchr(opt, '=');
        if (eq && eq - opt == 6 && !strncmp(opt, "format", 6))
            slot = &d->format;
        else if (eq && eq - opt == 14 && !strncmp(opt, "backing_format", 14))
            slot = &d->backing_format;
        if (!slot)
            return vb_seterr(e, -EINVAL, "[%s] %s: unknown option '%s' (format=raw|qcow2, "
                             "backing_format=raw|qcow2)", group, key, opt);
        if (*slot)
            return vb_seterr(e, -EINVAL, "[%s] %s: option '%.*s' given twice", group, key,
                             (int)(eq - opt), opt);
        if (!vb_fmt_valid(eq + 1))
            return vb_seterr(e, -EINVAL, "[%s] %s: %.*s must be raw or qcow2, not '%s'", group,
                             key, (int)(eq - opt), opt, eq + 1);
        *slot = g_strdup(eq + 1);
    }
    if (!d->format)
        return vb_seterr(e, -EINVAL, "[%s] %s: the format is required (%s = IMAGE,format=raw "
                         "or IMAGE,format=qcow2, the format QEMU is given): vbackupd never "
                         "guesses a disk's format from the image, whose content the guest "
                         "writes", group, key, key);
    return 0;
}

/* A dedup group (docs/threat-model.md, "Deduplication scope"): a name, or
 * "@vm" (each VM a group of its own). */
static int parse_dedup_group(const char *section, const char *val, char **out, vb_error *e)
{
    struct vb_idspace sp;

    if (!*val)
        return vb_seterr(e, -EINVAL, "[%s] dedup_group: empty (a name, or @vm)", section);
    if (strcmp(val, "@vm") && vb_idspace_init(&sp, val, e)) {
        vb_prefixerr(e, "[%s] dedup_group (a name, or @vm)", section);
        return -EINVAL;
    }
    g_free(*out);
    *out = g_strdup(val);
    return 0;
}

/* A [target] key of its object storage (an s3:// repository): vb_store_open_opts's. */
static bool is_store_key(const char *k)
{
    static const char *const keys[] = { "endpoint", "region", "addressing", "credential",
                                        "credentials_file", "profile", "ca_file", "connections",
                                        "attempts", "timeout", "object_lock", NULL };

    for (const char *const *p = keys; *p; p++)
        if (!strcmp(k, *p))
            return true;
    return false;
}

/* "true"/"false" (and yes/no, 1/0): changed-block tracking (docs/cbt.md) */
static int parse_bool(const char *group, const char *key, const char *val, bool *out,
                      vb_error *e)
{
    if (!g_ascii_strcasecmp(val, "true") || !g_ascii_strcasecmp(val, "yes") || !strcmp(val, "1"))
        *out = true;
    else if (!g_ascii_strcasecmp(val, "false") || !g_ascii_strcasecmp(val, "no") ||
             !strcmp(val, "0"))
        *out = false;
    else
        return vb_seterr(e, -EINVAL, "[%s] %s: '%s' is neither true nor false", group, key, val);
    return 0;
}

static int parse_vm(GKeyFile *kf, const char *group, const char *name, struct vbd_config *c,
                    vb_error *e)
{
    struct vbd_vm_cfg *v = g_new0(struct vbd_vm_cfg, 1);
    g_auto(GStrv) keys = g_key_file_get_keys(kf, group, NULL, NULL);

    v->name = g_strdup(name);
    v->disks = g_ptr_array_new_with_free_func(free_disk);
    g_ptr_array_add(c->vms, v);
    if (!vb_valid_name(name))
        return vb_seterr(e, -EINVAL, "[%s]: '%s' is not a valid VM name (letters, digits, . _ -)",
                         group, name);
    for (char **k = keys; k && *k; k++) {
        g_autofree char *val = get_str(kf, group, *k, NULL);
        int ret = 0;
        if (!strcmp(*k, "socket")) {
            v->socket = g_strdup(val);
        } else if (!strcmp(*k, "qmp")) {
            v->qmp = g_strdup(val);
        } else if (!strcmp(*k, "cbt")) {
            if (parse_bool(group, *k, val, &v->cbt, e))
                return -EINVAL;
        } else if (!strcmp(*k, "pidfile")) {
            if (val[0] != '/')
                return vb_seterr(e, -EINVAL, "[%s] pidfile: '%s' is not an absolute path",
                                 group, val);
            v->pidfile = g_strdup(val);
        } else if (!strcmp(*k, "peer_label")) {
            if (!val[0])
                return vb_seterr(e, -EINVAL, "[%s] peer_label: empty", group);
            v->peer_label = g_strdup(val);
        } else if (!strcmp(*k, "dedup_group")) {
            if ((ret = parse_dedup_group(group, val, &v->dedup_group, e)))
                return ret;
        } else if (quota_key(kf, group, *k, &v->quota, &ret, e)) {
            if (ret)
                return ret;
        } else if (!strncmp(*k, "disk.", 5)) {
            struct vbd_disk_cfg *d = g_new0(struct vbd_disk_cfg, 1);
            g_ptr_array_add(v->disks, d);
            d->serial = g_strdup(*k + 5);
            if (!vbd_check_name(d->serial, strlen(d->serial)) || strlen(d->serial) > VB_MAX_SERIAL)
                return vb_seterr(e, -EINVAL, "[%s] %s: '%s' is not a valid disk serial (1..20 "
                                 "printable characters)", group, *k, d->serial);
            if (parse_disk(val, d, group, *k, e))
                return -EINVAL;
        } else {
            return vb_seterr(e, -EINVAL, "[%s]: unknown key '%s' (socket, qmp, cbt, "
                             "disk.SERIAL, pidfile, peer_label, dedup_group, max_job_bytes, "
                             "max_total_bytes, max_bytes_per_day, max_jobs_per_day)", group, *k);
        }
    }
    if (v->cbt && !v->qmp)
        return vb_seterr(e, -EINVAL, "[%s] cbt: changed-block tracking needs a point-in-time "
                         "view: give the VM its QMP socket (qmp = PATH)", group);
    if (!v->disks->len)
        return vb_seterr(e, -EINVAL, "[%s]: no disks (disk.SERIAL = IMAGE)", group);
    if (!v->socket)
        v->socket = g_strdup_printf("%s/%s.sock", c->runtime_dir, name);
    return 0;
}

int vbd_config_load(const char *path, struct vbd_config **out, vb_error *e)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_auto(GStrv) groups = NULL;
    g_auto(GStrv) keys = NULL;
    g_autofree char *chain = NULL;
    struct vbd_config *c = g_new0(struct vbd_config, 1);
    GError *ge = NULL;
    double v = 0;
    uint64_t u;
    int ret = 0;

    c->path = g_strdup(path);
    c->targets = g_ptr_array_new_with_free_func(free_target);
    c->policies = g_ptr_array_new_with_free_func(free_policy);
    c->vms = g_ptr_array_new_with_free_func(free_vm);
    if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &ge)) {
        ret = vb_seterr(e, -EINVAL, "%s: %s", path, ge->message);
        g_error_free(ge);
        goto out;
    }
    keys = g_key_file_get_keys(kf, "daemon", NULL, NULL);
    for (char **k = keys; k && *k; k++)
        if (!is_key(*k, daemon_keys)) {
            ret = vb_seterr(e, -EINVAL, "%s: [daemon]: unknown key '%s'", path, *k);
            goto out;
        }
    c->runtime_dir = get_str(kf, "daemon", "runtime_dir", "/run/vbackup");
    {
        g_autofree char *dflt = g_strdup_printf("%s/admin.sock", c->runtime_dir);
        c->admin_socket = get_str(kf, "daemon", "admin_socket", dflt);
    }
    c->plugin_dir = get_str(kf, "daemon", "plugin_dir", VBD_PLUGIN_DIR);
    c->psi_dir = get_str(kf, "daemon", "psi_dir", "/proc/pressure");
    c->state_dir = get_str(kf, "daemon", "state_dir", "/var/lib/vbackup");
    c->socket_group = get_str(kf, "daemon", "socket_group", NULL);
    if ((ret = get_double(kf, "daemon", "batch_seconds", 10, 0.05, 86400, &c->batch_seconds, e)) ||
        (ret = get_double(kf, "daemon", "frozen_wait", 1, 0, 60, &c->frozen_wait, e)))
        goto out;
    if ((ret = get_double(kf, "daemon", "batch_max", 10, 1, 10000, &v, e)))
        goto out;
    c->batch_max = (unsigned)v;
    if ((ret = get_double(kf, "daemon", "workers", 0, 0, 256, &v, e)))
        goto out;
    c->workers = (int)v;
    if ((ret = get_double(kf, "daemon", "max_jobs_per_vm", 4, 1, 1000, &v, e)))
        goto out;
    c->max_jobs_per_vm = (unsigned)v;
    if ((ret = get_double(kf, "daemon", "max_connections_per_vm", 4, 1, 1000, &v, e)))
        goto out;
    c->max_conns_per_vm = (unsigned)v;
    if ((ret = get_double(kf, "daemon", "max_requests_in_flight", 256, 1, 65536, &v, e)))
        goto out;
    c->max_inflight_per_conn = (unsigned)v;
    if ((ret = get_double(kf, "daemon", "max_files_per_job", 10000000, 1, 1e12, &v, e)))
        goto out;
    c->max_files_per_job = (uint64_t)v;
    if ((ret = get_double(kf, "daemon", "idle_timeout", 600, 1, 86400 * 7, &v, e)))
        goto out;
    c->idle_timeout = (unsigned)v;
    if ((ret = get_size(kf, "daemon", "cache", 256u << 20, &u, e)))
        goto out;
    c->cache_bytes = u;
    /* what one VM's requests may make the daemon hold (limits.c) */
    if ((ret = get_size(kf, "daemon", "vm_memory", 1ull << 30, &c->vm_memory, e)))
        goto out;
    if (c->vm_memory < (16u << 20)) {
        ret = vb_seterr(e, -EINVAL, "%s: [daemon] vm_memory: at least 16M", path);
        goto out;
    }
    if ((ret = get_double(kf, "daemon", "max_extents_per_job", 4194304, 8192, 1e12, &v, e)))
        goto out;
    c->max_extents_per_job = (uint64_t)v;
    if ((ret = get_size(kf, "daemon", "output_buffer", 8u << 20, &c->output_buffer, e)))
        goto out;
    if (c->output_buffer < (3u << 20)) {
        ret = vb_seterr(e, -EINVAL, "%s: [daemon] output_buffer: at least 3M (two replies "
                        "of 1 MiB and what is promised)", path);
        goto out;
    }
    {
        g_autofree char *rc = get_str(kf, "daemon", "reclaim", "yes");
        if (!strcmp(rc, "yes") || !strcmp(rc, "true"))
            c->reclaim = true;
        else if (strcmp(rc, "no") && strcmp(rc, "false")) {
            ret = vb_seterr(e, -EINVAL, "%s: [daemon] reclaim: '%s' (yes or no)", path, rc);
            goto out;
        }
    }
    if ((ret = get_double(kf, "daemon", "reclaim_interval", 600, 0, 86400 * 7,
                          &c->reclaim_interval, e)))
        goto out;
    {
        g_autofree char *dg = get_str(kf, "daemon", "dedup_group", NULL);
        c->dedup_group = g_strdup("");
        if (dg && (ret = parse_dedup_group("daemon", dg, &c->dedup_group, e))) {
            vb_prefixerr(e, "%s", path);
            goto out;
        }
    }
    /* the file system mapper (docs/freeze.md) */
    c->mapper = get_str(kf, "daemon", "mapper", VBD_MAPPER);
    c->mapper_user = get_str(kf, "daemon", "mapper_user", "nobody");
    {
        struct passwd *pw = getpwnam(c->mapper_user);
        char *end;
        unsigned long n = strtoul(c->mapper_user, &end, 10);

        if (pw) {
            c->mapper_uid = pw->pw_uid;
            c->mapper_gid = pw->pw_gid;
        } else if (*c->mapper_user && !*end && n > 0 && n < 0xffffffffu) {
            c->mapper_uid = (uid_t)n;   /* a number: uid and gid */
            c->mapper_gid = (gid_t)n;
        } else if (!strcmp(c->mapper_user, "nobody")) {
            c->mapper_uid = c->mapper_gid = 65534;
        } else {
            ret = vb_seterr(e, -EINVAL, "%s: [daemon] mapper_user: no user '%s'", path,
                            c->mapper_user);
            goto out;
        }
        if (c->mapper_uid == 0 || c->mapper_gid == 0) {
            ret = vb_seterr(e, -EINVAL, "%s: [daemon] mapper_user: the mapper reads what guests "
                            "wrote and must not run as root", path);
            goto out;
        }
    }
    if ((ret = get_size(kf, "daemon", "mapper_memory", 2ull << 30, &u, e)))
        goto out;
    if (u < (64u << 20) || u > (1ull << 46)) {
        ret = vb_seterr(e, -EINVAL, "%s: [daemon] mapper_memory: from 64M to 64T", path);
        goto out;
    }
    c->mapper_memory = u;
    if ((ret = get_double(kf, "daemon", "mapper_seconds", 3600, 1, 86400 * 7, &v, e)))
        goto out;
    c->mapper_seconds = (unsigned)v;
    if ((ret = get_double(kf, "daemon", "max_mappers", 2, 1, 256, &v, e)))
        goto out;
    c->max_mappers = (unsigned)v;

    chain = get_str(kf, "daemon", "policies", "schedule,merge");
    groups = g_key_file_get_groups(kf, NULL);
    {
        g_auto(GStrv) names = g_strsplit(chain, ",", -1);
        for (char **n = names; *n; n++) {
            struct vbd_policy_cfg *pc;
            g_autofree char *grp = NULL;
            g_auto(GStrv) pk = NULL;
            g_strstrip(*n);
            if (!**n)
                continue;
            pc = g_new0(struct vbd_policy_cfg, 1);
            pc->name = g_strdup(*n);
            pc->kv = g_ptr_array_new_with_free_func(g_free);
            g_ptr_array_add(c->policies, pc);
            grp = g_strdup_printf("policy %s", *n);
            pk = g_key_file_get_keys(kf, grp, NULL, NULL);
            for (char **k = pk; k && *k; k++) {
                g_autofree char *val = get_str(kf, grp, *k, "");
                g_ptr_array_add(pc->kv, g_strdup_printf("%s=%s", *k, val));
            }
            g_ptr_array_add(pc->kv, NULL);
        }
    }
    for (char **g = groups; *g; g++) {
        if (!strcmp(*g, "daemon") || !strncmp(*g, "policy ", 7))
            continue;
        if (!strcmp(*g, "libvirt")) {
            g_auto(GStrv) lk = g_key_file_get_keys(kf, *g, NULL, NULL);
            for (char **k = lk; k && *k; k++) {
                if (!strcmp(*k, "uri") || !strcmp(*k, "pid_dir") || !strcmp(*k, "cbt"))
                    continue;
                if (quota_key(kf, *g, *k, &c->libvirt_quota, &ret, e)) {
                    if (ret) {
                        vb_prefixerr(e, "%s", path);
                        goto out;
                    }
                    continue;
                }
                ret = vb_seterr(e, -EINVAL, "%s: [libvirt]: unknown key '%s' (uri, pid_dir, cbt, "
                                "max_job_bytes, max_total_bytes, max_bytes_per_day, "
                                "max_jobs_per_day)", path, *k);
                goto out;
            }
            c->libvirt_uri = get_str(kf, *g, "uri", "qemu:///system");
            if (g_key_file_has_key(kf, *g, "cbt", NULL)) {
                g_autofree char *val = get_str(kf, *g, "cbt", "");
                if ((ret = parse_bool("libvirt", "cbt", val, &c->libvirt_cbt, e))) {
                    vb_prefixerr(e, "%s", path);
                    goto out;
                }
            }
            /* libvirt's QEMU writes its pid to DIR/NAME.pid (qemu driver's state dir) */
            c->libvirt_pid_dir = get_str(kf, *g, "pid_dir", "/run/libvirt/qemu");
            continue;
        }
        if (!strncmp(*g, "target ", 7)) {
            struct vbd_target_cfg *t = g_new0(struct vbd_target_cfg, 1);
            g_auto(GStrv) tk = g_key_file_get_keys(kf, *g, NULL, NULL);
            g_ptr_array_add(c->targets, t);
            t->name = g_strdup(*g + 7);
            if (!vbd_check_name(t->name, strlen(t->name)) || strlen(t->name) > VB_MAX_TARGET) {
                ret = vb_seterr(e, -EINVAL, "%s: [%s]: invalid target name", path, *g);
                goto out;
            }
            for (char **k = tk; k && *k; k++)
                if (is_store_key(*k)) {
                    /* object storage: the store checks the value (store.h) */
                    g_autofree char *val = get_str(kf, *g, *k, NULL);
                    if (!t->store_opts)
                        t->store_opts = g_ptr_array_new_with_free_func(g_free);
                    g_ptr_array_add(t->store_opts, g_strdup_printf("%s=%s", *k, val ? val : ""));
                } else if (strcmp(*k, "repository") && strcmp(*k, "copy_to") &&
                           strcmp(*k, "copy_password_file") && strcmp(*k, "copy_credential") &&
                           strcmp(*k, "password_file") && strcmp(*k, "password_credential")) {
                    ret = vb_seterr(e, -EINVAL, "%s: [%s]: unknown key '%s' (repository, "
                                    "password_file, password_credential, copy_to, "
                                    "copy_password_file, copy_credential, endpoint, region, "
                                    "addressing, credential, credentials_file, profile, "
                                    "ca_file, connections, attempts, timeout, object_lock)",
                                    path, *g,
                                    *k);
                    goto out;
                }
            if (t->store_opts)
                g_ptr_array_add(t->store_opts, NULL);      /* NULL-terminated */
            t->repository = get_str(kf, *g, "repository", NULL);
            if (!t->repository) {
                ret = vb_seterr(e, -EINVAL, "%s: [%s]: repository = DIR is missing", path, *g);
                goto out;
            }
            /* offsite.c: a format 2 repository each new snapshot is copied to;
             * its secret from a file or a systemd credential, never from here */
            t->copy_to = get_str(kf, *g, "copy_to", NULL);
            t->copy_password_file = get_str(kf, *g, "copy_password_file", NULL);
            t->copy_credential = get_str(kf, *g, "copy_credential", NULL);
            if (t->copy_to && !*t->copy_to) {
                ret = vb_seterr(e, -EINVAL, "%s: [%s]: copy_to is empty", path, *g);
                goto out;
            }
            if ((t->copy_password_file || t->copy_credential) && !t->copy_to) {
                ret = vb_seterr(e, -EINVAL, "%s: [%s]: %s without copy_to", path, *g,
                                t->copy_password_file ? "copy_password_file"
                                                      : "copy_credential");
                goto out;
            }
            if (t->copy_password_file && t->copy_credential) {
                ret = vb_seterr(e, -EINVAL, "%s: [%s]: copy_password_file and copy_credential "
                                "exclude each other", path, *g);
                goto out;
            }
            /* a format 2 repository's own secret, from the same kinds of place */
            t->password_file = get_str(kf, *g, "password_file", NULL);
            t->credential = get_str(kf, *g, "password_credential", NULL);
            if (t->password_file && t->credential) {
                ret = vb_seterr(e, -EINVAL, "%s: [%s]: password_file and password_credential exclude "
                                "each other", path, *g);
                goto out;
            }
            if ((t->password_file && !*t->password_file) || (t->credential && !*t->credential)) {
                ret = vb_seterr(e, -EINVAL, "%s: [%s]: %s is empty", path, *g,
                                t->credential ? "password_credential" : "password_file");
                goto out;
            }
            if ((t->copy_password_file && !*t->copy_password_file) ||
                (t->copy_credential && !*t->copy_credential)) {
                ret = vb_seterr(e, -EINVAL, "%s: [%s]: %s is empty", path, *g,
                                t->copy_credential ? "copy_credential" : "copy_password_file");
                goto out;
            }
        } else if (!strncmp(*g, "vm ", 3)) {
            ret = parse_vm(kf, *g, *g + 3, c, e);
            if (ret) {
                vb_prefixerr(e, "%s", path);
                goto out;
            }
        } else {
            ret = vb_seterr(e, -EINVAL, "%s: unknown section [%s] (daemon, target NAME, "
                            "policy NAME, vm NAME, libvirt)", path, *g);
            goto out;
        }
    }
    if (!c->targets->len) {
        ret = vb_seterr(e, -EINVAL, "%s: no [target NAME] section", path);
        goto out;
    }
    for (guint i = 0; i < c->vms->len; i++)
        for (guint k = i + 1; k < c->vms->len; k++)
            if (!strcmp(((struct vbd_vm_cfg *)c->vms->pdata[i])->socket,
                        ((struct vbd_vm_cfg *)c->vms->pdata[k])->socket)) {
                ret = vb_seterr(e, -EINVAL, "%s: VMs %s and %s share a socket", path,
                                ((struct vbd_vm_cfg *)c->vms->pdata[i])->name,
                                ((struct vbd_vm_cfg *)c->vms->pdata[k])->name);
                goto out;
            }
out:
    if (ret) {
        vbd_config_free(c);
        return ret;
    }
    *out = c;
    return 0;
}
