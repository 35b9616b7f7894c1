/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vbackupctl: the administrator's command line for vbackup repositories
 * (and, through its admin socket, for vbackupd).
 */
#include <getopt.h>
#include <libgen.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "cbt.h"
#include "diskbackup.h"
#include "diskrestore.h"
#include "disksink.h"
#include "disksink2.h"
#include "escape.h"
#include "filerestore.h"
#include "image.h"
#include "imageread.h"
#include "instant.h"
#include "maint.h"
#include "overlay.h"
#include "reader.h"
#include "repair.h"
#include "repo.h"
#include "session.h"
#include "snapshot.h"
#include "uring.h"
#include "util.h"
#include "vbackup/protolib.h"

#include "ctl-v2.h"

#define VERSION "0.1.0"

static const char *repo_path;
static const char *admin_path = "/run/vbackup/admin.sock";
bool quiet;
const char *prog = "vbackupctl";
const char *const *vbctl_store_opts;

static void usage(FILE *f)
{
    fprintf(f,
"usage: vbackupctl [--repo DIR] [--password-file FILE] [--store-option KEY=VALUE]...\n"
"                  [--quiet] COMMAND [ARGS]\n"
"\n"
"Repository commands (--repo DIR, or $VBACKUP_REPO; a format 2 repository may\n"
"also be s3://BUCKET/PREFIX; an encrypted one's password comes from --password-file\n"
"FILE, given before the command or after it, or the file $VBACKUP_PASSWORD_FILE names;\n"
"--store-option passes an s3:// store option, e.g. object_lock=DAYS[,compliance]\n"
"or credentials_file=FILE, to init and to the commands that write):\n"
"  init [--encryption aes-256-gcm|chacha20-poly1305|none] [--level N]\n"
"                                         create a repository (format 2: packs, encryption;\n"
"                                         AES-256-GCM unless told otherwise)\n"
"  init --format 1 [--level N]            create a version 1 repository (chunk files)\n"
"  copy --from LOCATION --to V2-LOCATION [--from-password-file FILE] [SNAPSHOT...]\n"
"                                         copy snapshots of any repository into a format 2 one\n"
"  key list|add|remove ID|passwd          the key files of an encrypted format 2 repository\n"
"  backup-disk --vm NAME --format raw|qcow2 [--backing-format raw|qcow2] [--name DISK]\n"
"              [--mode full|incremental|differential] [--parent ID] [--state DIR]\n"
"              [--track] [--dedup-group NAME] [--buffered] [--threads N] IMAGE\n"
"                                         back up a whole disk image; prints the snapshot id last\n"
"  restore-disk SNAPSHOT --to FILE [--format raw|qcow2] [--force] [--threads N]\n"
"              [--batched]\n"
"                                         write a disk snapshot to a file or block device\n"
"  snapshots [--vm NAME] [--json]         list snapshots (without --repo: vbackupd's, see below)\n"
"  ls SNAPSHOT [PATH...] [--json]         the files of a files snapshot (names escaped as ls -b)\n"
"  restore-files SNAPSHOT [PATH...] --to DIR [--same-owner] [--devices]\n"
"                [--xattrs=none|user|all] [--sparse|--no-sparse]\n"
"                                         restore files of a snapshot into a folder of the host;\n"
"                                         exit 3 when some entries could not be restored\n"
"  show SNAPSHOT [--json]                 one snapshot's details\n"
"  verify [SNAPSHOT] [--json] [--threads N] [--repair]\n"
"                                         re-read and re-hash every chunk\n"
"  repair [--dry-run] [--json] [--threads N]\n"
"                                         set damaged chunks aside, so that the next backup\n"
"                                         with their data stores them again\n"
"  forget SNAPSHOT... [--json]            remove snapshots on purpose\n"
"  prune --keep-last N [--keep-hourly N] [--keep-daily N] [--keep-weekly N]\n"
"        [--keep-monthly N] [--keep-yearly N] [--vm NAME] [--dry-run] [--json]\n"
"                                         remove snapshots outside the retention policy\n"
"  gc [--dry-run] [--json]                remove chunks no snapshot references\n"
"  stats [--json]                         logical and stored bytes, dedup and compression\n"
"\n"
"Instant access (docs/instant-access.md):\n"
"  export SNAPSHOT|VM [--disk SERIAL] (--unix SOCKET | --port N [--address ADDR])\n"
"         [--cache SIZE] [--readahead N] [--threads N] [--verbose]\n"
"                                         serve a disk snapshot read-only over NBD (nbdkit)\n"
"  boot-from SNAPSHOT|VM [--disk SERIAL] --overlay FILE [--unix SOCKET] [...]\n"
"                                         the export and a qcow2 overlay on it to start a VM on\n"
"  live-restore --qmp SOCKET [--device ID] [--speed BYTES]\n"
"                                         copy a running VM's disk off the export (no downtime)\n"
"  mount MOUNTPOINT [--cache SIZE] [--allow-other] [--debug]\n"
"                                         every snapshot as read-only folders and images (FUSE)\n"
"\n"
"Daemon commands (--daemon SOCKET, or $VBACKUPD_ADMIN; default /run/vbackup/admin.sock):\n"
"  vms [--json]                           VMs, their sockets, disks and connections\n"
"  jobs [--json]                          jobs of all VMs: state, progress, reason\n"
"  snapshots [--vm NAME] [--target NAME] [--json]\n"
"                                         snapshots in every target vbackupd serves\n"
"  job ID [--json]                        one job, with the plan the policies made\n"
"  daemon-stats [--json]                  bytes read per host file, recent batches\n"
"  reload                                 re-read vbackupd's configuration\n"
"\n"
"Diagnostics:\n"
"  image-map IMAGE --format F [--backing-format F] [--json]\n"
"                                         allocation map of a disk image chain\n"
"  image-dump IMAGE --format F [--backing-format F] [--output FILE] [--pread]\n"
"                                         the image's guest-visible bytes (like qemu-img convert -O raw);\n"
"                                         --pread: read as the file system mapper does\n"
"\n"
"An image's format is never guessed from its content (a VM may have written it):\n"
"--format names it; backing files have the format their overlay's header names,\n"
"else --backing-format, else they are refused.\n"
"\n"
"Progress is shown on a terminal; --quiet hides it.\n");
}

/*
 * Text for the terminal (escape.h).  guest_text: bytes a guest chose
 * (names, paths, roots, groups) — always escaped.  host_text: text that
 * vbackupd or the repository code composed around such bytes (a job's
 * reason, an error naming a folder of the repository) — as it is when it is
 * plain, escaped whole when it still holds a control character or bytes
 * that are not UTF-8.  Both return g_malloc'd strings.
 */
static char *guest_text(const char *s)
{
    return s ? vb_escape(s, strlen(s)) : g_strdup("");
}

static char *host_text(const char *s)
{
    if (!s)
        return g_strdup("");
    return vb_text_plain(s, strlen(s)) ? g_strdup(s) : vb_escape(s, strlen(s));
}

static int die_err(const char *what, const vb_error *e)
{
    g_autofree char *msg = host_text(vb_strerror(e));

    fprintf(stderr, "%s: %s%s%s\n", prog, what ? what : "", what ? ": " : "", msg);
    return 1;
}

/* --format is required and, like --backing-format, raw or qcow2; exit status 2 if not */
static int check_formats(const char *cmd, const char *format, const char *backing_format)
{
    if (!format) {
        fprintf(stderr, "%s: %s: --format raw|qcow2 is required: vbackupctl never guesses an "
                "image's format from its content, which a VM may have written (a raw disk "
                "holding a qcow2 header would make the host read the files that header "
                "names)\n", prog, cmd);
        return 2;
    }
    if (!vb_fmt_valid(format)) {
        fprintf(stderr, "%s: %s: --format must be raw or qcow2, not '%s'\n", prog, cmd, format);
        return 2;
    }
    if (backing_format && !vb_fmt_valid(backing_format)) {
        fprintf(stderr, "%s: %s: --backing-format must be raw or qcow2, not '%s'\n", prog, cmd,
                backing_format);
        return 2;
    }
    return 0;
}

static bool show_progress(void)
{
    return !quiet && isatty(STDERR_FILENO);
}

static int open_repo(enum vb_lock lock, struct vb_repo **r)
{
    vb_error e = { 0 };

    if (!repo_path) {
        fprintf(stderr, "%s: no repository: give --repo DIR or set VBACKUP_REPO\n", prog);
        return -EINVAL;
    }
    if (vb_repo_open(repo_path, lock, quiet, r, &e)) {
        die_err(NULL, &e);
        return e.code ? e.code : -EIO;
    }
    return 0;
}

/* The repository for reading snapshots, either format (snapread.h); the
 * secret of an encrypted one from the options, $VBACKUP_PASSWORD_FILE or a
 * terminal. */
static int open_reader(const char *password_file, const char *key_file, struct vb_sr **r)
{
    vb_error e = { 0 };

    if (!repo_path) {
        fprintf(stderr, "%s: no repository: give --repo DIR or set VBACKUP_REPO\n", prog);
        return -EINVAL;
    }
    if (vb_sr_open_opts(repo_path, true, password_file, key_file, vbctl_store_opts, r, &e)) {
        die_err(NULL, &e);
        return e.code ? e.code : -EIO;
    }
    return 0;
}

void vbctl_print_json(json_object *o)
{
    puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
}

int vbctl_parse_int(const char *opt, const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (!*s || *end || v < 0 || v > 1000000) {
        fprintf(stderr, "%s: %s wants a non-negative number, not '%s'\n", prog, opt, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* ---- init ----------------------------------------------------------------- */

static int cmd_init(int argc, char **argv)
{
    static const struct option lo[] = { { "level", 1, 0, 'l' }, { "format", 1, 0, 'F' },
                                        { 0 } };
    int level = 1, c;
    vb_error e = { 0 };

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c == 'F' && !strcmp(optarg, "1"))
            continue;                           /* how we got here */
        if (c != 'l' || vbctl_parse_int("--level", optarg, &level))
            return 2;
    }
    if (level < 1 || level > 19) {
        fprintf(stderr, "%s: --level must be 1..19\n", prog);
        return 2;
    }
    if (!repo_path) {
        fprintf(stderr, "%s: init needs --repo DIR\n", prog);
        return 2;
    }
    if (!strncmp(repo_path, "s3://", 5)) {
        fprintf(stderr, "%s: init: format 1 is a folder; object storage holds format 2 "
                "(init without --format 1)\n", prog);
        return 2;
    }
    if (vb_repo_init(repo_path, level, &e))
        return die_err("init", &e);
    if (!quiet)
        printf("created repository %s\n", repo_path);
    return 0;
}

/* ---- backup-disk / restore-disk --------------------------------------------- */

static int parse_mode(const char *s, int *mode)
{
    if (!strcmp(s, "full"))
        *mode = VB_MODE_FULL;
    else if (!strcmp(s, "incremental"))
        *mode = VB_MODE_INCREMENTAL;
    else if (!strcmp(s, "differential"))
        *mode = VB_MODE_DIFFERENTIAL;
    else
        return -EINVAL;
    return 0;
}

/* After a backup of exactly the chain it found before (nothing wrote it
 * meanwhile): bind the disk's tracking to the new snapshot, or, with
 * --track, start it (a new overlay over the image, for the VM to run on). */
static int track_after(const char *state, const char *repo, const char *vm, const char *disk,
                       const char *format, struct vb_cbt_record *rec,
                       const struct vb_cbt_found *f, const char *snap, bool track)
{
    struct vb_cbt_record *nr;
    vb_error e = { 0 };
    char *ovl = NULL;
    int ret;

    if (rec && !strcmp(f->files[0], rec->overlay) && f->n >= 2 &&
        !strcmp(f->files[1], rec->image)) {
        /* the disk's tracking overlay, untouched during the read: the image
         * under it and the snapshot now hold the same, as far as the overlay
         * does not say otherwise */
        nr = vb_cbt_copy(rec);
    } else if (track) {
        struct stat st;
        if (rec) {
            fprintf(stderr, "%s: --track: disk '%s' of VM %s already runs on its tracking "
                    "overlay %s; back that up\n", prog, disk, vm, rec->overlay);
            return 1;
        }
        if (stat(f->files[0], &st) < 0) {
            fprintf(stderr, "%s: stat %s: %s\n", prog, f->files[0], strerror(errno));
            return 1;
        }
        ovl = g_strdup_printf("%s.vbackup-cbt-%lld.qcow2", f->files[0],
                              (long long)(vb_wall_ns() / 1000000000));
        if (vb_overlay_create(ovl, f->size, f->files[0], format, st.st_uid, st.st_gid,
                              st.st_mode, &e)) {
            g_free(ovl);
            return die_err("--track", &e);
        }
        nr = g_new0(struct vb_cbt_record, 1);
        nr->vm = g_strdup(vm);
        nr->disk = g_strdup(disk);
        nr->image = g_strdup(f->files[0]);
        nr->format = g_strdup(format);
        nr->overlay = ovl;
        ovl = NULL;
        nr->size = f->size;
        {
            struct vb_file_id oid;
            if (vb_file_id_get(nr->overlay, &oid, &e)) {
                vb_cbt_free(nr);
                return die_err("--track", &e);
            }
            nr->overlay_dev = oid.dev;
            nr->overlay_ino = oid.ino;
        }
    } else {
        return 0;
    }
    /* the files under the overlay as they are now */
    for (unsigned i = 0; i < nr->n_chain; i++)
        g_free(nr->chain[i]);
    g_free(nr->chain);
    g_free(nr->ids);
    {
        unsigned skip = strcmp(f->files[0], nr->image) ? 1 : 0;
        nr->n_chain = f->n - skip;
        nr->chain = g_new0(char *, nr->n_chain);
        nr->ids = g_new0(struct vb_file_id, nr->n_chain);
        for (unsigned i = 0; i < nr->n_chain; i++) {
            nr->chain[i] = g_strdup(f->files[i + skip]);
            nr->ids[i] = f->ids[i + skip];
        }
    }
    nr->size = f->size;
    nr->ready = true;
    g_free(nr->previous);
    nr->previous = NULL;
    g_free(nr->basis);
    g_free(nr->basis_repo);
    nr->basis = g_strdup(snap);
    nr->basis_repo = g_strdup(repo);
    ret = vb_cbt_save(state, nr, &e);
    if (ret)
        ret = die_err("tracking record", &e);
    else if (!quiet && track && !rec)
        printf("tracking: the disk's writes must now go to %s (start the VM on it); the "
               "next incremental backup of it reads only them\n", nr->overlay);
    else if (!quiet)
        printf("tracking: bound to snapshot %s\n", snap);
    vb_cbt_free(nr);
    return ret;
}

static int cmd_backup_disk(int argc, char **argv)
{
    static const struct option lo[] = {
        { "vm", 1, 0, 'v' }, { "name", 1, 0, 'n' }, { "format", 1, 0, 'f' },
        { "backing-format", 1, 0, 'B' }, { "buffered", 0, 0, 'b' }, { "threads", 1, 0, 't' },
        { "mode", 1, 0, 'm' }, { "parent", 1, 0, 'p' }, { "state", 1, 0, 'S' },
        { "track", 0, 0, 'T' }, { "dedup-group", 1, 0, 'G' }, { "password-file", 1, 0, 'P' },
        { "key-file", 1, 0, 'K' }, { 0 } };
    struct vb_disk_backup_opts o = { 0 };
    const char *dedup_group = NULL, *password_file = NULL, *key_file = NULL;
    bool v2 = vbctl_is_v2(repo_path);
    struct vb_disk_stats st;
    struct vb_repo *r;
    struct vb_write *ws;
    struct vb_cbt_record *rec = NULL;
    struct vb_cbt_found before = { 0 }, after = { 0 };
    const char *state = "/var/lib/vbackup";
    char *id = NULL, *image_real = NULL, *repo_real = NULL, *name_copy = NULL;
    char a[32], b[32], c2[32], d[32], z[32], s[32];
    bool track = false;
    vb_error e = { 0 };
    int c;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'v': o.vm = optarg; break;
        case 'n': o.name = optarg; break;
        case 'f': o.format = optarg; break;
        case 'B': o.backing_format = optarg; break;
        case 'b': o.no_direct = true; break;
        case 't': if (vbctl_parse_int("--threads", optarg, &o.threads)) return 2; break;
        case 'm':
            if (parse_mode(optarg, &o.mode)) {
                fprintf(stderr, "%s: backup-disk: --mode must be full, incremental or "
                        "differential, not '%s'\n", prog, optarg);
                return 2;
            }
            break;
        case 'p': o.parent = optarg; break;
        case 'S': state = optarg; break;
        case 'T': track = true; break;
        case 'G': dedup_group = optarg; break;
        case 'P': password_file = optarg; break;
        case 'K': key_file = optarg; break;
        default: return 2;
        }
    }
    if (optind + 1 != argc || !o.vm) {
        fprintf(stderr, "usage: %s backup-disk --vm NAME --format raw|qcow2 [--name DISK] "
                "[--mode full|incremental|differential] [--parent ID] [--state DIR] "
                "[--track] [--dedup-group NAME] [--password-file FILE | --key-file FILE] "
                "IMAGE\n", prog);
        return 2;
    }
    if ((c = check_formats("backup-disk", o.format, o.backing_format)))
        return c;
    if (!vb_valid_name(o.vm)) {
        fprintf(stderr, "%s: '%s' is not a valid VM name (letters, digits, '.', '_', '-'; "
                "at most 64)\n", prog, o.vm);
        return 2;
    }
    if (o.name && !vb_valid_name(o.name)) {
        fprintf(stderr, "%s: '%s' is not a valid disk name\n", prog, o.name);
        return 2;
    }
    if (dedup_group) {
        struct vb_idspace sp;
        if (vb_idspace_init(&sp, dedup_group, &e)) {
            fprintf(stderr, "%s: backup-disk: --dedup-group: %s\n", prog, vb_strerror(&e));
            return 2;
        }
    }
    if (o.parent && !vb_snap_valid_id(o.parent)) {
        fprintf(stderr, "%s: '%s' is not a snapshot id\n", prog, o.parent);
        return 2;
    }
    o.image = argv[optind];
    o.progress = show_progress();
    name_copy = strdup(o.image);
    if (!o.name)
        o.name = basename(name_copy);

    /* changed-block tracking: the record vbackupd (or --track) keeps for the disk */
    image_real = realpath(o.image, NULL);
    c = vb_cbt_load(state, o.vm, o.name, &rec, &e);
    if (c && c != -ENOENT) {
        fprintf(stderr, "%s: warning: %s; ignored (everything is read)\n", prog,
                vb_strerror(&e));
        o.cbt_why = "the tracking record cannot be read";
    }
    if (rec && image_real && !strcmp(image_real, rec->image))
        fprintf(stderr, "%s: warning: %s is the image under the tracking overlay %s, which "
                "holds what the VM wrote since its last backup; back up the overlay\n", prog,
                o.image, rec->overlay);
    if (rec && !o.cbt_why && (!image_real || strcmp(image_real, rec->overlay)))
        o.cbt_why = "the image is not the disk's tracking overlay";
    if (image_real && !o.cbt_why && vb_image_in_use(image_real) == 1)
        o.cbt_why = "the image is in use by a running QEMU (vbackupd tracks the disks of the "
                    "VMs it serves)";
    o.cbt = rec;
    {
        struct vb_image_opts io = { .format = o.format, .backing_format = o.backing_format };
        if (vb_cbt_find_chain(o.image, &io, &before, &e)) {
            vb_cbt_free(rec);
            free(name_copy);
            free(image_real);
            return die_err("backup-disk", &e);
        }
    }
    if (v2) {
        /* format 2: a write session of the v2 engine (its lease keeps gc
         * from deleting what it stores) under the same backup engine */
        struct vb2_repo *r2;
        struct vb_disk_sink sk;
        if (!repo_path || vbctl_v2_open(repo_path, password_file, key_file, false, &r2, &e)) {
            die_err("backup-disk", &e);
            goto fail;
        }
        repo_real = strncmp(repo_path, "s3://", 5) ? realpath(repo_path, NULL)
                                                  : strdup(repo_path);
        if ((c = vb2_disk_sink(r2, repo_real, o.vm, dedup_group, &sk, &e)) == 0) {
            c = vb_disk_backup(&sk, &o, &st, &id, &e);
            vb2_disk_sink_end(&sk);
        }
        vb2_repo_close(r2);
    } else {
        if (open_repo(VB_LOCK_NONE, &r))
            goto fail;
        repo_real = realpath(r->path, NULL);
        /* the session claims the repository (waiting while gc runs) until it ends */
        if (vb_write_begin(r, o.vm, dedup_group, 0, &ws, &e)) {
            vb_repo_close(r);
            die_err("backup-disk", &e);
            goto fail;
        }
        c = vb_disk_backup_v1(ws, &o, &st, &id, &e);
        if (!c && vb_write_warning(ws))
            fprintf(stderr, "%s: warning: %s\n", prog, vb_write_warning(ws));
        vb_write_unref(ws);
        vb_repo_close(r);
    }
    if (c) {
        die_err("backup-disk", &e);
        goto fail;
    }
    if (st.tracked)
        printf("disk %s: %s virtual, %llu chunks\n", o.image, vb_fmt_bytes(st.size, a, sizeof(a)),
               (unsigned long long)st.chunks);
    else
        printf("disk %s: %s virtual, %s allocated, %llu chunks\n", o.image,
               vb_fmt_bytes(st.size, a, sizeof(a)), vb_fmt_bytes(st.allocated, b, sizeof(b)),
               (unsigned long long)st.chunks);
    if (st.tracked)
        printf("%s: read only the %s in %llu runs written since snapshot %s (%llu chunks "
               "changed, %llu reused, %llu read whole)\n",
               st.mode == VB_MODE_DIFFERENTIAL ? "differential" : "incremental",
               vb_fmt_bytes(st.changed_bytes, a, sizeof(a)), (unsigned long long)st.changed_runs,
               st.basis, (unsigned long long)st.chunks_changed,
               (unsigned long long)st.chunks_reused, (unsigned long long)st.chunks_reread);
    else
        printf("full read: %s\n", st.why);
    printf("read %s, new %s (stored %s), deduplicated %s, zero %s, %.1f s, %s/s\n",
           vb_fmt_bytes(st.bytes_read, a, sizeof(a)), vb_fmt_bytes(st.bytes_new, b, sizeof(b)),
           vb_fmt_bytes(st.stored_new, s, sizeof(s)), vb_fmt_bytes(st.bytes_dedup, c2, sizeof(c2)),
           vb_fmt_bytes(st.bytes_zero, z, sizeof(z)), st.seconds,
           vb_fmt_bytes(st.seconds > 0 ? (uint64_t)((double)(st.tracked ? st.bytes_read :
                                                                st.allocated) / st.seconds)
                                       : 0, d, sizeof(d)));
    /* nothing wrote the chain while it was read: the tracking may move on */
    {
        struct vb_image_opts io = { .format = o.format, .backing_format = o.backing_format };
        c = 0;
        if (vb_cbt_find_chain(o.image, &io, &after, &e) == 0 &&
            vb_cbt_found_same(&before, &after) && vb_image_in_use(before.files[0]) == 0 &&
            repo_real)
            c = track_after(state, repo_real, o.vm, o.name, o.format, rec, &after, id, track);
        else if (track)
            c = fprintf(stderr, "%s: --track: the image changed while it was read, or is in "
                        "use: tracking not started\n", prog) > 0;
    }
    printf("%s\n", id);
    free(id);
    vb_cbt_free(rec);
    vb_cbt_found_clear(&before);
    vb_cbt_found_clear(&after);
    free(name_copy);
    free(image_real);
    free(repo_real);
    return c;
fail:
    vb_cbt_free(rec);
    vb_cbt_found_clear(&before);
    free(name_copy);
    free(image_real);
    free(repo_real);
    return 1;
}

static int cmd_restore_disk(int argc, char **argv)
{
    static const struct option lo[] = {
        { "to", 1, 0, 'o' }, { "format", 1, 0, 'f' }, { "force", 0, 0, 'F' },
        { "threads", 1, 0, 't' }, { "password-file", 1, 0, 'P' }, { "key-file", 1, 0, 'K' },
        { "batched", 0, 0, 'B' }, { 0 } };
    struct vb_disk_restore_opts o = { 0 };
    struct vb_disk_stats st;
    const char *password_file = NULL, *key_file = NULL;
    struct vb_sr *r;
    vb_error e = { 0 };
    char a[32];
    int c;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'o': o.to = optarg; break;
        case 'f': o.format = optarg; break;
        case 'F': o.force = true; break;
        case 'B': o.batched = true; break;
        case 't': if (vbctl_parse_int("--threads", optarg, &o.threads)) return 2; break;
        case 'P': password_file = optarg; break;
        case 'K': key_file = optarg; break;
        default: return 2;
        }
    }
    if (optind + 1 != argc || !o.to) {
        fprintf(stderr, "usage: %s restore-disk SNAPSHOT --to FILE [--format raw|qcow2] "
                "[--force] [--threads N] [--batched] [--password-file FILE | --key-file FILE]\n",
                prog);
        return 2;
    }
    o.snapshot = argv[optind];
    o.progress = show_progress();
    if (open_reader(password_file, key_file, &r))
        return 1;
    /* object storage answers slower than a disk: more reads in flight than
     * there are CPUs */
    if (!o.threads && !strncmp(repo_path, "s3://", 5))
        o.threads = 8;
    c = vb_disk_restore(r, &o, &st, &e);
    vb_sr_close(r);
    if (c)
        return die_err("restore-disk", &e);
    if (!quiet)
        printf("restored %s to %s (%s, %s of data) in %.1f s\n", o.snapshot, o.to,
               o.format ? o.format : "raw", vb_fmt_bytes(st.allocated, a, sizeof(a)), st.seconds);
    return 0;
}

/* ---- snapshots / show ------------------------------------------------------ */

static json_object *admin_request(json_object *req);

static void print_snapshot_table(json_object *a, bool with_target)
{
    printf("%s%-40s %-6s %-24s %10s %10s\n", with_target ? "TARGET       " : "", "SNAPSHOT",
           "TYPE", "SOURCE", "SIZE", "NEW");
    for (size_t i = 0; i < json_object_array_length(a); i++) {
        json_object *s = json_object_array_get_idx(a, i), *disk = NULL, *stats = NULL;
        /* a group is made of the roots a guest named */
        const char *g = vb_json_str(s, "group");
        g_autofree char *group = guest_text(g && g[0] ? g : "-");
        g_autofree char *id = guest_text(vb_json_str(s, "id") ? vb_json_str(s, "id") : "?");
        g_autofree char *type = guest_text(vb_json_str(s, "type") ? vb_json_str(s, "type") : "?");
        g_autofree char *target = guest_text(vb_json_str(s, "target") ? vb_json_str(s, "target")
                                                                      : "?");
        char x[32], y[32];
        int64_t size;

        if (!json_object_is_type(s, json_type_object))
            continue;
        json_object_object_get_ex(s, "disk", &disk);
        json_object_object_get_ex(s, "stats", &stats);
        size = disk ? vb_json_int(disk, "size", 0) : vb_json_int(s, "bytes", 0);
        if (with_target)
            printf("%-12s ", target);
        printf("%-40s %-6s %-24s %10s %10s%s\n", id, type, group,
               vb_fmt_bytes((uint64_t)size, x, sizeof(x)),
               vb_fmt_bytes((uint64_t)vb_json_int(stats, "bytes_new", 0), y, sizeof(y)),
               /* the guest could not back up everything (its index.json lists what) */
               json_object_object_get(s, "incomplete") ? "  (incomplete)" : "");
    }
}

/* With --repo (or $VBACKUP_REPO) the repository is read directly; without,
 * vbackupd is asked and lists the snapshots of every target it serves. */
static int cmd_snapshots(int argc, char **argv)
{
    static const struct option lo[] = { { "vm", 1, 0, 'v' }, { "target", 1, 0, 't' },
                                        { "json", 0, 0, 'j' }, { 0 } };
    const char *vm = NULL, *target = NULL;
    bool json = false, broken = false;
    json_object *a;
    int c;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'v': vm = optarg; break;
        case 't': target = optarg; break;
        case 'j': json = true; break;
        default: return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "usage: %s snapshots [--vm NAME] [--target NAME] [--json]\n", prog);
        return 2;
    }
    if (vm && !vb_valid_name(vm)) {
        fprintf(stderr, "%s: '%s' is not a valid VM name\n", prog, vm);
        return 2;
    }
    if (repo_path && target) {
        fprintf(stderr, "%s: --target names one of vbackupd's targets; with --repo the "
                "repository is read directly\n", prog);
        return 2;
    }
    if (repo_path) {
        struct vb_repo *r;
        GPtrArray *list;
        vb_error e = { 0 };

        if (open_repo(VB_LOCK_NONE, &r))
            return 1;
        if (vb_snap_list(r, vm, &list, &e)) {
            vb_repo_close(r);
            return die_err("snapshots", &e);
        }
        a = json_object_new_array();
        for (guint i = 0; i < list->len; i++)
            json_object_array_add(a, json_object_get(((struct vb_snapshot *)list->pdata[i])->json));
        g_ptr_array_free(list, TRUE);
        vb_repo_close(r);
    } else {
        json_object *req;

        if (access(admin_path, F_OK) < 0) {
            fprintf(stderr, "%s: no repository: give --repo DIR or set VBACKUP_REPO (or ask a "
                    "running vbackupd: its admin socket %s does not exist)\n", prog, admin_path);
            return 1;
        }
        req = json_object_new_object();
        json_object_object_add(req, "cmd", json_object_new_string("snapshots"));
        if (vm)
            json_object_object_add(req, "vm", json_object_new_string(vm));
        if (target)
            json_object_object_add(req, "target", json_object_new_string(target));
        if (!(a = admin_request(req)))
            return 1;
        if (!json_object_is_type(a, json_type_array)) {
            fprintf(stderr, "%s: vbackupd sent no snapshot list\n", prog);
            json_object_put(a);
            return 1;
        }
        /* a target that cannot be listed: said, and the others are shown */
        for (size_t i = json_object_array_length(a); i-- > 0;) {
            json_object *x = json_object_array_get_idx(a, i);
            if (!vb_json_str(x, "error"))
                continue;
            fprintf(stderr, "%s: target %s: %s\n", prog, vb_json_str(x, "target"),
                    vb_json_str(x, "error"));
            if (!json)
                json_object_array_del_idx(a, i, 1);
            broken = true;
        }
    }
    if (json)
        vbctl_print_json(a);
    else
        print_snapshot_table(a, !repo_path);
    json_object_put(a);
    return broken ? 1 : 0;
}

static int cmd_show(int argc, char **argv)
{
    static const struct option lo[] = { { "json", 0, 0, 'j' }, { 0 } };
    struct vb_repo *r;
    struct vb_snapshot *s;
    vb_error e = { 0 };
    int c;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1)
        if (c != 'j')
            return 2;
    if (optind + 1 != argc) {
        fprintf(stderr, "usage: %s show SNAPSHOT [--json]\n", prog);
        return 2;
    }
    if (open_repo(VB_LOCK_NONE, &r))
        return 1;
    if (vb_snap_load(r, argv[optind], &s, &e)) {
        vb_repo_close(r);
        return die_err(NULL, &e);
    }
    vbctl_print_json(s->json);
    vb_snap_free(s);
    vb_repo_close(r);
    return 0;
}

/* ---- ls / restore-files ------------------------------------------------------ */

static const char type_char[] = "?-dlpcbs";

/* A guest's bytes in JSON: as a string when they are UTF-8, else escaped (as
 * ls -b) under KEY and as hex under KEY_hex. */
static void json_add_bytes(json_object *o, const char *key, const char *p, size_t n)
{
    if (vb_utf8_valid(p, n)) {
        json_object_object_add(o, key, json_object_new_string_len(p, (int)n));
    } else {
        g_autofree char *esc = vb_escape(p, n);
        g_autofree char *hex = g_malloc(n * 2 + 1);
        g_autofree char *hk = g_strdup_printf("%s_hex", key);
        vb_hex((const uint8_t *)p, n, hex);
        json_object_object_add(o, key, json_object_new_string(esc));
        json_object_object_add(o, hk, json_object_new_string(hex));
    }
}

static int cmd_ls(int argc, char **argv)
{
    static const struct option lo[] = {
        { "json", 0, 0, 'j' }, { "password-file", 1, 0, 'P' }, { "key-file", 1, 0, 'K' },
        { 0 } };
    const char *password_file = NULL, *key_file = NULL;
    struct vb_sr_snap *snap;
    const struct vb_catalog *cat;
    struct vb_sr *r;
    GArray *sel;
    vb_error e = { 0 };
    bool json = false;
    json_object *a = NULL;
    int c;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'j': json = true; break;
        case 'P': password_file = optarg; break;
        case 'K': key_file = optarg; break;
        default: return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "usage: %s ls SNAPSHOT [PATH...] [--json]\n", prog);
        return 2;
    }
    if (open_reader(password_file, key_file, &r))
        return 1;
    if (vb_sr_snap_open(r, argv[optind], &snap, &e)) {
        vb_sr_close(r);
        return die_err(NULL, &e);
    }
    if (vb_sr_snap_info(snap)->kind != VB_SR_FILES) {
        fprintf(stderr, "%s: snapshot %s is a disk snapshot: ls lists files snapshots\n", prog,
                argv[optind]);
        vb_sr_snap_close(snap);
        vb_sr_close(r);
        return 1;
    }
    cat = vb_sr_files_catalog(snap);
    if (vb_files_select(cat, argv + optind + 1, argc - optind - 1, &sel, &e)) {
        vb_sr_snap_close(snap);
        vb_sr_close(r);
        return die_err(NULL, &e);
    }
    if (json)
        a = json_object_new_array();
    for (guint i = 0; i < sel->len; i++) {
        uint64_t idx = g_array_index(sel, uint64_t, i);
        const struct vb_cat_entry *m = &cat->e[idx];
        size_t pl;
        const char *p = vb_cat_path(cat, idx, &pl);
        char t[64];
        vb_fmt_timespec(m->mtime_sec, m->mtime_nsec, t, sizeof(t));
        if (json) {
            json_object *o = json_object_new_object();
            size_t ll;
            const char *l = vb_cat_link(cat, idx, &ll);
            json_add_bytes(o, "path", p, pl);
            json_object_object_add(o, "type", json_object_new_int(m->type));
            json_object_object_add(o, "mode", json_object_new_int((int)m->mode));
            json_object_object_add(o, "uid", json_object_new_int64(m->uid));
            json_object_object_add(o, "gid", json_object_new_int64(m->gid));
            json_object_object_add(o, "size", json_object_new_int64((int64_t)m->size));
            json_object_object_add(o, "mtime_sec", json_object_new_int64(m->mtime_sec));
            json_object_object_add(o, "mtime_nsec", json_object_new_int64(m->mtime_nsec));
            if (m->mtime_sec > INT64_MIN / 1000000000 + 1 && m->mtime_sec < INT64_MAX / 1000000000)
                json_object_object_add(o, "mtime_ns", json_object_new_int64(
                    m->mtime_sec * 1000000000 + m->mtime_nsec));
            if (ll)
                json_add_bytes(o, "link", l, ll);
            if (m->fsflags)
                json_object_object_add(o, "fsflags", json_object_new_int64(m->fsflags));
            if (m->projid)
                json_object_object_add(o, "projid", json_object_new_int64(m->projid));
            if (m->n_xattrs) {
                json_object *xo = json_object_new_object();
                for (uint32_t k = 0; k < m->n_xattrs; k++) {
                    const char *xn;
                    const uint8_t *xv;
                    size_t xnl, xvl;
                    g_autofree char *hex = g_malloc(VB_MAX_XATTR_VALUE * 2 + 1);
                    g_autofree char *name = NULL;
                    vb_cat_xattr(cat, idx, k, &xn, &xnl, &xv, &xvl);
                    vb_hex(xv, xvl, hex);
                    /* a name that is not UTF-8: as ls -b shows it (JSON holds text) */
                    name = vb_utf8_valid(xn, xnl) ? g_strndup(xn, xnl) : vb_escape(xn, xnl);
                    json_object_object_add(xo, name, json_object_new_string(hex));
                }
                json_object_object_add(o, "xattrs_hex", xo);
            }
            json_object_array_add(a, o);
        } else {
            /* the guest's bytes, escaped: a name cannot forge a line or a link */
            size_t ll;
            const char *l = vb_cat_link(cat, idx, &ll);
            g_autofree char *name = vb_escape(p, pl);
            g_autofree char *link = vb_escape(l, ll);
            /* a symlink's size is the length of its target */
            uint64_t size = m->type == VB_FT_SYMLINK ? m->link_len : m->size;
            printf("%c%04o %6u %6u %14llu %s /%s%s%s\n", type_char[m->type < 8 ? m->type : 0],
                   m->mode & 07777, m->uid, m->gid, (unsigned long long)size, t, name,
                   m->link_len ? " -> " : "", link);
        }
    }
    if (json) {
        vbctl_print_json(a);
        json_object_put(a);
    }
    g_array_free(sel, TRUE);
    vb_sr_snap_close(snap);
    vb_sr_close(r);
    return 0;
}

/* "1 file", "2 files", "3 other entries" */
static const char *counted(uint64_t n, const char *one, char buf[64])
{
    size_t l = strlen(one);

    if (n == 1)
        snprintf(buf, 64, "1 %s", one);
    else if (l > 1 && one[l - 1] == 'y')
        snprintf(buf, 64, "%llu %.*sies", (unsigned long long)n, (int)(l - 1), one);
    else
        snprintf(buf, 64, "%llu %ss", (unsigned long long)n, one);
    return buf;
}

static int cmd_restore_files(int argc, char **argv)
{
    static const struct option lo[] = {
        { "to", 1, 0, 'o' }, { "same-owner", 0, 0, 'O' }, { "devices", 0, 0, 'D' },
        { "xattrs", 1, 0, 'X' }, { "sparse", 0, 0, 'S' }, { "no-sparse", 0, 0, 'N' },
        { "password-file", 1, 0, 'P' }, { "key-file", 1, 0, 'K' }, { 0 }
    };
    struct vb_files_restore_opts o = { .xattrs = VB_XA_USER | VB_XA_ACL };
    struct vb_files_restore_stats st;
    const char *password_file = NULL, *key_file = NULL;
    struct vb_sr *r;
    vb_error e = { 0 };
    char a[32], c1[64], c2[64], c3[64], c4[64];
    double t0 = vb_now();
    int c, ret;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c == 'o')
            o.to = optarg;
        else if (c == 'O')
            o.same_owner = true;
        else if (c == 'D')
            o.devices = true;
        else if (c == 'S')
            o.no_sparse = false;
        else if (c == 'N')
            o.no_sparse = true;
        else if (c == 'P')
            password_file = optarg;
        else if (c == 'K')
            key_file = optarg;
        else if (c == 'X' && !strcmp(optarg, "none"))
            o.xattrs = 0;
        else if (c == 'X' && !strcmp(optarg, "user"))
            o.xattrs = VB_XA_USER | VB_XA_ACL;
        else if (c == 'X' && !strcmp(optarg, "all"))
            o.xattrs = VB_XA_ALL;
        else if (c == 'X') {
            fprintf(stderr, "%s: restore-files: --xattrs is none, user (user. and ACLs, the "
                    "default) or all (also security. and trusted.), not '%s'\n", prog, optarg);
            return 2;
        } else
            return 2;
    }
    if (optind >= argc || !o.to) {
        fprintf(stderr, "usage: %s restore-files SNAPSHOT [PATH...] --to DIR [--same-owner] "
                "[--devices] [--xattrs=none|user|all] [--sparse|--no-sparse]\n", prog);
        return 2;
    }
    if (o.same_owner && geteuid() != 0) {
        fprintf(stderr, "%s: restore-files: --same-owner needs root (the owners are set with "
                "chown)\n", prog);
        return 1;
    }
    o.snapshot = argv[optind];
    o.paths = argv + optind + 1;
    o.n_paths = argc - optind - 1;
    o.progress = show_progress();
    if (open_reader(password_file, key_file, &r))
        return 1;
    ret = vb_files_restore(r, &o, &st, &e);
    vb_sr_close(r);
    if (ret && ret != -EINTR) {
        vb_files_restore_stats_clear(&st);
        return die_err("restore-files", &e);
    }
    if (!quiet) {
        printf("restored %s, %s, %s and %s (%s of data) from %s into %s in %.1f s\n",
               counted(st.files, "file", c1), counted(st.dirs, "folder", c2),
               counted(st.symlinks, "symlink", c3), counted(st.others, "other entry", c4),
               vb_fmt_bytes(st.bytes, a, sizeof(a)), o.snapshot, o.to, vb_now() - t0);
        /* what a restore on the host leaves out unless asked (like tar) */
        if (st.devices_skipped)
            printf("not made: %s (--devices makes them)\n",
                   counted(st.devices_skipped, "device node", c1));
        if (st.setid_dropped)
            printf("not kept: the setuid/setgid bits of %s (--same-owner keeps them)\n",
                   counted(st.setid_dropped, "entry", c1));
        if (st.owners_dropped)
            printf("not kept: the owners of %s, now the restoring user's (--same-owner keeps "
                   "them)\n", counted(st.owners_dropped, "entry", c1));
        if (st.xattrs_skipped)
            printf("not kept: %s of %s (--xattrs=all keeps them)\n",
                   o.xattrs ? "the security. and trusted. attributes"
                            : "the extended attributes and ACLs",
                   counted(st.xattrs_skipped, "entry", c1));
    }
    for (guint i = 0; i < st.failures->len; i++)
        fprintf(stderr, "%s: restore-files: %s\n", prog, (const char *)st.failures->pdata[i]);
    if (ret == -EINTR)
        fprintf(stderr, "%s: restore-files: interrupted; %llu of %llu entries were looked at\n",
                prog, (unsigned long long)(st.files + st.dirs + st.symlinks + st.others +
                                           st.failures->len + st.devices_skipped),
                (unsigned long long)st.entries);
    else if (st.failures->len)
        fprintf(stderr, "%s: restore-files: incomplete: %u of %llu entries could not be "
                "restored (all of them, see above)\n", prog, st.failures->len,
                (unsigned long long)st.entries);
    /* 3: done, but not everything could be restored (restic's "incomplete") */
    c = ret ? 1 : st.failures->len ? 3 : 0;
    vb_files_restore_stats_clear(&st);
    return c;
}

/* ---- verify / prune / gc / stats -------------------------------------------- */

static int cmd_repair(int argc, char **argv);

static int cmd_verify(int argc, char **argv)
{
    static const struct option lo[] = { { "json", 0, 0, 'j' }, { "threads", 1, 0, 't' },
                                        { "repair", 0, 0, 'r' }, { 0 } };
    struct vb_verify_result res;
    struct vb_repo *r;
    vb_error e = { 0 };
    bool json = false;
    int c, threads = 0, rc;
    char a[32];

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'j': json = true; break;
        case 't': if (vbctl_parse_int("--threads", optarg, &threads)) return 2; break;
        case 'r': optind = 0; return cmd_repair(argc, argv);
        default: return 2;
        }
    }
    if (optind + 1 < argc) {
        fprintf(stderr, "usage: %s verify [SNAPSHOT] [--json]\n", prog);
        return 2;
    }
    if (open_repo(VB_LOCK_SHARED, &r))
        return 1;
    if (vb_verify(r, optind < argc ? argv[optind] : NULL, threads, show_progress(), &res, &e)) {
        vb_repo_close(r);
        return die_err("verify", &e);
    }
    vb_repo_close(r);
    rc = res.chunks_bad || res.snapshots_bad ? 1 : 0;
    if (json) {
        json_object_object_add(res.report, "ok", json_object_new_boolean(!rc));
        vbctl_print_json(res.report);
    } else {
        json_object *arr;
        json_object_object_get_ex(res.report, "damaged_snapshot_indexes", &arr);
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
            json_object *x = json_object_array_get_idx(arr, i);
            const char *where = vb_json_str(x, "snapshot"), *why = vb_json_str(x, "error");
            size_t n = strlen(where);
            /* the error names the snapshot already: say it once */
            if (!strncmp(why, "snapshot ", 9) && !strncmp(why + 9, where, n) && why[9 + n] == ':')
                why += 9 + n + 2;
            else if (!strncmp(why, where, n) && why[n] == ':')
                why += n + 2;
            {
                g_autofree char *w2 = host_text(where), *y2 = host_text(why);
                printf("damaged snapshot %s: %s\n", w2, y2);
            }
        }
        json_object_object_get_ex(res.report, "damaged_chunks", &arr);
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
            json_object *x = json_object_array_get_idx(arr, i), *sl;
            g_autofree char *why = host_text(vb_json_str(x, "error"));
            printf("damaged chunk %s: %s; needed by:", vb_json_str(x, "chunk"), why);
            json_object_object_get_ex(x, "snapshots", &sl);
            for (size_t k = 0; k < json_object_array_length(sl); k++)
                printf(" %s", json_object_get_string(json_object_array_get_idx(sl, k)));
            printf("\n");
        }
        printf("verified %llu snapshots, %llu chunks (%s): %s\n",
               (unsigned long long)res.snapshots, (unsigned long long)res.chunks,
               vb_fmt_bytes(res.bytes, a, sizeof(a)),
               rc ? "DAMAGED" : "ok");
        if (rc)
            printf("%llu damaged chunks, %llu snapshots affected\n",
                   (unsigned long long)res.chunks_bad, (unsigned long long)res.snapshots_bad);
    }
    json_object_put(res.report);
    return rc;
}

/* repair, or verify --repair (the same options, --repair ignored) */
static int cmd_repair(int argc, char **argv)
{
    static const struct option lo[] = { { "json", 0, 0, 'j' }, { "threads", 1, 0, 't' },
                                        { "dry-run", 0, 0, 'n' }, { "repair", 0, 0, 'r' },
                                        { 0 } };
    struct vb_repair_result res;
    struct vb_repo *r;
    vb_error e = { 0 };
    bool json = false, dry = false;
    int c, threads = 0;
    json_object *a;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'j': json = true; break;
        case 't': if (vbctl_parse_int("--threads", optarg, &threads)) return 2; break;
        case 'n': dry = true; break;
        case 'r': break;
        default: return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "usage: %s repair [--dry-run] [--json] [--threads N]\n", prog);
        return 2;
    }
    /* like gc: no backup may trust what it knew about chunks meanwhile */
    if (open_repo(VB_LOCK_EXCLUSIVE, &r))
        return 1;
    if (vb_repair(r, dry, threads, show_progress(), &res, &e)) {
        vb_repo_close(r);
        return die_err("repair", &e);
    }
    vb_repo_close(r);
    if (json) {
        vbctl_print_json(res.report);
    } else {
        json_object_object_get_ex(res.report, "set_aside", &a);
        for (size_t i = 0; i < json_object_array_length(a); i++) {
            json_object *x = json_object_array_get_idx(a, i);
            if (dry)
                printf("damaged chunk %s (%s): would be set aside\n", vb_json_str(x, "chunk"),
                       vb_json_str(x, "error"));
            else
                printf("damaged chunk %s (%s): set aside as %s\n", vb_json_str(x, "chunk"),
                       vb_json_str(x, "error"), vb_json_str(x, "kept_as"));
        }
        json_object_object_get_ex(res.report, "missing", &a);
        for (size_t i = 0; i < json_object_array_length(a); i++)
            printf("missing chunk %s\n", vb_json_str(json_object_array_get_idx(a, i), "chunk"));
        json_object_object_get_ex(res.report, "unreadable", &a);
        for (size_t i = 0; i < json_object_array_length(a); i++) {
            json_object *x = json_object_array_get_idx(a, i);
            printf("cannot be healed: %s: %s (its index is damaged; 'vbackupctl forget' removes "
                   "a snapshot)\n", vb_json_str(x, "snapshot"), vb_json_str(x, "error"));
        }
        json_object_object_get_ex(res.report, "waiting", &a);
        for (size_t i = 0; i < json_object_array_length(a); i++)
            printf("needs data again: %s (heals when a backup stores the same data again; if "
                   "that data is gone, it cannot be healed)\n",
                   json_object_get_string(json_object_array_get_idx(a, i)));
        if (res.generation_rebuilt)
            printf("gc.json was damaged: rebuilt with generation %llu\n",
                   (unsigned long long)res.generation);
        if (!res.chunks_set_aside && !res.chunks_missing && !res.snapshots_unreadable &&
            !res.generation_rebuilt)
            printf("checked %llu snapshots, %llu chunks: nothing to repair\n",
                   (unsigned long long)res.snapshots, (unsigned long long)res.chunks);
        else
            printf("checked %llu snapshots, %llu chunks: %llu damaged chunks %s, %llu missing; "
                   "%llu snapshots wait for their data, %llu cannot be healed%s\n",
                   (unsigned long long)res.snapshots, (unsigned long long)res.chunks,
                   (unsigned long long)res.chunks_set_aside,
                   dry ? "to set aside" : "set aside", (unsigned long long)res.chunks_missing,
                   (unsigned long long)res.snapshots_waiting,
                   (unsigned long long)res.snapshots_unreadable,
                   res.generation_moved ? "; the next backups look up every chunk they reuse"
                                        : "");
    }
    json_object_put(res.report);
    /* 1 while anything is damaged, as verify: a repair heals only with backups */
    return res.chunks_set_aside || res.chunks_missing || res.snapshots_unreadable ? 1 : 0;
}

int vbctl_forget_each(int n, char **ids, bool json,
                      int (*forget)(void *h, const char *id, vb_error *e), void *h)
{
    json_object *out = json_object_new_array();
    int rc = 0;

    for (int i = 0; i < n; i++) {
        vb_error e = { 0 };
        json_object *o = json_object_new_object();

        json_object_object_add(o, "id", json_object_new_string(ids[i]));
        if (forget(h, ids[i], &e)) {
            json_object_object_add(o, "error", json_object_new_string(vb_strerror(&e)));
            if (!json)
                vbctl_fail("forget", &e);
            rc = 1;
        } else if (!json && !quiet) {
            printf("forgot %s\n", ids[i]);
        }
        json_object_array_add(out, o);
    }
    if (json)
        vbctl_print_json(out);
    else if (!quiet && !rc)
        printf("run 'vbackupctl gc' to free their chunks\n");
    json_object_put(out);
    return rc;
}

static int forget_v1(void *h, const char *id, vb_error *e)
{
    return vb_snap_delete(h, id, e);
}

/* forget SNAPSHOT...: each one out of sight first (then deleted), like prune */
static int cmd_forget(int argc, char **argv)
{
    static const struct option lo[] = { { "json", 0, 0, 'j' }, { 0 } };
    struct vb_repo *r;
    bool json = false;
    int c, rc = 0;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c != 'j')
            return 2;
        json = true;
    }
    if (optind >= argc) {
        fprintf(stderr, "usage: %s forget SNAPSHOT... [--json]\n", prog);
        return 2;
    }
    for (int i = optind; i < argc; i++) {
        if (!vb_snap_valid_id(argv[i])) {
            fprintf(stderr, "%s: '%s' is not a snapshot id (VM/TIME)\n", prog, argv[i]);
            return 2;
        }
    }
    if (open_repo(VB_LOCK_SHARED, &r))
        return 1;
    rc = vbctl_forget_each(argc - optind, argv + optind, json, forget_v1, r);
    vb_repo_close(r);
    return rc;
}

int vbctl_prune_args(int argc, char **argv, bool v2, struct vbctl_prune_args *a)
{
    static const struct option lo[] = {
        { "keep-last", 1, 0, 'l' }, { "keep-hourly", 1, 0, 'h' }, { "keep-daily", 1, 0, 'd' },
        { "keep-weekly", 1, 0, 'w' }, { "keep-monthly", 1, 0, 'm' }, { "keep-yearly", 1, 0, 'y' },
        { "vm", 1, 0, 'v' }, { "dry-run", 0, 0, 'n' }, { "json", 0, 0, 'j' },
        { "password-file", 1, 0, 'P' }, { "key-file", 1, 0, 'K' }, { 0 } };
    int c, *dst;

    memset(a, 0, sizeof(*a));
    optind = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if ((c == 'P' || c == 'K') && !v2) {
            fprintf(stderr, "%s: prune: --password-file and --key-file are for format 2 "
                    "repositories\n", prog);
            return 2;
        }
        dst = NULL;
        switch (c) {
        case 'l': dst = &a->policy.keep[VB_KEEP_LAST]; break;
        case 'h': dst = &a->policy.keep[VB_KEEP_HOURLY]; break;
        case 'd': dst = &a->policy.keep[VB_KEEP_DAILY]; break;
        case 'w': dst = &a->policy.keep[VB_KEEP_WEEKLY]; break;
        case 'm': dst = &a->policy.keep[VB_KEEP_MONTHLY]; break;
        case 'y': dst = &a->policy.keep[VB_KEEP_YEARLY]; break;
        case 'v': a->vm = optarg; break;
        case 'n': a->dry_run = true; break;
        case 'j': a->json = true; break;
        case 'P': a->password_file = optarg; break;
        case 'K': a->key_file = optarg; break;
        default: return 2;
        }
        if (dst) {
            char opt[32];
            for (const struct option *x = lo; x->name; x++)
                if (x->val == c)
                    snprintf(opt, sizeof(opt), "--%s", x->name);
            if (vbctl_parse_int(opt, optarg, dst))
                return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "usage: %s prune --keep-last N [...] [--dry-run]\n", prog);
        return 2;
    }
    if (a->vm && !vb_valid_name(a->vm)) {
        fprintf(stderr, "%s: '%s' is not a valid VM name\n", prog, a->vm);
        return 2;
    }
    if (!vb_retention_any(&a->policy)) {
        fprintf(stderr, "%s: prune: prune needs at least one --keep-* option (refusing to "
                "remove every snapshot)\n", prog);
        return 1;
    }
    return 0;
}

void vbctl_prune_print(json_object *plan, const struct vbctl_prune_args *a)
{
    size_t removed = 0;

    if (a->json) {
        vbctl_print_json(plan);
        return;
    }
    for (size_t i = 0; i < json_object_array_length(plan); i++) {
        json_object *x = json_object_array_get_idx(plan, i), *k, *why;
        json_object_object_get_ex(x, "keep", &k);
        json_object_object_get_ex(x, "reasons", &why);
        if (json_object_get_boolean(k)) {
            printf("keep    %s (", vb_json_str(x, "id"));
            for (size_t j = 0; j < json_object_array_length(why); j++)
                printf("%s%s", j ? ", " : "",
                       json_object_get_string(json_object_array_get_idx(why, j)));
            printf(")\n");
        } else {
            printf("%s %s\n", a->dry_run ? "would remove" : "remove ", vb_json_str(x, "id"));
            removed++;
        }
    }
    printf("%zu snapshots %s; run 'vbackupctl gc' to free their chunks\n", removed,
           a->dry_run ? "would be removed" : "removed");
}

static int cmd_prune(int argc, char **argv)
{
    struct vbctl_prune_args a;
    struct vb_prune_opts o = { 0 };
    struct vb_repo *r;
    json_object *plan;
    vb_error e = { 0 };
    int ret = vbctl_prune_args(argc, argv, false, &a);

    if (ret)
        return ret;
    o.vm = a.vm;
    o.policy = a.policy;
    o.dry_run = a.dry_run;
    if (open_repo(VB_LOCK_SHARED, &r))
        return 1;
    if (vb_prune(r, &o, &plan, &e)) {
        vb_repo_close(r);
        return die_err("prune", &e);
    }
    vb_repo_close(r);
    vbctl_prune_print(plan, &a);
    json_object_put(plan);
    return 0;
}

static int cmd_gc(int argc, char **argv)
{
    static const struct option lo[] = { { "dry-run", 0, 0, 'n' }, { "json", 0, 0, 'j' }, { 0 } };
    struct vb_gc_result res;
    struct vb_repo *r;
    vb_error e = { 0 };
    bool json = false, dry = false;
    char a[32];
    int c;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'n': dry = true; break;
        case 'j': json = true; break;
        default: return 2;
        }
    }
    if (open_repo(VB_LOCK_EXCLUSIVE, &r))
        return 1;
    if (vb_gc(r, dry, &res, &e)) {
        vb_repo_close(r);
        return die_err("gc", &e);
    }
    vb_repo_close(r);
    if (json) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "dry_run", json_object_new_boolean(dry));
        json_object_object_add(o, "chunks_kept", json_object_new_int64((int64_t)res.chunks_kept));
        json_object_object_add(o, "chunks_removed", json_object_new_int64((int64_t)res.chunks_removed));
        json_object_object_add(o, "bytes_removed", json_object_new_int64((int64_t)res.bytes_removed));
        json_object_object_add(o, "temporary_removed", json_object_new_int64((int64_t)res.temp_removed));
        json_object_object_add(o, "generation", json_object_new_int64((int64_t)res.generation));
        vbctl_print_json(o);
        json_object_put(o);
    } else {
        printf("%s %llu unreferenced chunks (%s), %llu leftovers of interrupted operations; "
               "%llu chunks in use\n", dry ? "would remove" : "removed",
               (unsigned long long)res.chunks_removed, vb_fmt_bytes(res.bytes_removed, a, sizeof(a)),
               (unsigned long long)res.temp_removed, (unsigned long long)res.chunks_kept);
    }
    return 0;
}

static int cmd_stats(int argc, char **argv)
{
    static const struct option lo[] = { { "json", 0, 0, 'j' }, { 0 } };
    struct vb_stats st;
    struct vb_repo *r;
    vb_error e = { 0 };
    bool json = false;
    double dedup, comp;
    char a[32], b[32], c3[32], d[32];
    int c;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c != 'j')
            return 2;
        json = true;
    }
    if (open_repo(VB_LOCK_SHARED, &r))
        return 1;
    if (vb_stats(r, &st, &e)) {
        vb_repo_close(r);
        return die_err("stats", &e);
    }
    vb_repo_close(r);
    dedup = st.unique_bytes ? (double)st.logical_bytes / (double)st.unique_bytes : 1.0;
    comp = st.stored_bytes ? (double)st.unique_bytes / (double)st.stored_bytes : 1.0;
    if (json) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "snapshots", json_object_new_int64((int64_t)st.snapshots));
        json_object_object_add(o, "disk_snapshots", json_object_new_int64((int64_t)st.disk_snapshots));
        json_object_object_add(o, "files_snapshots", json_object_new_int64((int64_t)st.files_snapshots));
        json_object_object_add(o, "virtual_bytes", json_object_new_int64((int64_t)st.virtual_bytes));
        json_object_object_add(o, "logical_bytes", json_object_new_int64((int64_t)st.logical_bytes));
        json_object_object_add(o, "unique_bytes", json_object_new_int64((int64_t)st.unique_bytes));
        json_object_object_add(o, "stored_bytes", json_object_new_int64((int64_t)st.stored_bytes));
        json_object_object_add(o, "chunks", json_object_new_int64((int64_t)st.chunks));
        json_object_object_add(o, "chunk_files", json_object_new_int64((int64_t)st.chunk_files));
        json_object_object_add(o, "dedup_ratio", json_object_new_double(dedup));
        json_object_object_add(o, "compression_ratio", json_object_new_double(comp));
        json_object_object_add(o, "total_ratio", json_object_new_double(dedup * comp));
        vbctl_print_json(o);
        json_object_put(o);
    } else {
        printf("snapshots:          %llu (%llu disk, %llu files)\n",
               (unsigned long long)st.snapshots, (unsigned long long)st.disk_snapshots,
               (unsigned long long)st.files_snapshots);
        printf("virtual size:       %s\n", vb_fmt_bytes(st.virtual_bytes, a, sizeof(a)));
        printf("logical data:       %s (referenced by all snapshots)\n",
               vb_fmt_bytes(st.logical_bytes, b, sizeof(b)));
        printf("unique data:        %s in %llu chunks\n", vb_fmt_bytes(st.unique_bytes, c3, sizeof(c3)),
               (unsigned long long)st.chunks);
        printf("stored:             %s in %llu chunk files\n",
               vb_fmt_bytes(st.stored_bytes, d, sizeof(d)), (unsigned long long)st.chunk_files);
        printf("deduplication:      %.2fx\n", dedup);
        printf("compression:        %.2fx\n", comp);
        printf("total:              %.2fx\n", dedup * comp);
    }
    return 0;
}

/* ---- image diagnostics ------------------------------------------------------- */

static const char *kind_name(int k)
{
    switch (k) {
    case VB_X_DATA: return "data";
    case VB_X_ZERO: return "zero";
    case VB_X_HOLE: return "hole";
    case VB_X_COMPRESSED: return "compressed";
    }
    return "?";
}

static int cmd_image_map(int argc, char **argv)
{
    static const struct option lo[] = { { "format", 1, 0, 'f' }, { "backing-format", 1, 0, 'B' },
                                        { "json", 0, 0, 'j' }, { 0 } };
    struct vb_image_opts io = { .no_direct = true };
    struct vb_image *img;
    GArray *m;
    vb_error e = { 0 };
    bool json = false;
    int c;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'f': io.format = optarg; break;
        case 'B': io.backing_format = optarg; break;
        case 'j': json = true; break;
        default: return 2;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "usage: %s image-map IMAGE --format raw|qcow2 [--json]\n", prog);
        return 2;
    }
    if ((c = check_formats("image-map", io.format, io.backing_format)))
        return c;
    if (vb_image_open(argv[optind], &io, &img, &e))
        return die_err(NULL, &e);
    m = g_array_new(FALSE, FALSE, sizeof(struct vb_extent_map));
    if (vb_image_map(img, 0, img->size, m, &e)) {
        g_array_free(m, TRUE);
        vb_image_close(img);
        return die_err(NULL, &e);
    }
    if (json) {
        json_object *a = json_object_new_array();
        for (guint i = 0; i < m->len; i++) {
            struct vb_extent_map *x = &g_array_index(m, struct vb_extent_map, i);
            json_object *o = json_object_new_object();
            json_object_object_add(o, "start", json_object_new_int64((int64_t)x->off));
            json_object_object_add(o, "length", json_object_new_int64((int64_t)x->len));
            json_object_object_add(o, "kind", json_object_new_string(kind_name(x->kind)));
            json_object_object_add(o, "depth", json_object_new_int(x->depth));
            json_object_object_add(o, "file", x->depth < img->n ?
                                   json_object_new_string(img->layer[x->depth].path) : NULL);
            if (x->kind == VB_X_DATA || x->kind == VB_X_COMPRESSED)
                json_object_object_add(o, "offset", json_object_new_int64((int64_t)x->host_off));
            json_object_array_add(a, o);
        }
        vbctl_print_json(a);
        json_object_put(a);
    } else {
        for (int i = 0; i < img->n; i++)
            printf("# layer %d: %s (%s, %llu bytes virtual)\n", i, img->layer[i].path,
                   vb_fmt_name(img->layer[i].fmt), (unsigned long long)img->layer[i].virtual_size);
        for (guint i = 0; i < m->len; i++) {
            struct vb_extent_map *x = &g_array_index(m, struct vb_extent_map, i);
            printf("%#14llx %#14llx %-10s depth %d", (unsigned long long)x->off,
                   (unsigned long long)x->len, kind_name(x->kind), x->depth);
            if (x->kind == VB_X_DATA || x->kind == VB_X_COMPRESSED)
                printf(" at %#llx", (unsigned long long)x->host_off);
            printf("\n");
        }
    }
    g_array_free(m, TRUE);
    vb_image_close(img);
    return 0;
}

static void dump_done(struct vb_rd *rd)
{
    *(bool *)rd->opaque = true;
}

static int cmd_image_dump(int argc, char **argv)
{
    static const struct option lo[] = { { "format", 1, 0, 'f' }, { "backing-format", 1, 0, 'B' },
                                        { "output", 1, 0, 'o' }, { "buffered", 0, 0, 'b' },
                                        { "pread", 0, 0, 'p' }, { 0 } };
    struct vb_image_opts io = { 0 };
    const char *output = NULL;
    struct vb_image *img;
    struct vb_ring ring;
    struct vb_rd rd = { 0 };
    GArray *scratch;
    vb_error e = { 0 };
    bool finished, sync = false;
    int c, fd = STDOUT_FILENO, ret = 0;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'f': io.format = optarg; break;
        case 'B': io.backing_format = optarg; break;
        case 'o': output = optarg; break;
        case 'b': io.no_direct = true; break;
        case 'p': sync = io.no_direct = true; break;
        default: return 2;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "usage: %s image-dump IMAGE --format raw|qcow2 [--output FILE] "
                "[--buffered | --pread]\n", prog);
        return 2;
    }
    if ((c = check_formats("image-dump", io.format, io.backing_format)))
        return c;
    if (vb_image_open(argv[optind], &io, &img, &e))
        return die_err(NULL, &e);
    if (output) {
        fd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            perror(output);
            vb_image_close(img);
            return 1;
        }
    }
    ret = vb_ring_init(&ring, 64);
    if (ret) {
        fprintf(stderr, "%s: io_uring: %s\n", prog, strerror(-ret));
        vb_image_close(img);
        return 1;
    }
    scratch = g_array_new(FALSE, FALSE, sizeof(struct vb_extent_map));
    rd.img = img;
    rd.buf = aligned_alloc(4096, VB_DISK_CHUNK);
    rd.done = dump_done;
    rd.opaque = &finished;
    for (uint64_t off = 0; off < img->size && !ret; off += VB_DISK_CHUNK) {
        rd.off = off;
        rd.len = (uint32_t)VB_MIN((uint64_t)VB_DISK_CHUNK, img->size - off);
        finished = false;
        if (sync) {
            /* plain pread, as the file system mapper reads (imageread.h) */
            if ((ret = vb_image_pread(img, rd.buf, rd.len, off, &e)))
                break;
            if ((ret = vb_write_all(fd, rd.buf, rd.len)))
                vb_seterr(&e, ret, "write: %s", strerror(-ret));
            continue;
        }
        ret = vb_rd_start(&ring, &rd, scratch, &e);
        if (ret == 1) {
            memset(rd.buf, 0, rd.len);
            ret = 0;
        } else if (ret == 0) {
            while (!finished && ret >= 0)
                ret = vb_ring_run(&ring, true);
            if (ret >= 0)
                ret = vb_rd_finish(&rd, &e);
        }
        vb_rd_clear(&rd);
        if (ret < 0)
            break;
        ret = vb_write_all(fd, rd.buf, rd.len);
        if (ret)
            vb_seterr(&e, ret, "write: %s", strerror(-ret));
    }
    free(rd.buf);
    g_array_free(scratch, TRUE);
    vb_ring_exit(&ring);
    vb_image_close(img);
    if (output && close(fd) < 0 && !ret)
        ret = vb_seterr(&e, -errno, "close %s: %s", output, strerror(errno));
    if (ret)
        return die_err(NULL, &e);
    return 0;
}

/* ---- daemon commands -------------------------------------------------------- */

/* Sends one request to vbackupd's admin socket (takes req) and returns the
 * answer, or NULL after saying what went wrong. */
static json_object *admin_request(json_object *req)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    json_object *out = NULL;
    GString *in = g_string_new(NULL);
    const char *s;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", admin_path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "%s: cannot reach vbackupd at %s: %s (is it running? --daemon SOCKET)\n",
                prog, admin_path, strerror(errno));
        goto out;
    }
    s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
    if (vb_write_all(fd, s, strlen(s)) || vb_write_all(fd, "\n", 1)) {
        fprintf(stderr, "%s: write to %s: %s\n", prog, admin_path, strerror(errno));
        goto out;
    }
    for (;;) {
        char buf[65536];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        g_string_append_len(in, buf, n);
        if (memchr(buf, '\n', (size_t)n))
            break;
    }
    out = json_tokener_parse(in->str);
    if (!out)
        fprintf(stderr, "%s: vbackupd sent no answer\n", prog);
    else if (json_object_is_type(out, json_type_object) && vb_json_str(out, "error")) {
        fprintf(stderr, "%s: vbackupd: %s\n", prog, vb_json_str(out, "error"));
        json_object_put(out);
        out = NULL;
    }
out:
    if (fd >= 0)
        close(fd);
    json_object_put(req);
    g_string_free(in, TRUE);
    return out;
}

static json_object *admin_call(const char *cmd, int64_t id)
{
    json_object *req = json_object_new_object();

    json_object_object_add(req, "cmd", json_object_new_string(cmd));
    if (id)
        json_object_object_add(req, "id", json_object_new_int64(id));
    return admin_request(req);
}

static bool want_json(int argc, char **argv, int min_args, int max_args, const char *usage_s,
                      bool *json)
{
    static const struct option lo[] = { { "json", 0, 0, 'j' }, { 0 } };
    int c;

    *json = false;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c != 'j')
            return false;
        *json = true;
    }
    if (argc - optind < min_args || argc - optind > max_args) {
        fprintf(stderr, "usage: %s %s\n", prog, usage_s);
        return false;
    }
    return true;
}

static const char *fmt_state(json_object *j)
{
    return vb_json_str(j, "state") ? vb_json_str(j, "state") : "?";
}

static int cmd_vms(int argc, char **argv)
{
    json_object *o;
    bool json;

    if (!want_json(argc, argv, 0, 0, "vms [--json]", &json))
        return 2;
    if (!(o = admin_call("vms", 0)))
        return 1;
    if (json) {
        vbctl_print_json(o);
    } else {
        printf("%-20s %-10s %-6s %s\n", "VM", "CONNECTED", "DISKS", "SOCKET");
        for (size_t i = 0; i < json_object_array_length(o); i++) {
            json_object *v = json_object_array_get_idx(o, i), *d, *c;
            json_object_object_get_ex(v, "disks", &d);
            json_object_object_get_ex(v, "connected", &c);
            printf("%-20s %-10s %-6zu %s\n", vb_json_str(v, "name"),
                   json_object_get_boolean(c) ? "yes" : "no", json_object_array_length(d),
                   vb_json_str(v, "socket"));
        }
    }
    json_object_put(o);
    return 0;
}

static int cmd_jobs(int argc, char **argv)
{
    json_object *o;
    bool json;

    if (!want_json(argc, argv, 0, 0, "jobs [--json]", &json))
        return 2;
    if (!(o = admin_call("jobs", 0)))
        return 1;
    if (json) {
        vbctl_print_json(o);
    } else {
        printf("%-14s %-12s %-8s %-10s %22s  %s\n", "JOB", "VM", "KIND", "STATE", "PROGRESS",
               "SNAPSHOT / REASON");
        for (size_t i = 0; i < json_object_array_length(o); i++) {
            json_object *j = json_object_array_get_idx(o, i);
            char a[32], b[32], prog_s[64];
            snprintf(prog_s, sizeof(prog_s), "%s / %s",
                     vb_fmt_bytes((uint64_t)vb_json_int(j, "bytes_done", 0), a, sizeof(a)),
                     vb_fmt_bytes((uint64_t)vb_json_int(j, "bytes_total", 0), b, sizeof(b)));
            g_autofree char *what = host_text(vb_json_str(j, "snapshot")
                                              ? vb_json_str(j, "snapshot")
                                              : vb_json_str(j, "reason"));
            g_autofree char *vm = host_text(vb_json_str(j, "vm"));
            printf("%-14lld %-12s %-8s %-10s %22s  %s\n", (long long)vb_json_int(j, "id", 0),
                   vm, vb_json_str(j, "kind"), fmt_state(j), prog_s, what);
        }
    }
    json_object_put(o);
    return 0;
}

static int cmd_job(int argc, char **argv)
{
    json_object *o, *plan;
    bool json;
    char *end;
    long long id;

    if (!want_json(argc, argv, 1, 1, "job ID [--json]", &json))
        return 2;
    id = strtoll(argv[optind], &end, 10);
    if (*end || id <= 0) {
        fprintf(stderr, "%s: '%s' is not a job id\n", prog, argv[optind]);
        return 2;
    }
    if (!(o = admin_call("job", id)))
        return 1;
    if (json) {
        vbctl_print_json(o);
    } else {
        char a[32], b[32], c3[32], d[32];
        printf("job %lld: %s %s backup of VM %s, %s\n", id, vb_json_str(o, "mode"),
               vb_json_str(o, "kind"), vb_json_str(o, "vm"), fmt_state(o));
        /* text vbackupd composed around the guest's bytes: shown plain or escaped */
        static const char *const fields[][2] = {
            { "reason", "reason" }, { "detail", "cause" },   /* the host-side cause */
            { "snapshot", "snapshot" }, { "parent", "parent" },
        };
        for (size_t f = 0; f < VB_ARRAY_SIZE(fields); f++) {
            if (vb_json_str(o, fields[f][0])) {
                g_autofree char *t = host_text(vb_json_str(o, fields[f][0]));
                printf("  %s:%*s%s\n", fields[f][1], (int)(9 - strlen(fields[f][1])), "", t);
            }
        }
        if (json_object_object_get_ex(o, "roots", &plan) &&
            json_object_is_type(plan, json_type_array) && json_object_array_length(plan)) {
            printf("  roots:   ");
            for (size_t i = 0; i < json_object_array_length(plan); i++) {
                g_autofree char *r = guest_text(json_object_get_string(
                    json_object_array_get_idx(plan, i)));
                printf(" /%s", r);
            }
            printf("\n");
        }
        printf("  progress: %s of %s, %lld of %lld files\n",
               vb_fmt_bytes((uint64_t)vb_json_int(o, "bytes_done", 0), a, sizeof(a)),
               vb_fmt_bytes((uint64_t)vb_json_int(o, "bytes_total", 0), b, sizeof(b)),
               (long long)vb_json_int(o, "files_done", 0), (long long)vb_json_int(o, "files_total", 0));
        printf("  data:     read %s, new %s, reused %s\n",
               vb_fmt_bytes((uint64_t)vb_json_int(o, "bytes_read", 0), c3, sizeof(c3)),
               vb_fmt_bytes((uint64_t)vb_json_int(o, "bytes_new", 0), a, sizeof(a)),
               vb_fmt_bytes((uint64_t)vb_json_int(o, "bytes_reused", 0), d, sizeof(d)));
        if (json_object_object_get_ex(o, "plan", &plan) &&
            json_object_is_type(plan, json_type_array) && json_object_array_length(plan)) {
            printf("  plan:\n");
            for (size_t i = 0; i < json_object_array_length(plan); i++) {
                g_autofree char *t = host_text(json_object_get_string(
                    json_object_array_get_idx(plan, i)));
                printf("    %s\n", t);
            }
        }
    }
    json_object_put(o);
    return 0;
}

static int cmd_daemon_stats(int argc, char **argv)
{
    json_object *o, *files;
    bool json;

    if (!want_json(argc, argv, 0, 0, "daemon-stats [--json]", &json))
        return 2;
    if (!(o = admin_call("stats", 0)))
        return 1;
    if (json) {
        vbctl_print_json(o);
    } else {
        char a[32];
        printf("bytes read from disk images: %s\n",
               vb_fmt_bytes((uint64_t)vb_json_int(o, "bytes_read", 0), a, sizeof(a)));
        if (json_object_object_get_ex(o, "bytes_read_by_file", &files)) {
            json_object_object_foreach(files, k, v)
                printf("  %12s  %s\n", vb_fmt_bytes((uint64_t)json_object_get_int64(v), a,
                                                    sizeof(a)), k);
        }
        printf("jobs waiting for a batch: %lld, plans running: %lld, read buffers in use: %lld "
               "(4 MiB each)\n", (long long)vb_json_int(o, "pending_jobs", 0),
               (long long)vb_json_int(o, "plans_running", 0),
               (long long)vb_json_int(o, "buffers_in_use", 0));
        printf("memory held for the VMs' requests: %s (vbackupctl vms --json: by VM)\n",
               vb_fmt_bytes((uint64_t)vb_json_int(o, "memory_in_use", 0), a, sizeof(a)));
    }
    json_object_put(o);
    return 0;
}

static int cmd_reload(int argc, char **argv)
{
    json_object *o;

    if (argc != 1) {
        fprintf(stderr, "usage: %s reload\n", prog);
        return 2;
    }
    if (!(o = admin_call("reload", 0)))
        return 1;
    if (!quiet)
        printf("vbackupd reloaded its configuration\n");
    json_object_put(o);
    return 0;
}

/* ---- instant access (hostd/instant/) ----------------------------------------- */

#define INSTANT_CMD(fn, impl)                                                   \
    static int fn(int argc, char **argv)                                        \
    {                                                                           \
        struct vbi_ctx c = { .prog = prog, .repo = repo_path, .quiet = quiet }; \
        return impl(&c, argc, argv);                                            \
    }
INSTANT_CMD(cmd_export, vbi_cmd_export)
INSTANT_CMD(cmd_boot_from, vbi_cmd_boot_from)
INSTANT_CMD(cmd_live_restore, vbi_cmd_live_restore)
INSTANT_CMD(cmd_mount, vbi_cmd_mount)

/* ---- main ------------------------------------------------------------------ */

static const struct {
    const char *name;
    int (*fn)(int, char **);
} commands[] = {
    { "init", cmd_init },
    { "backup-disk", cmd_backup_disk },
    { "restore-disk", cmd_restore_disk },
    { "snapshots", cmd_snapshots },
    { "show", cmd_show },
    { "ls", cmd_ls },
    { "restore-files", cmd_restore_files },
    { "verify", cmd_verify },
    { "prune", cmd_prune },
    { "gc", cmd_gc },
    { "repair", cmd_repair },
    { "forget", cmd_forget },
    { "stats", cmd_stats },
    { "vms", cmd_vms },
    { "jobs", cmd_jobs },
    { "job", cmd_job },
    { "daemon-stats", cmd_daemon_stats },
    { "reload", cmd_reload },
    { "image-map", cmd_image_map },
    { "image-dump", cmd_image_dump },
    { "export", cmd_export },
    { "boot-from", cmd_boot_from },
    { "live-restore", cmd_live_restore },
    { "mount", cmd_mount },
};

/* Whether a command works on a repository (the others talk to vbackupd, to
 * QEMU or read an image, whatever $VBACKUP_REPO names). */
static bool repo_command(const char *name)
{
    static const char *const not_repo[] = { "vms", "jobs", "job", "daemon-stats", "reload",
                                            "image-map", "image-dump", "live-restore" };

    for (size_t k = 0; k < VB_ARRAY_SIZE(not_repo); k++)
        if (!strcmp(name, not_repo[k]))
            return false;
    return true;
}

int main(int argc, char **argv)
{
    int i = 1;

    signal(SIGPIPE, SIG_IGN);
    vb_install_interrupt_handlers();
    repo_path = getenv("VBACKUP_REPO");
    if (getenv("VBACKUPD_ADMIN"))
        admin_path = getenv("VBACKUPD_ADMIN");
    while (i < argc && argv[i][0] == '-') {
        if (!strcmp(argv[i], "--repo") && i + 1 < argc) {
            repo_path = argv[i + 1];
            i += 2;
        } else if (!strncmp(argv[i], "--repo=", 7)) {
            repo_path = argv[i] + 7;
            i++;
        } else if (!strcmp(argv[i], "--daemon") && i + 1 < argc) {
            admin_path = argv[i + 1];
            i += 2;
        } else if (!strcmp(argv[i], "--password-file") && i + 1 < argc) {
            /* for every command, and the processes they start (the nbdkit
             * plugin of export): as if $VBACKUP_PASSWORD_FILE named it */
            char *abs = realpath(argv[i + 1], NULL);
            if (!abs) {
                fprintf(stderr, "%s: --password-file %s: %s\n", prog, argv[i + 1],
                        strerror(errno));
                return 2;
            }
            setenv("VBACKUP_PASSWORD_FILE", abs, 1);
            free(abs);
            i += 2;
        } else if (!strcmp(argv[i], "--store-option") && i + 1 < argc) {
            static GPtrArray *opts;
            if (!strchr(argv[i + 1], '=')) {
                fprintf(stderr, "%s: --store-option %s: KEY=VALUE\n", prog, argv[i + 1]);
                return 2;
            }
            if (!opts)
                opts = g_ptr_array_new();
            else
                g_ptr_array_remove_index(opts, opts->len - 1);     /* the NULL */
            g_ptr_array_add(opts, argv[i + 1]);
            g_ptr_array_add(opts, NULL);
            vbctl_store_opts = (const char *const *)opts->pdata;
            i += 2;
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            quiet = true;
            i++;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("vbackupctl %s\n", VERSION);
            return 0;
        } else {
            fprintf(stderr, "%s: unknown option '%s'\n", prog, argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[i], "copy"))
        return vbctl_copy(argc - i, argv + i);
    if (!strcmp(argv[i], "init")) {
        /* format 2 unless --format 1 asks for the old one */
        for (int k = i + 1; k < argc; k++)
            if ((!strcmp(argv[k], "--format") && k + 1 < argc && !strcmp(argv[k + 1], "1")) ||
                !strcmp(argv[k], "--format=1")) {
                optind = 1;
                return cmd_init(argc - i, argv + i);
            }
        if (!repo_path) {
            fprintf(stderr, "%s: init needs --repo LOCATION\n", prog);
            return 2;
        }
        return vbctl_v2_init(repo_path, argc - i, argv + i);
    } else if (!repo_command(argv[i])) {
        /* the daemon's and the image commands: no repository, either format */
    } else if (vbctl_is_v2(repo_path)) {
        /* the v2 door: what vbackupctl does on version 2 repositories so far */
        if (!strcmp(argv[i], "snapshots"))
            return vbctl_v2_snapshots(repo_path, argc - i, argv + i);
        if (!strcmp(argv[i], "show"))
            return vbctl_v2_show(repo_path, argc - i, argv + i);
        if (!strcmp(argv[i], "verify"))
            return vbctl_v2_verify(repo_path, argc - i, argv + i);
        if (!strcmp(argv[i], "key"))
            return vbctl_v2_key(repo_path, argc - i, argv + i);
        /* the commands that run on either format */
        static int (*const both[])(int, char **) = { cmd_backup_disk, cmd_restore_disk,
                                                      cmd_restore_files, cmd_ls, cmd_export,
                                                      cmd_mount, cmd_boot_from };
        static const char *const both_names[] = { "backup-disk", "restore-disk",
                                                  "restore-files", "ls", "export", "mount",
                                                  "boot-from" };
        for (size_t k = 0; k < VB_ARRAY_SIZE(both); k++)
            if (!strcmp(argv[i], both_names[k])) {
                optind = 1;
                return both[k](argc - i, argv + i);
            }
        if (!strcmp(argv[i], "forget"))
            return vbctl_v2_forget(repo_path, argc - i, argv + i);
        if (!strcmp(argv[i], "prune"))
            return vbctl_v2_prune(repo_path, argc - i, argv + i);
        if (!strcmp(argv[i], "gc"))
            return vbctl_v2_gc(repo_path, argc - i, argv + i);
        if (!strcmp(argv[i], "stats"))
            return vbctl_v2_stats(repo_path, argc - i, argv + i);
        if (!strcmp(argv[i], "repair"))
            return vbctl_v2_repair(repo_path, argc - i, argv + i);
        fprintf(stderr, "%s: %s: %s is a version 2 repository, where vbackupctl does init, "
                "backup-disk, restore-disk, restore-files, ls, export, mount, boot-from, snapshots, "
                "show, verify, key, forget, prune, gc, repair, stats and copy so far\n", prog, argv[i], repo_path);
        return 2;
    }
    for (size_t k = 0; k < VB_ARRAY_SIZE(commands); k++) {
        if (!strcmp(argv[i], commands[k].name)) {
            optind = 1;
            return commands[k].fn(argc - i, argv + i);
        }
    }
    fprintf(stderr, "%s: unknown command '%s'\n", prog, argv[i]);
    usage(stderr);
    return 2;
}
