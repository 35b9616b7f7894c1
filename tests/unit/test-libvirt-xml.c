/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A libvirt domain's XML as vbackupd reads it (hostd/vbackupd/libvirt.c),
 * without a libvirtd: the VM's disks have the format of their <driver
 * type=...>; a disk without one is refused with a log line saying why, never
 * probed; a format vbackup cannot read is left out.  libvirt.c is compiled
 * into this test (its parser is static); the three daemon functions it
 * calls are stubs here.
 */
#include "../../hostd/vbackupd/libvirt.c"

#include <stdarg.h>

static GString *logged;

void vbd_log(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_string_append_vprintf(logged, fmt, ap);
    va_end(ap);
    g_string_append_c(logged, '\n');
}

void vbd_vm_cfg_free(gpointer p)
{
    struct vbd_vm_cfg *v = p;

    g_free(v->name);
    g_free(v->socket);
    g_free(v->qmp);
    g_free(v->libvirt);
    g_ptr_array_free(v->disks, TRUE);
    g_free(v);
}

int vbd_vms_refresh(struct vbd *d, vb_error *e)
{
    return 0;
}

#define DISK(driver, file, dev, serial)                                                   \
    "<disk type='file' device='disk'>" driver "<source file='" file "'/>"                \
    "<target dev='" dev "' bus='virtio'/><serial>" serial "</serial></disk>"

static const char domain[] =
    "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
    "<name>web1</name><devices>"
    DISK("<driver name='qemu' type='qcow2'/>", "/img/root.qcow2", "vda", "root")
    DISK("<driver name='qemu' type='raw'/>", "/img/data.raw", "vdb", "data")
    DISK("<driver name='qemu'/>", "/img/notype.img", "vdc", "notype")
    DISK("", "/img/nodriver.img", "vdd", "nodriver")
    DISK("<driver name='qemu' type='vmdk'/>", "/img/old.vmdk", "vde", "old")
    "</devices><qemu:commandline>"
    "<qemu:arg value='-chardev'/><qemu:arg value='socket,id=vb,path=/run/vbackup/web1.sock,reconnect=1'/>"
    "<qemu:arg value='-device'/><qemu:arg value='virtio-backup-pci,chardev=vb'/>"
    "</qemu:commandline></domain>";

static struct vbd_disk_cfg *disk(struct vbd_vm_cfg *vm, const char *serial)
{
    for (guint i = 0; i < vm->disks->len; i++) {
        struct vbd_disk_cfg *dc = vm->disks->pdata[i];
        if (!strcmp(dc->serial, serial))
            return dc;
    }
    return NULL;
}

static void test_driver_type(void)
{
    struct vbd_config cfg = { .runtime_dir = (char *)"/run/vbackup" };
    struct vbd d = { .cfg = &cfg };
    struct vbd_vm_cfg *vm;

    logged = g_string_new(NULL);
    vm = vm_from_xml(&d, domain);
    g_assert_nonnull(vm);
    g_assert_cmpstr(vm->name, ==, "web1");
    g_assert_cmpstr(vm->socket, ==, "/run/vbackup/web1.sock");
    /* the disks libvirt gives a format keep it */
    g_assert_cmpuint(vm->disks->len, ==, 2);
    g_assert_cmpstr(disk(vm, "root")->format, ==, "qcow2");
    g_assert_cmpstr(disk(vm, "root")->image, ==, "/img/root.qcow2");
    g_assert_cmpstr(disk(vm, "data")->format, ==, "raw");
    g_assert_cmpstr(disk(vm, "data")->target, ==, "vdb");
    /* a disk without a type is refused, with the reason and the fix */
    g_assert_null(disk(vm, "notype"));
    g_assert_null(disk(vm, "nodriver"));
    g_assert_nonnull(strstr(logged->str, "disk vdc (serial notype) refused"));
    g_assert_nonnull(strstr(logged->str, "disk vdd (serial nodriver) refused"));
    g_assert_nonnull(strstr(logged->str, "never guesses a format"));
    g_assert_nonnull(strstr(logged->str, "type='raw'"));
    /* and one vbackup cannot read is left out, saying so */
    g_assert_null(disk(vm, "old"));
    g_assert_nonnull(strstr(logged->str, "disk vde (serial old) ignored"));
    vbd_vm_cfg_free(vm);
    g_string_free(logged, TRUE);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/libvirt/disk-format-from-driver-type", test_driver_type);
    return g_test_run();
}
