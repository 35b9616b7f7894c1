/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests: object names of a version 2 repository (hostd/repo/names.c). */
#include <glib.h>
#include <string.h>

#include "names.h"

static void test_roundtrip(void)
{
    static const enum vb_obj_kind ks[] = { VB_OBJ_CONFIG, VB_OBJ_KEY, VB_OBJ_PACK, VB_OBJ_INDEX,
                                           VB_OBJ_SNAPSHOT, VB_OBJ_LEASE, VB_OBJ_CONDEMNED,
                                           VB_OBJ_LOCK };
    uint8_t id[VB_OBJ_ID_LEN], got[VB_OBJ_ID_LEN];
    char name[VB_OBJ_NAME_MAX];
    enum vb_obj_kind k;

    for (size_t i = 0; i < sizeof(id); i++)
        id[i] = (uint8_t)(i * 37 + 11);
    for (size_t i = 0; i < G_N_ELEMENTS(ks); i++) {
        vb_obj_name(ks[i], id, name);
        g_assert_true(vb_obj_name_valid(name));
        g_assert_true(g_str_has_prefix(name, vb_obj_prefix(ks[i])));
        memset(got, 0, sizeof(got));
        g_assert_cmpint(vb_obj_parse(name, &k, got), ==, 0);
        g_assert_cmpint(k, ==, ks[i]);
        if (ks[i] == VB_OBJ_PACK || ks[i] == VB_OBJ_INDEX)
            g_assert_true(memcmp(got, id, 32) == 0);
        else if (ks[i] != VB_OBJ_CONFIG && ks[i] != VB_OBJ_LOCK)
            g_assert_true(memcmp(got, id, 16) == 0);
    }
    vb_obj_name(VB_OBJ_PACK, id, name);
    g_assert_cmpstr(name, ==, "data/0b/0b30557a9fc4e90e33587da2c7ec11365b80a5caef14395e83a8cdf2173c6186");
}

static void test_foreign_names(void)
{
    static const char *bad[] = {
        "data/0b/0c30557aa5c0eb16414c6d98b8d2fd2427e3092c4f537c8aa5c0eb16414c6d98", /* folder */
        "data/0b/0b30557aa5c0eb16414c6d98b8d2fd2427e3092c4f537c8aa5c0eb16414c6d9", /* short */
        "index/0B30557AA5C0EB16414C6D98B8D2FD2427E3092C4F537C8AA5C0EB16414C6D98",  /* case */
        "snapshots/.tmp-1", "keys/", "configs", "locks/maintenance.tmp", "leases/zz",
    };
    uint8_t id[VB_OBJ_ID_LEN];
    enum vb_obj_kind k;

    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
        g_assert_cmpint(vb_obj_parse(bad[i], &k, id), ==, -EINVAL);
}

static void test_valid(void)
{
    static const char *bad[] = { "", "/config", "a//b", "a/./b", "../x", "a/..", "A", "a b",
                                 "a\nb", "data/", "x/.", "\xc3\xa9" };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
        g_assert_false(vb_obj_name_valid(bad[i]));
    g_assert_true(vb_obj_name_valid("data/ab/cd.tmp-1_x"));
    g_assert_true(vb_obj_name_valid("..a/b.."));
    char longname[VB_OBJ_NAME_MAX + 1];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[VB_OBJ_NAME_MAX] = 0;
    g_assert_false(vb_obj_name_valid(longname));
    longname[VB_OBJ_NAME_MAX - 1] = 0;
    g_assert_true(vb_obj_name_valid(longname));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/repo-names/roundtrip", test_roundtrip);
    g_test_add_func("/repo-names/foreign", test_foreign_names);
    g_test_add_func("/repo-names/valid", test_valid);
    return g_test_run();
}
