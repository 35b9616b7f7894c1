/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The command line shared by `vbackup` (guest) and `vbclient` (host test
 * client): commands backup, restore, list, status, cancel, backup-disk.
 * Exit status: 0 success, 1 failure, 2 usage, 3 incomplete (done, but some
 * entries or attributes could not be backed up or restored; each listed).
 */
#include "vbc.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum cmd { C_NONE, C_BACKUP, C_RESTORE, C_LIST, C_STATUS, C_CANCEL, C_DISK };

#define M(c) (1u << (c))
#define ALL (M(C_BACKUP) | M(C_RESTORE) | M(C_LIST) | M(C_STATUS) | M(C_CANCEL) | M(C_DISK))

enum {
    O_TO = 1001, O_MODE, O_EXCLUDE, O_FREEZE_TIMEOUT, O_NO_FREEZE, O_FROM, O_SNAPSHOT, O_INTO,
    O_DUMP, O_DUMP_FREEZE_MS, O_FALLBACK_ALL, O_FALLBACK, O_HOOKS, O_SPARSE, O_NO_SPARSE,
    O_NO_HOST_MAP,
};

static const struct {
    struct option o;
    unsigned cmds;
} common[] = {
    { { "device", required_argument, NULL, 'd' }, ALL },
    { { "quiet", no_argument, NULL, 'q' }, ALL },
    { { "help", no_argument, NULL, 'h' }, ALL },
    { { "version", no_argument, NULL, 'V' }, ALL },
    { { "to", required_argument, NULL, O_TO }, M(C_BACKUP) | M(C_DISK) },
    { { "mode", required_argument, NULL, O_MODE }, M(C_BACKUP) | M(C_DISK) },
    { { "exclude", required_argument, NULL, O_EXCLUDE }, M(C_BACKUP) },
    { { "freeze-timeout", required_argument, NULL, O_FREEZE_TIMEOUT }, M(C_BACKUP) | M(C_DISK) },
    { { "no-freeze", no_argument, NULL, O_NO_FREEZE }, M(C_BACKUP) | M(C_DISK) },
    { { "no-host-map", no_argument, NULL, O_NO_HOST_MAP }, M(C_BACKUP) },
    { { "hooks", required_argument, NULL, O_HOOKS }, M(C_BACKUP) | M(C_DISK) },
    { { "from", required_argument, NULL, O_FROM }, M(C_RESTORE) | M(C_LIST) },
    { { "snapshot", required_argument, NULL, O_SNAPSHOT }, M(C_RESTORE) },
    { { "into", required_argument, NULL, O_INTO }, M(C_RESTORE) },
    { { "sparse", no_argument, NULL, O_SPARSE }, M(C_RESTORE) },
    { { "no-sparse", no_argument, NULL, O_NO_SPARSE }, M(C_RESTORE) },
    { { "dump", required_argument, NULL, O_DUMP }, M(C_BACKUP) },
    { { "dump-freeze-ms", required_argument, NULL, O_DUMP_FREEZE_MS }, M(C_BACKUP) },
    { { "fallback-all", no_argument, NULL, O_FALLBACK_ALL }, M(C_BACKUP) },
    { { "fallback", required_argument, NULL, O_FALLBACK }, M(C_BACKUP) },
};
#define N_COMMON (sizeof(common) / sizeof(common[0]))

static void usage(const struct vbc_tool *t, FILE *f)
{
    fprintf(f,
"Usage:\n"
"  %1$s backup PATH... --to TARGET [--mode full|incremental|differential]\n"
"         [--exclude PATTERN]... [--freeze-timeout SEC] [--no-freeze] [--no-host-map]\n"
"  %1$s restore [PATH...] --from TARGET [--snapshot ID|latest] [--into DIR]\n"
"         [--sparse|--no-sparse]\n"
"  %1$s list [--from TARGET]\n"
"  %1$s status [JOB]\n"
"  %1$s cancel JOB\n"
"  %1$s backup-disk --to TARGET [--mode full|incremental|differential]\n"
"         SERIAL_OR_DEVICE\n"
"\n"
"Common options:\n"
"  --device PATH        the vbackup device or a vbackupd socket\n"
"                       (default $VBACKUP_DEVICE, else /dev/vbackup)\n"
"  -q, --quiet          no progress, no summary (errors only; backup still\n"
"                       prints the snapshot id)\n"
"  -h, --help           this text\n"
"  -V, --version        the version\n"
"\n"
"Backup options:\n"
"  --mode MODE          full, incremental (default) or differential\n"
"  --exclude PATTERN    skip entries whose full path or name matches the\n"
"                       glob (repeatable)\n"
"  --freeze-timeout SEC longest freeze of the file systems (default 30)\n"
"  --no-freeze          do not freeze (UNSAFE: files may change while the\n"
"                       host reads them)\n"
"  --hooks DIR          fsfreeze hooks in DIR (default /etc/vbackup)\n"
"  --no-host-map        map the files in the guest, frozen meanwhile, even where\n"
"                       the host could map them in its view after a short freeze\n"
"\n"
"Restore options:\n"
"  --sparse             4 KiB blocks of zeros become holes, as cp --sparse=always\n"
"                       (the default); holes and preallocated space are kept\n"
"                       either way\n"
"  --no-sparse          write zeros that were written\n"
"\n"
"Testing aids:\n"
"  --dump FILE          write the records as JSON lines to FILE ('-': stdout)\n"
"                       instead of sending them (no device needed)\n"
"  --dump-freeze-ms N   with --dump: freeze, and hold the freeze N ms\n"
"  --fallback-all       send every regular file's data through the device\n"
"  --fallback GLOB      the same for files matching GLOB (repeatable)\n"
"%2$s"
"\n"
"Exit status: 0 success, 1 failure, 2 usage error, 3 incomplete: done, but\n"
"some entries or attributes could not be backed up or restored (each is\n"
"listed; the snapshot says so too).\n",
            t->name, t->usage_extra ? t->usage_extra : "");
}

static int usage_error(const struct vbc_tool *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const struct vbc_tool *t, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", t->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", t->name);
    return 2;
}

static enum cmd parse_cmd(const char *s)
{
    static const struct { const char *name; enum cmd c; } t[] = {
        { "backup", C_BACKUP }, { "restore", C_RESTORE }, { "list", C_LIST },
        { "status", C_STATUS }, { "cancel", C_CANCEL }, { "backup-disk", C_DISK },
    };

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strcmp(s, t[i].name) == 0)
            return t[i].c;
    return C_NONE;
}

static bool parse_u64(const char *s, uint64_t *v)
{
    char *end;

    errno = 0;
    if (!*s || *s == '-')
        return false;
    *v = strtoull(s, &end, 10);
    return !errno && !*end;
}

static void fmt_time(char *buf, size_t len, int64_t ns)
{
    time_t t = (time_t)(ns / 1000000000);
    struct tm tm;

    if (ns <= 0 || !gmtime_r(&t, &tm))
        snprintf(buf, len, "-");
    else
        strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

/* ---- list, status, cancel ------------------------------------------------------- */

static int cmd_list(const char *device, const char *target)
{
    struct vbc_conn *c = NULL;
    struct vbc_err e = { 0 };
    struct vbc_hello h;
    struct vbc_snap *s;
    size_t n;

    if (vbc_connect(device, &c, &e) || vbc_hello(c, vbc_prog, &h, &e) ||
        vbc_list(c, target, &s, &n, &e)) {
        if (!target && e.code == VB_S_BAD_REQUEST)
            vbc_error("list failed: %s (name the target with --from TARGET)", e.msg);
        else
            vbc_error("list failed: %s", e.msg);
        vbc_disconnect(c);
        return 1;
    }
    vbc_disconnect(c);
    if (!n) {
        if (!vbc_quiet)
            fprintf(stderr, "%s: no snapshots%s%s\n", vbc_prog, target ? " in " : "",
                    target ? target : "");
        return 0;
    }
    printf("%-40s  %-19s  %-5s  %-12s  %9s  %10s  %s\n", "ID", "CREATED (UTC)", "KIND", "MODE",
           "FILES", "SIZE", "ROOTS");
    for (size_t i = 0; i < n; i++) {
        char when[32], size[32];

        fmt_time(when, sizeof(when), s[i].created_ns);
        vbc_human(size, sizeof(size), s[i].bytes);
        printf("%-40s  %-19s  %-5s  %-12s  %9" PRIu64 "  %10s  ", s[i].id, when,
               vbc_kind_name(s[i].kind), vbc_mode_name(s[i].mode), s[i].files, size);
        if (s[i].kind == VB_KIND_DISK) {
            printf("%s\n", s[i].roots[0] ? s[i].roots : "-");
            continue;
        }
        for (char *p = s[i].roots, *q; p; p = q) {
            q = strchr(p, '\n');
            if (q)
                *q++ = 0;
            printf("/%s%s", p, q ? " " : "");
        }
        printf("%s\n", s[i].flags & VB_SNAP_INCOMPLETE ? "  (incomplete)" : "");
    }
    vbc_snaps_free(s, n);
    return 0;
}

static int cmd_status(const char *device, uint64_t job)
{
    struct vbc_conn *c = NULL;
    struct vbc_err e = { 0 };
    struct vbc_hello h;
    struct vbc_job *v;
    size_t n;

    if (vbc_connect(device, &c, &e) || vbc_hello(c, vbc_prog, &h, &e) ||
        vbc_status(c, job, &v, &n, &e)) {
        vbc_error("status failed: %s", e.msg);
        vbc_disconnect(c);
        return 1;
    }
    vbc_disconnect(c);
    if (!n) {
        free(v);
        if (job) {
            vbc_error("status failed: no job %" PRIu64, job);
            return 1;
        }
        if (!vbc_quiet)
            fprintf(stderr, "%s: no jobs\n", vbc_prog);
        return 0;
    }
    printf("%-12s  %-10s  %-5s  %-12s  %-19s  %21s  %13s  %s\n", "JOB", "STATE", "KIND", "MODE",
           "STARTED (UTC)", "BYTES", "FILES", "SNAPSHOT / REASON");
    for (size_t i = 0; i < n; i++) {
        char when[32], d[32], t[32], bytes[80], files[64];

        fmt_time(when, sizeof(when), v[i].started_ns);
        vbc_human(d, sizeof(d), v[i].bytes_done);
        vbc_human(t, sizeof(t), v[i].bytes_total);
        snprintf(bytes, sizeof(bytes), "%s/%s", d, t);
        snprintf(files, sizeof(files), "%" PRIu64 "/%" PRIu64, v[i].files_done,
                 v[i].files_total);
        printf("%-12" PRIu64 "  %-10s  %-5s  %-12s  %-19s  %21s  %13s  %s%s%s%s\n", v[i].job,
               vbc_state_name(v[i].state), vbc_kind_name(v[i].kind), vbc_mode_name(v[i].mode),
               when, bytes, files, v[i].snapshot, v[i].snapshot[0] && v[i].reason[0] ? " " : "",
               v[i].reason, v[i].flags & VB_JOB_FLAG_INCOMPLETE ? " (incomplete)" : "");
    }
    free(v);
    return 0;
}

static int cmd_cancel(const char *device, uint64_t job)
{
    struct vbc_conn *c = NULL;
    struct vbc_err e = { 0 };
    struct vbc_hello h;

    if (vbc_connect(device, &c, &e) || vbc_hello(c, vbc_prog, &h, &e) ||
        vbc_cancel(c, job, &e)) {
        vbc_error("cancel failed: %s", e.msg);
        vbc_disconnect(c);
        return 1;
    }
    vbc_disconnect(c);
    if (!vbc_quiet)
        printf("job %" PRIu64 " cancelled\n", job);
    return 0;
}

/* ---- main ----------------------------------------------------------------------------- */

static int add_str(char ***v, size_t *n, const char *s)
{
    char **nv = realloc(*v, (*n + 1) * sizeof(**v));

    if (!nv)
        return -ENOMEM;
    *v = nv;
    nv[(*n)++] = (char *)s;
    return 0;
}

static void backup_opts_clear(struct vbc_backup_opts *o)
{
    for (size_t i = 0; i < o->n_serials; i++)
        free(o->serials[i]);
    free(o->roots_rel);
    free(o->exclude);
    free(o->fallback_glob);
    vbc_map_clear(&o->map);
}

#define USAGE(...) do { rc = usage_error(t, __VA_ARGS__); goto out; } while (0)

int vbc_main(int argc, char **argv, const struct vbc_tool *t)
{
    struct option *opts;
    size_t n_extra = 0, k = 0;
    struct vbc_backup_opts bo;
    struct vbc_restore_opts ro;
    const char *device = NULL, *from = NULL;
    unsigned seen_cmds_mask[64] = { 0 };
    const char *seen_name[64] = { 0 };
    size_t n_seen = 0;
    enum cmd cmd;
    char **args = NULL, **abs_paths = NULL;
    size_t n_args = 0;
    int c, rc = 0;

    vbc_prog = t->name;
    memset(&bo, 0, sizeof(bo));
    memset(&ro, 0, sizeof(ro));
    bo.mode = VB_MODE_INCREMENTAL;
    bo.freeze_timeout = VBC_DEFAULT_FREEZE_S;

    while (t->options && t->options[n_extra].name)
        n_extra++;
    opts = calloc(N_COMMON + n_extra + 1, sizeof(*opts));
    if (!opts)
        return 1;
    for (size_t i = 0; i < N_COMMON; i++)
        opts[k++] = common[i].o;
    for (size_t i = 0; i < n_extra; i++)
        opts[k++] = t->options[i];

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":d:qhV", opts, NULL)) != -1) {
        int idx = -1;

        for (size_t i = 0; i < N_COMMON; i++)
            if (common[i].o.val == c)
                idx = (int)i;
        if (idx >= 0 && n_seen < 64) {
            seen_cmds_mask[n_seen] = common[idx].cmds;
            seen_name[n_seen++] = common[idx].o.name;
        }
        switch (c) {
        case 'd': device = optarg; break;
        case 'q': vbc_quiet = 1; break;
        case 'h':
            usage(t, stdout);
            goto out;
        case 'V':
            printf("%s %s (protocol %u)\n", t->name, VBC_VERSION, VB_PROTO_VERSION);
            goto out;
        case O_TO: bo.target = optarg; break;
        case O_MODE:
            if (strcmp(optarg, "full") == 0)
                bo.mode = VB_MODE_FULL;
            else if (strcmp(optarg, "incremental") == 0)
                bo.mode = VB_MODE_INCREMENTAL;
            else if (strcmp(optarg, "differential") == 0)
                bo.mode = VB_MODE_DIFFERENTIAL;
            else
                USAGE("--mode must be full, incremental or differential, not '%s'", optarg);
            break;
        case O_EXCLUDE:
            if (add_str(&bo.exclude, &bo.n_exclude, optarg)) {
                rc = 1;
                goto out;
            }
            break;
        case O_FREEZE_TIMEOUT: {
            char *end;

            bo.freeze_timeout = strtod(optarg, &end);
            if (*end || !(bo.freeze_timeout > 0) || bo.freeze_timeout > 86400)
                USAGE("--freeze-timeout: seconds, more than 0");
            break;
        }
        case O_NO_FREEZE: bo.no_freeze = true; break;
        case O_NO_HOST_MAP: bo.no_host_map = true; break;
        case O_HOOKS: bo.hooks_dir = optarg; break;
        case O_FROM: from = optarg; break;
        case O_SNAPSHOT: ro.snapshot = optarg; break;
        case O_INTO: ro.into = optarg; break;
        case O_SPARSE: ro.no_sparse = false; break;
        case O_NO_SPARSE: ro.no_sparse = true; break;
        case O_DUMP: bo.dump = optarg; break;
        case O_DUMP_FREEZE_MS: {
            uint64_t v;

            if (!parse_u64(optarg, &v) || v > 3600000)
                USAGE("--dump-freeze-ms: milliseconds");
            bo.dump_freeze_ms = (unsigned)v;
            break;
        }
        case O_FALLBACK_ALL: bo.fallback_all = true; break;
        case O_FALLBACK:
            if (add_str(&bo.fallback_glob, &bo.n_fallback_glob, optarg)) {
                rc = 1;
                goto out;
            }
            break;
        case ':':
            USAGE("option '%s' needs a value", argv[optind - 1]);
        case '?':
            USAGE("unknown option '%s'", argv[optind - 1]);
        default:
            if (!t->option || (rc = t->option(c, optarg)) != 0) {
                if (rc != 2)
                    USAGE("bad option");
                rc = 2;
                goto out;
            }
        }
    }
    if (optind >= argc)
        USAGE("no command given");
    cmd = parse_cmd(argv[optind]);
    if (cmd == C_NONE) {
        if (strcmp(argv[optind], "help") == 0) {
            usage(t, stdout);
            goto out;
        }
        USAGE("unknown command '%s'", argv[optind]);
    }
    for (size_t i = 0; i < n_seen; i++)
        if (!(seen_cmds_mask[i] & M(cmd)))
            USAGE("--%s does not apply to '%s'", seen_name[i], argv[optind]);
    for (int i = optind + 1; i < argc; i++) {
        if (add_str(&args, &n_args, argv[i])) {
            rc = 1;
            goto out;
        }
    }

    vbc_signals_init();

    switch (cmd) {
    case C_BACKUP: {
        const struct vbc_source_ops *ops;
        void *src;

        if (!n_args)
            USAGE("backup: name the paths to back up");
        if (!bo.target && !bo.dump)
            USAGE("backup: --to TARGET is required");
        if (bo.dump_freeze_ms && !bo.dump)
            USAGE("--dump-freeze-ms needs --dump");
        bo.paths = args;
        bo.n_paths = n_args;
        if ((rc = t->source(&bo, &ops, &src)) != 0)
            goto out;
        rc = vbc_backup(device, &bo, ops, src);
        t->source_free(src);
        break;
    }
    case C_DISK: {
        const struct vbc_source_ops *ops = NULL;
        void *src = NULL;
        char serial[256];
        struct vbc_err e = { 0 };

        if (n_args != 1)
            USAGE("backup-disk: name one disk (serial or device)");
        if (!bo.target)
            USAGE("backup-disk: --to TARGET is required");
        if (t->disk_serial(args[0], serial, sizeof(serial), &e)) {
            vbc_error("backup failed: %s", e.msg);
            rc = 1;
            goto out;
        }
        if (t->disk_source &&
            t->disk_source(args[0], bo.no_freeze, bo.freeze_timeout, bo.hooks_dir, &ops, &src)) {
            vbc_error("backup failed: out of memory");
            rc = 1;
            goto out;
        }
        rc = vbc_backup_disk(device, bo.target, serial, bo.mode, ops, src);
        if (src)
            t->source_free(src);
        break;
    }
    case C_RESTORE: {
        char cwd[PATH_MAX];
        bool everything = false;

        if (!from)
            USAGE("restore: --from TARGET is required");
        if (!n_args && !ro.into)
            USAGE("restore: name the paths to restore in place (or give --into DIR for the "
                  "whole snapshot)");
        if (n_args > VB_MAX_ROOTS)
            USAGE("restore: at most %u paths", VB_MAX_ROOTS);
        if (t->paths_from_cwd && !getcwd(cwd, sizeof(cwd))) {
            vbc_error("getcwd: %s", strerror(errno));
            rc = 1;
            goto out;
        }
        ro.paths = calloc(n_args ? n_args : 1, sizeof(char *));
        abs_paths = calloc(n_args ? n_args : 1, sizeof(char *));
        if (!ro.paths || !abs_paths) {
            rc = 1;
            goto out;
        }
        for (size_t i = 0; i < n_args; i++) {
            char *abs = vbc_abspath(t->paths_from_cwd ? cwd : NULL, args[i]);

            if (!abs) {
                rc = 1;
                goto out;
            }
            abs_paths[i] = abs;
            if (!vbc_path_valid(abs + 1, strlen(abs + 1), true))
                USAGE("restore: '%s' is not a valid path", args[i]);
            if (!abs[1])
                everything = true;
            ro.paths[ro.n_paths++] = abs + 1;
        }
        if (everything)
            ro.n_paths = 0;          /* "/" is the whole snapshot */
        ro.target = from;
        rc = vbc_restore(device, &ro);
        break;
    }
    case C_LIST:
        if (n_args)
            USAGE("list takes no arguments");
        rc = cmd_list(device, from);
        break;
    case C_STATUS: {
        uint64_t job = 0;

        if (n_args > 1 || (n_args == 1 && !parse_u64(args[0], &job)))
            USAGE("status [JOB]: JOB is a number");
        rc = cmd_status(device, job);
        break;
    }
    case C_CANCEL: {
        uint64_t job;

        if (n_args != 1 || !parse_u64(args[0], &job) || job == 0)
            USAGE("cancel JOB: JOB is a number");
        rc = cmd_cancel(device, job);
        break;
    }
    default:
        rc = 2;
    }
out:
    fflush(stdout);
    free(opts);
    free(args);
    for (size_t i = 0; abs_paths && i < n_args; i++)
        free(abs_paths[i]);
    free(abs_paths);
    free(ro.paths);
    backup_opts_clear(&bo);
    return rc;
}
