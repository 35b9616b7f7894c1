/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The semantics of store.h as test cases every backend runs: a local folder
 * (test-repo-store-local.c) and S3 against radosgw (test-repo-store-s3.c).
 * Each case gets a fresh, empty store from the backend's open function.
 */
#ifndef VB_TEST_STORE_CONFORMANCE_H
#define VB_TEST_STORE_CONFORMANCE_H

#include <stdbool.h>

#include "store.h"

struct vb_conformance {
    const char *path;                          /* GTest path prefix */
    struct vb_store *(*open)(void *opaque);    /* a fresh, empty store */
    void (*close)(struct vb_store *s, void *opaque);
    void *opaque;
};

/* Add every case under c->path ("/PATH/CASE"); c must outlive the run. */
void vb_conformance_add(const struct vb_conformance *c);

#endif
