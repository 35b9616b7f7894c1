/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Repair: damage heals.  Under the exclusive lock (no backup, restore or
 * other maintenance runs), every chunk the snapshots reference is read and
 * checked (as verify does); each damaged chunk is set aside as <id>.bad, so
 * that it counts as missing; and the gc generation moves on, so that no
 * backup takes a parent snapshot's chunks for granted without looking them
 * up.  The next backup that has the data of a missing chunk stores it
 * again, and the snapshots that need it verify again.  A damaged gc.json is
 * rebuilt.  What cannot be healed by a backup (a snapshot whose own index is
 * damaged) is named.  docs/repository.md, "Damage and repair".
 */
#ifndef VB_REPAIR_H
#define VB_REPAIR_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "repo.h"

struct vb_repair_result {
    uint64_t snapshots, chunks;
    uint64_t chunks_set_aside;       /* damaged: moved to <id>.bad */
    uint64_t chunks_missing;         /* absent already */
    uint64_t snapshots_waiting;      /* need a chunk a backup has to store again */
    uint64_t snapshots_unreadable;   /* index damaged: no backup can heal them */
    bool generation_moved, generation_rebuilt;
    uint64_t generation;
    /* {"set_aside":[{chunk, error, kept_as}], "missing":[{chunk, error}],
     *  "waiting":[snapshot ids], "unreadable":[{snapshot, error}]} */
    json_object *report;
};

/* r opened with VB_LOCK_EXCLUSIVE.  dry_run: find and report, change nothing. */
int vb_repair(struct vb_repo *r, bool dry_run, int threads, bool progress,
              struct vb_repair_result *res, vb_error *e);

#endif
