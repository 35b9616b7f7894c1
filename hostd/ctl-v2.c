/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackupctl's commands on version 2 repositories (ctl-v2.h).  Everything
 * here goes through the v2 door (repo2.h); copy is in ctl-copy.c.
 */
#include "ctl-v2.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sink2.h"
#include "vbackup/protolib.h"

#include "escape.h"
#include "repo2.h"

char *vbctl_esc(const char *s)
{
    return vb_text_plain(s, strlen(s)) ? g_strdup(s) : vb_escape(s, strlen(s));
}

int vbctl_fail(const char *what, const vb_error *e)
{
    g_autofree char *msg = vbctl_esc(vb_strerror(e));

    fprintf(stderr, "%s: %s: %s\n", prog, what, msg);
    return 1;
}

bool vbctl_is_v2(const char *location)
{
    return vb2_is_repository(location);
}

/* The group as the guest named it (a files snapshot vbackupd made keeps
 * the bytes, sink2.h), escaped once when shown; the manifest's text when
 * those are not UTF-8 (JSON holds text) or missing. */
static char *group_of(const struct vb_manifest *m)
{
    char *g = m->type == VB_MF_FILES ? vb2_files_group_raw(m) : g_strdup(m->group ? m->group : "");

    if (!vb_utf8_valid(g, strlen(g))) {
        g_free(g);
        g = g_strdup(m->group ? m->group : "");
    }
    return g;
}

/* The secret of the options (NULL: ask $VBACKUP_PASSWORD_FILE or a terminal). */
static int read_secret(const char *password_file, const char *key_file, const char *prompt,
                       struct vb_secret *s, vb_error *e)
{
    if (key_file)
        return vb_rawkey_read(key_file, s, e);
    return vb_password_read(password_file, prompt, s, e);
}

int vbctl_v2_open(const char *location, const char *password_file, const char *key_file,
                  bool readonly, struct vb2_repo **r, vb_error *e)
{
    struct vb2_open_opts o = { .readonly = readonly, .store_opts = vbctl_store_opts };

    return vb2_repo_open_asking(location, &o, password_file, key_file, r, e);
}

/* ---- init ------------------------------------------------------------------------------ */

int vbctl_v2_init(const char *location, int argc, char **argv)
{
    static const struct option lo[] = {
        { "format", 1, 0, 'F' }, { "encryption", 1, 0, 'E' }, { "password-file", 1, 0, 'P' },
        { "key-file", 1, 0, 'K' }, { "level", 1, 0, 'l' }, { 0 } };
    struct vb2_create_opts o = { .encryption = VB_AEAD_AES256GCM,
                                 .store_opts = vbctl_store_opts };
    const char *password_file = NULL, *key_file = NULL;
    struct vb_secret s = { 0 };
    vb_error e = { 0 };
    int c, ret;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'F':                               /* 2 (1 went to version 1's init) */
            if (strcmp(optarg, "2")) {
                fprintf(stderr, "%s: init: --format must be 1 or 2, not '%s'\n", prog, optarg);
                return 2;
            }
            break;
        case 'E':
            if (vb_aead_parse(optarg, &o.encryption, &e)) {
                fprintf(stderr, "%s: init: --encryption: %s\n", prog, vb_strerror(&e));
                return 2;
            }
            break;
        case 'P': password_file = optarg; break;
        case 'K': key_file = optarg; break;
        case 'l': o.zstd_level = atoi(optarg); break;
        default: return 2;
        }
    }
    if (optind != argc || o.zstd_level < 0 || o.zstd_level > 19) {
        fprintf(stderr, "usage: %s --repo LOCATION init [--format 2] [--encryption "
                "aes-256-gcm|chacha20-poly1305|none] [--password-file FILE | --key-file FILE] "
                "[--level N]\n       %s --repo DIR init --format 1 [--level N]\n", prog, prog);
        return 2;
    }
    if (o.encryption != VB_AEAD_NONE) {
        if (read_secret(password_file, key_file, "new repository password: ", &s, &e)) {
            if (!key_file) {
                g_autofree char *msg = vbctl_esc(vb_strerror(&e));
                fprintf(stderr, "%s: init: %s, or choose --encryption none\n", prog, msg);
                return 1;
            }
            return vbctl_fail("init", &e);
        }
        o.secret = &s;
    }
    ret = vb2_repo_create(location, &o, &e);
    vb_secret_wipe(&s);
    if (ret)
        return vbctl_fail("init", &e);
    if (!quiet)
        printf("created repository %s (format 2, encryption %s)\n", location,
               vb_aead_name(o.encryption));
    return 0;
}

/* ---- snapshots ----------------------------------------------------------------------- */

int vbctl_v2_snapshots(const char *location, int argc, char **argv)
{
    static const struct option lo[] = {
        { "vm", 1, 0, 'v' }, { "json", 0, 0, 'j' }, { "password-file", 1, 0, 'P' },
        { "key-file", 1, 0, 'K' }, { 0 } };
    const char *vm = NULL, *password_file = NULL, *key_file = NULL;
    GPtrArray *list = NULL, *problems = NULL;
    struct vb2_repo *r;
    json_object *a;
    bool json = false;
    vb_error e = { 0 };
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'v': vm = optarg; break;
        case 'j': json = true; break;
        case 'P': password_file = optarg; break;
        case 'K': key_file = optarg; break;
        default: return 2;
        }
    }
    if (vbctl_v2_open(location, password_file, key_file, true, &r, &e))
        return vbctl_fail("snapshots", &e);
    if (vb2_snap_list(r, vm, &list, &problems, &e)) {
        vb2_repo_close(r);
        return vbctl_fail("snapshots", &e);
    }
    a = json_object_new_array();
    if (!json)
        printf("%-40s %-6s %-24s %12s\n", "SNAPSHOT", "TYPE", "SOURCE", "SIZE");
    for (guint i = 0; i < list->len; i++) {
        struct vb_manifest *m = list->pdata[i];
        json_object *o = json_object_new_object();
        uint64_t size = m->type == VB_MF_DISK ? m->disk.size : m->files.bytes;
        g_autofree char *id = vbctl_esc(m->id);
        g_autofree char *graw = group_of(m);
        g_autofree char *group = vbctl_esc(*graw ? graw : "-");
        char sz[32];

        json_object_object_add(o, "id", json_object_new_string(m->id));
        json_object_object_add(o, "vm", json_object_new_string(m->vm));
        json_object_object_add(o, "type", json_object_new_string(m->type == VB_MF_DISK
                                                                 ? "disk" : "files"));
        json_object_object_add(o, "group", json_object_new_string(graw));
        if (m->parent)
            json_object_object_add(o, "parent", json_object_new_string(m->parent));
        json_object_object_add(o, "mode", json_object_new_string(m->mode ? m->mode : ""));
        json_object_object_add(o, "created_ns", json_object_new_int64(m->created_ns));
        json_object_object_add(o, "size", json_object_new_int64((int64_t)size));
        if (m->dedup_group)
            json_object_object_add(o, "dedup_group", json_object_new_string(m->dedup_group));
        json_object_array_add(a, o);
        if (!json)
            printf("%-40s %-6s %-24s %12s\n", id, m->type == VB_MF_DISK ? "disk" : "files",
                   group, vb_fmt_bytes(size, sz, sizeof(sz)));
    }
    if (json)
        puts(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PRETTY |
                                               JSON_C_TO_STRING_NOSLASHESCAPE));
    for (guint i = 0; i < problems->len; i++) {
        g_autofree char *p = vbctl_esc(problems->pdata[i]);
        fprintf(stderr, "%s: snapshots: unreadable: %s\n", prog, p);
    }
    c = problems->len ? 1 : 0;
    json_object_put(a);
    g_ptr_array_free(list, TRUE);
    g_ptr_array_free(problems, TRUE);
    vb2_repo_close(r);
    return c;
}

/* ---- show ------------------------------------------------------------------------------ */

/* A snapshot's manifest as JSON, with the members of its notes (a disk
 * backup's "tracking") beside the others, as version 1's index.json has
 * them: one shape for `show --json` whatever the format. */
int vbctl_v2_show(const char *location, int argc, char **argv)
{
    static const struct option lo[] = {
        { "json", 0, 0, 'j' }, { "password-file", 1, 0, 'P' }, { "key-file", 1, 0, 'K' },
        { 0 } };
    const char *password_file = NULL, *key_file = NULL;
    struct vb_manifest *m = NULL;
    struct vb2_repo *r;
    json_object *j, *notes;
    vb_error e = { 0 };
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'j': break;
        case 'P': password_file = optarg; break;
        case 'K': key_file = optarg; break;
        default: return 2;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "usage: %s show SNAPSHOT [--json]\n", prog);
        return 2;
    }
    if (vbctl_v2_open(location, password_file, key_file, true, &r, &e))
        return vbctl_fail("show", &e);
    if (vb2_snap_load(r, argv[optind], &m, &e) || !(j = vb_manifest_to_json(m, &e))) {
        vb_manifest_free(m);
        vb2_repo_close(r);
        return vbctl_fail("show", &e);
    }
    if (json_object_object_get_ex(j, "notes", &notes) &&
        json_object_is_type(notes, json_type_object)) {
        json_object_object_foreach(notes, k, v)
            if (!json_object_object_get_ex(j, k, NULL))
                json_object_object_add(j, k, json_object_get(v));
    }
    puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY |
                                           JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(j);
    vb_manifest_free(m);
    vb2_repo_close(r);
    return 0;
}

/* ---- verify ----------------------------------------------------------------------------- */

int vbctl_v2_verify(const char *location, int argc, char **argv)
{
    static const struct option lo[] = {
        { "read-data", 0, 0, 'd' }, { "password-file", 1, 0, 'P' }, { "key-file", 1, 0, 'K' },
        { 0 } };
    const char *password_file = NULL, *key_file = NULL;
    struct vb2_verify_opts o = { 0 };
    struct vb2_verify_report rep = { 0 };
    struct vb2_repo *r;
    vb_error e = { 0 };
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'd': o.read_data = true; break;
        case 'P': password_file = optarg; break;
        case 'K': key_file = optarg; break;
        default: return 2;
        }
    }
    if (optind < argc)
        o.snapshot = argv[optind];
    if (vbctl_v2_open(location, password_file, key_file, true, &r, &e))
        return vbctl_fail("verify", &e);
    if (vb2_verify(r, &o, &rep, &e)) {
        vb2_repo_close(r);
        return vbctl_fail("verify", &e);
    }
    for (guint i = 0; rep.problems && i < rep.problems->len; i++) {
        g_autofree char *p = vbctl_esc(rep.problems->pdata[i]);
        printf("damaged: %s\n", p);
    }
    c = rep.problems && rep.problems->len ? 1 : 0;
    if (!quiet || c)
        printf("verify: %u snapshots, %llu packs, %llu blobs%s: %s\n", rep.snapshots,
               (unsigned long long)rep.packs, (unsigned long long)rep.blobs,
               o.read_data ? " read" : "", c ? "DAMAGED" : "ok");
    vb2_verify_report_free(&rep);
    vb2_repo_close(r);
    return c;
}

/* ---- key list | add | remove ID | passwd ------------------------------------------------ */

/* The new secret of key add / passwd: a file (never the one that opens). */
static int read_new_secret(const char *password_file, const char *key_file,
                           struct vb_secret *s, vb_error *e)
{
    if (key_file)
        return vb_rawkey_read(key_file, s, e);
    /* $VBACKUP_PASSWORD_FILE names the password that opens: never the new one */
    if (!password_file && (getenv("VBACKUP_PASSWORD_FILE") || !isatty(STDIN_FILENO)))
        return vb_seterr(e, -ENOKEY, "give the new password with --new-password-file FILE "
                         "(or the new key with --new-key-file FILE)");
    return vb_password_read(password_file, "new password: ", s, e);
}

int vbctl_v2_key(const char *location, int argc, char **argv)
{
    static const struct option lo[] = {
        { "password-file", 1, 0, 'P' }, { "key-file", 1, 0, 'K' },
        { "new-password-file", 1, 0, 'N' }, { "new-key-file", 1, 0, 'M' }, { "json", 0, 0, 'j' },
        { 0 } };
    const char *password_file = NULL, *key_file = NULL, *new_pw = NULL, *new_key = NULL, *verb;
    struct vb2_repo *r = NULL;
    struct vb_secret s = { 0 };
    bool json = false;
    vb_error e = { 0 };
    int c, ret = 1;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'P': password_file = optarg; break;
        case 'K': key_file = optarg; break;
        case 'N': new_pw = optarg; break;
        case 'M': new_key = optarg; break;
        case 'j': json = true; break;
        default: return 2;
        }
    }
    verb = optind < argc ? argv[optind] : "";
    if (!(!strcmp(verb, "list") && optind + 1 == argc) &&
        !(!strcmp(verb, "add") && optind + 1 == argc) &&
        !(!strcmp(verb, "passwd") && optind + 1 == argc) &&
        !(!strcmp(verb, "remove") && optind + 2 == argc)) {
        fprintf(stderr, "usage: %s --repo LOCATION key list [--json] | add | remove ID | passwd "
                "[--password-file FILE | --key-file FILE] [--new-password-file FILE | "
                "--new-key-file FILE]\n", prog);
        return 2;
    }
    if (vbctl_v2_open(location, password_file, key_file, !strcmp(verb, "list"), &r, &e)) {
        ret = vbctl_fail("key", &e);
        goto out;
    }
    if (!strcmp(verb, "list")) {
        GArray *keys;
        json_object *a = json_object_new_array();
        if (vb2_key_list(r, &keys, &e)) {
            json_object_put(a);
            ret = vbctl_fail("key list", &e);
            goto out;
        }
        if (!json)
            printf("  %-32s %-7s %-20s %s\n", "ID", "KDF", "CREATED", "HOST / USER");
        for (guint i = 0; i < keys->len; i++) {
            const struct vb2_key *k = &g_array_index(keys, struct vb2_key, i);
            json_object *o = json_object_new_object();
            json_object_object_add(o, "id", json_object_new_string(k->id));
            json_object_object_add(o, "current", json_object_new_boolean(k->current));
            json_object_object_add(o, "damaged", json_object_new_boolean(k->damaged));
            json_object_object_add(o, "kdf", json_object_new_string(k->info.kdf));
            json_object_object_add(o, "created", json_object_new_string(k->info.created));
            json_object_object_add(o, "host", json_object_new_string(k->info.host));
            json_object_object_add(o, "user", json_object_new_string(k->info.user));
            json_object_array_add(a, o);
            if (!json)
                printf("%c %-32s %-7s %-20s %s / %s\n", k->current ? '*' : ' ', k->id,
                       k->damaged ? "damaged" : k->info.kdf, k->info.created, k->info.host,
                       k->info.user);
        }
        if (json)
            puts(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PRETTY));
        json_object_put(a);
        g_array_free(keys, TRUE);
        ret = 0;
    } else if (!strcmp(verb, "remove")) {
        if (vb2_key_remove(r, argv[optind + 1], &e)) {
            ret = vbctl_fail("key remove", &e);
            goto out;
        }
        if (!quiet)
            printf("removed key %s\n", argv[optind + 1]);
        ret = 0;
    } else {
        char id[33];
        GArray *keys = NULL;
        char old[33] = "";
        if (read_new_secret(new_pw, new_key, &s, &e) || vb2_key_add(r, &s, NULL, id, &e)) {
            ret = vbctl_fail(!strcmp(verb, "add") ? "key add" : "key passwd", &e);
            goto out;
        }
        if (!strcmp(verb, "passwd")) {
            /* the new key file is durable (synced) before the old one goes */
            if (vb2_key_list(r, &keys, &e)) {
                ret = vbctl_fail("key passwd", &e);
                goto out;
            }
            for (guint i = 0; i < keys->len; i++)
                if (g_array_index(keys, struct vb2_key, i).current)
                    snprintf(old, sizeof(old), "%s", g_array_index(keys, struct vb2_key, i).id);
            g_array_free(keys, TRUE);
            /* the open used the old one: a second handle opened with the new key removes it */
            vb2_repo_close(r);
            r = NULL;
            {
                struct vb2_open_opts o = { .secret = &s, .store_opts = vbctl_store_opts };
                if (vb2_repo_open(location, &o, &r, &e) || vb2_key_remove(r, old, &e)) {
                    ret = vbctl_fail("key passwd (the new key file was added)", &e);
                    goto out;
                }
            }
            if (!quiet)
                printf("key %s replaced by key %s\n", old, id);
        } else if (!quiet) {
            printf("added key %s\n", id);
        }
        ret = 0;
    }
out:
    vb_secret_wipe(&s);
    if (r)
        vb2_repo_close(r);
    return ret;
}
