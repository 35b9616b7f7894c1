/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The guest's mount table (/proc/self/mountinfo) as the host needs it to
 * map files itself (docs/freeze.md): where a root lies inside its file
 * system, and which folders under the roots are mount points of other file
 * systems (the host sends them as folders and does not walk into them, as
 * the guest's walk does not cross into another file system).  libc only.
 */
#include "mounts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* mountinfo escapes space, tab, newline and backslash as \ooo */
static char *unescape(const char *s, size_t n)
{
    char *o = malloc(n + 1), *d = o;

    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3' &&
            s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
            *d++ = (char)((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
            i += 3;
        } else {
            *d++ = s[i];
        }
    }
    *d = 0;
    return o;
}

void vbc_mounts_free(struct vbc_mount *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].root);
        free(m[i].point);
    }
    free(m);
}

int vbc_mounts_parse(const char *text, struct vbc_mount **out, size_t *n_out)
{
    struct vbc_mount *v = NULL;
    size_t n = 0, cap = 0;
    const char *line = text;

    while (line && *line) {
        const char *end = strchr(line, '\n'), *f[5];
        size_t len = end ? (size_t)(end - line) : strlen(line), fl[5];
        unsigned maj, mnr;
        const char *p = line, *q = line + len;
        int k = 0;

        /* fields: id parent major:minor root point ... */
        while (k < 5 && p < q) {
            while (p < q && *p == ' ')
                p++;
            f[k] = p;
            while (p < q && *p != ' ')
                p++;
            fl[k] = (size_t)(p - f[k]);
            if (fl[k])
                k++;
        }
        line = end ? end + 1 : NULL;
        if (k < 5 || sscanf(f[2], "%u:%u", &maj, &mnr) != 2)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            struct vbc_mount *nv = realloc(v, nc * sizeof(*nv));

            if (!nv) {
                vbc_mounts_free(v, n);
                return -ENOMEM;
            }
            v = nv;
            cap = nc;
        }
        v[n].major = maj;
        v[n].minor = mnr;
        v[n].root = unescape(f[3], fl[3]);
        v[n].point = unescape(f[4], fl[4]);
        if (!v[n].root || !v[n].point) {
            free(v[n].root);
            free(v[n].point);
            vbc_mounts_free(v, n);
            return -ENOMEM;
        }
        n++;
    }
    *out = v;
    *n_out = n;
    return 0;
}

bool vbc_path_under(const char *p, const char *root)
{
    size_t l = strlen(root);

    if (!strcmp(root, "/"))
        return p[0] == '/';
    return !strncmp(p, root, l) && (p[l] == 0 || p[l] == '/');
}

int vbc_mount_of(const struct vbc_mount *m, size_t n, unsigned major, unsigned minor,
                 const char *abs)
{
    int best = -1;
    size_t bl = 0;

    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(m[i].point);

        if (m[i].major != major || m[i].minor != minor || !vbc_path_under(abs, m[i].point))
            continue;
        /* the longest mount point; of equals, the later: it is mounted on top */
        if (best < 0 || l >= bl) {
            best = (int)i;
            bl = l;
        }
    }
    return best;
}

char *vbc_mount_inside(const struct vbc_mount *mt, const char *abs)
{
    const char *below = strcmp(mt->point, "/") ? abs + strlen(mt->point) : abs;
    const char *root = mt->root;
    size_t rl, bl;
    char *o;

    while (*root == '/')
        root++;
    while (*below == '/')
        below++;
    rl = strlen(root);
    bl = strlen(below);
    if (!(o = malloc(rl + bl + 2)))
        return NULL;
    memcpy(o, root, rl);
    if (rl && bl)
        o[rl++] = '/';
    memcpy(o + rl, below, bl + 1);
    return o;
}
