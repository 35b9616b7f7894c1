/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What one VM can make vbackupd hold.  Every allocation whose size a guest
 * decides (the entries and extents it sends, its fallback data, the plans
 * and catalogs of its jobs, decoded chunks of its restores, replies waiting
 * for its connections) is counted against the VM's vm_memory, by kind.  A
 * job's share is counted in the job too, so that whatever ends the job
 * gives back exactly what it took (vbd_job_release, and the last reference).
 * A request that would go over the limit fails its job with a clear reason;
 * replies are counted but never refused (the connection stops being read
 * instead, vm.c).  docs/threat-model.md, "What one VM can make the host
 * spend".
 */
#include "vbackupd.h"

#include <stdio.h>
#include <string.h>

static const char *const kind_names[VBD_MEM__N] = {
    [VBD_MEM_FILES] = "files",
    [VBD_MEM_FALLBACK] = "fallback",
    [VBD_MEM_PLAN] = "plans",
    [VBD_MEM_CATALOG] = "catalogs",
    [VBD_MEM_RESTORE] = "restore",
    [VBD_MEM_REPLIES] = "replies",
};

static uint64_t limit_of(const struct vbd_vm *vm)
{
    return vm->d->cfg->vm_memory;
}

static void add(struct vbd_vm *vm, enum vbd_mem k, uint64_t n)
{
    vm->d->mem_used += n;
    vm->mem[k] += n;
    vm->mem_used += n;
    if (vm->mem_used > vm->mem_peak)
        vm->mem_peak = vm->mem_used;
}

static void sub(struct vbd_vm *vm, enum vbd_mem k, uint64_t n)
{
    g_assert(vm->mem[k] >= n && vm->mem_used >= n);
    vm->d->mem_used -= n;
    vm->mem[k] -= n;
    vm->mem_used -= n;
}

uint64_t vbd_mem_total(const struct vbd *d)
{
    return d->mem_used;
}

uint64_t vbd_mem_room(const struct vbd_vm *vm)
{
    uint64_t lim = limit_of(vm);

    return vm->mem_used < lim ? lim - vm->mem_used : 0;
}

int vbd_mem_take(struct vbd_job *j, enum vbd_mem k, uint64_t n)
{
    if (n > vbd_mem_room(j->vm))
        return -ENOMEM;
    add(j->vm, k, n);
    j->mem[k] += n;
    return 0;
}

void vbd_mem_give(struct vbd_job *j, enum vbd_mem k, uint64_t n)
{
    n = VB_MIN(n, j->mem[k]);
    j->mem[k] -= n;
    sub(j->vm, k, n);
}

void vbd_mem_give_all(struct vbd_job *j, enum vbd_mem k)
{
    vbd_mem_give(j, k, j->mem[k]);
}

void vbd_mem_force(struct vbd_vm *vm, enum vbd_mem k, int64_t delta)
{
    if (delta >= 0)
        add(vm, k, (uint64_t)delta);
    else
        sub(vm, k, (uint64_t)-delta);
}

void vbd_mem_reason(struct vbd_vm *vm, char *out, size_t len, const char *what)
{
    char lim[32];

    snprintf(out, len, "VM %s: %s would exceed the VM's memory limit on the host "
             "(vm_memory = %s)", vm->name, what, vb_fmt_bytes(limit_of(vm), lim, sizeof(lim)));
}

void vbd_mem_fail(struct vbd_job *j, const char *what)
{
    char why[sizeof(j->reason)];

    vbd_mem_reason(j->vm, why, sizeof(why), what);
    vbd_job_fail(j, VB_JOB_FAILED, "%s", why);
}

json_object *vbd_mem_json(const struct vbd_vm *vm)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "in_use", json_object_new_int64((int64_t)vm->mem_used));
    json_object_object_add(o, "limit", json_object_new_int64((int64_t)limit_of(vm)));
    json_object_object_add(o, "peak", json_object_new_int64((int64_t)vm->mem_peak));
    for (int k = 0; k < VBD_MEM__N; k++)
        json_object_object_add(o, kind_names[k], json_object_new_int64((int64_t)vm->mem[k]));
    return o;
}
