/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "names.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static const struct {
    enum vb_obj_kind kind;
    const char *prefix;      /* listing prefix */
    unsigned id_len;         /* bytes of id in the name, 0: fixed name */
} kinds[] = {
    { VB_OBJ_CONFIG, "config", 0 },
    { VB_OBJ_KEY, "keys/", 16 },
    { VB_OBJ_PACK, "data/", 32 },
    { VB_OBJ_INDEX, "index/", 32 },
    { VB_OBJ_SNAPSHOT, "snapshots/", 16 },
    { VB_OBJ_LEASE, "leases/", 16 },
    { VB_OBJ_CONDEMNED, "gc/condemned-", 16 },
    { VB_OBJ_LOCK, "locks/maintenance", 0 },
};

const char *vb_obj_prefix(enum vb_obj_kind k)
{
    for (size_t i = 0; i < VB_ARRAY_SIZE(kinds); i++)
        if (kinds[i].kind == k)
            return kinds[i].prefix;
    return NULL;
}

void vb_obj_name(enum vb_obj_kind k, const uint8_t *id, char *out)
{
    char hex[2 * VB_OBJ_ID_LEN + 1];

    for (size_t i = 0; i < VB_ARRAY_SIZE(kinds); i++) {
        if (kinds[i].kind != k)
            continue;
        if (!kinds[i].id_len) {
            snprintf(out, VB_OBJ_NAME_MAX, "%s", kinds[i].prefix);
            return;
        }
        vb_hex(id, kinds[i].id_len, hex);
        if (k == VB_OBJ_PACK)
            snprintf(out, VB_OBJ_NAME_MAX, "data/%.2s/%s", hex, hex);
        else
            snprintf(out, VB_OBJ_NAME_MAX, "%s%s", kinds[i].prefix, hex);
        return;
    }
    out[0] = 0;
}

int vb_obj_parse(const char *name, enum vb_obj_kind *k, uint8_t id[VB_OBJ_ID_LEN])
{
    for (size_t i = 0; i < VB_ARRAY_SIZE(kinds); i++) {
        const char *p = kinds[i].prefix, *rest;
        size_t pl = strlen(p);

        if (strncmp(name, p, pl))
            continue;
        rest = name + pl;
        if (!kinds[i].id_len) {
            if (*rest)
                continue;
            *k = kinds[i].kind;
            return 0;
        }
        if (kinds[i].kind == VB_OBJ_PACK) {
            /* data/ab/ab...: the folder repeats the id's first two digits */
            if (strlen(rest) != 3 + 64 || rest[2] != '/' || strncmp(rest, rest + 3, 2))
                return -EINVAL;
            rest += 3;
        }
        if (strlen(rest) != 2 * kinds[i].id_len)
            return -EINVAL;
        for (const char *c = rest; *c; c++)
            if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
                return -EINVAL;
        if (vb_unhex(rest, id, kinds[i].id_len))
            return -EINVAL;
        *k = kinds[i].kind;
        return 0;
    }
    return -EINVAL;
}

bool vb_obj_name_valid(const char *name)
{
    size_t n = strlen(name), comp = 0;

    if (!n || n >= VB_OBJ_NAME_MAX || name[0] == '/')
        return false;
    for (size_t i = 0; i <= n; i++) {
        char c = name[i];
        if (i == n || c == '/') {
            if (comp == 0 || (comp == 1 && name[i - 1] == '.') ||
                (comp == 2 && name[i - 1] == '.' && name[i - 2] == '.'))
                return false;
            comp = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return false;
        comp++;
    }
    return true;
}
