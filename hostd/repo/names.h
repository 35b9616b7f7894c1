/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Object names of a version 2 repository (docs/repository-v2.md), made and
 * checked in one place.  The store sees opaque names; only hostd/repo/
 * knows what they mean.
 */
#ifndef VB_REPO_NAMES_H
#define VB_REPO_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VB_REPO_V2           2
#define VB_OBJ_ID_LEN        32        /* pack and index ids: SHA-256 */
#define VB_OBJ_NAME_MAX      128

enum vb_obj_kind {
    VB_OBJ_CONFIG = 1,   /* config */
    VB_OBJ_KEY,          /* keys/<32 hex> */
    VB_OBJ_PACK,         /* data/<2 hex>/<64 hex> */
    VB_OBJ_INDEX,        /* index/<64 hex> */
    VB_OBJ_SNAPSHOT,     /* snapshots/<32 hex> */
    VB_OBJ_LEASE,        /* leases/<32 hex> */
    VB_OBJ_CONDEMNED,    /* gc/condemned-<32 hex> */
    VB_OBJ_LOCK,         /* locks/maintenance */
};

/* The folder prefix listed to find objects of a kind ("data/", "index/"...). */
const char *vb_obj_prefix(enum vb_obj_kind k);
/* Name of an object; id is 32 bytes for packs and indexes, 16 for the
 * random ids of keys, snapshots, leases and condemned lists, unused for
 * config and the lock.  out holds VB_OBJ_NAME_MAX bytes. */
void vb_obj_name(enum vb_obj_kind k, const uint8_t *id, char *out);
/* Parse a name found by a listing: its kind and id (32 or 16 bytes into id,
 * which holds 32).  Returns 0, or -EINVAL for a name that is not one of
 * ours (a listing reports it; nothing acts on it). */
int vb_obj_parse(const char *name, enum vb_obj_kind *k, uint8_t id[VB_OBJ_ID_LEN]);
/* A name the store may be asked for: [a-z0-9._/-], no empty, "." or ".."
 * component, no leading '/', at most VB_OBJ_NAME_MAX - 1 bytes. */
bool vb_obj_name_valid(const char *name);

#endif
