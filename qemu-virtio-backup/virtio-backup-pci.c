/*
 * virtio-backup PCI bindings
 *
 * Copyright (c) 2025 The vbackup authors
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or
 * (at your option) any later version.  See the COPYING file in the
 * top-level directory.
 *
 * The device ID (VB_VIRTIO_ID) is not in the virtio specification, so the
 * device has no legacy (transitional) form: only the modern, non-transitional
 * type is registered, under the plain name "virtio-backup-pci".  Its PCI ID
 * is 1af4:(0x1040 + VB_VIRTIO_ID).
 */

#include "qemu/osdep.h"

#include "hw/virtio/virtio-pci.h"
#include "hw/virtio/virtio-backup.h"
#include "hw/qdev-properties.h"
#include "qapi/error.h"
#include "qemu/module.h"
#include "qom/object.h"

typedef struct VirtIOBackupPCI VirtIOBackupPCI;

/*
 * virtio-backup-pci: This extends VirtioPCIProxy.
 */
#define TYPE_VIRTIO_BACKUP_PCI "virtio-backup-pci-base"
DECLARE_INSTANCE_CHECKER(VirtIOBackupPCI, VIRTIO_BACKUP_PCI,
                         TYPE_VIRTIO_BACKUP_PCI)

struct VirtIOBackupPCI {
    VirtIOPCIProxy parent_obj;
    VirtIOBackup vdev;
};

static Property virtio_backup_pci_properties[] = {
    DEFINE_PROP_BIT("ioeventfd", VirtIOPCIProxy, flags,
                    VIRTIO_PCI_FLAG_USE_IOEVENTFD_BIT, true),
    DEFINE_PROP_UINT32("vectors", VirtIOPCIProxy, nvectors,
                       DEV_NVECTORS_UNSPECIFIED),
    DEFINE_PROP_END_OF_LIST(),
};

static void virtio_backup_pci_realize(VirtIOPCIProxy *vpci_dev, Error **errp)
{
    VirtIOBackupPCI *dev = VIRTIO_BACKUP_PCI(vpci_dev);
    DeviceState *vdev = DEVICE(&dev->vdev);

    if (vpci_dev->nvectors == DEV_NVECTORS_UNSPECIFIED) {
        /* one for configuration changes, one for the request queue */
        vpci_dev->nvectors = 2;
    }

    qdev_realize(vdev, BUS(&vpci_dev->bus), errp);
}

static void virtio_backup_pci_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    VirtioPCIClass *k = VIRTIO_PCI_CLASS(klass);
    PCIDeviceClass *pcidev_k = PCI_DEVICE_CLASS(klass);

    k->realize = virtio_backup_pci_realize;
    set_bit(DEVICE_CATEGORY_MISC, dc->categories);
    device_class_set_props(dc, virtio_backup_pci_properties);

    pcidev_k->vendor_id = VB_PCI_VENDOR_ID;
    pcidev_k->device_id = VB_PCI_DEVICE_ID;
    pcidev_k->revision = 1;     /* modern only (virtio 1.0) */
    pcidev_k->class_id = PCI_CLASS_OTHERS;
}

static void virtio_backup_pci_instance_init(Object *obj)
{
    VirtIOBackupPCI *dev = VIRTIO_BACKUP_PCI(obj);

    virtio_instance_init_common(obj, &dev->vdev, sizeof(dev->vdev),
                                TYPE_VIRTIO_BACKUP);
}

static const VirtioPCIDeviceTypeInfo virtio_backup_pci_info = {
    .base_name             = TYPE_VIRTIO_BACKUP_PCI,
    .non_transitional_name = "virtio-backup-pci",
    .instance_size = sizeof(VirtIOBackupPCI),
    .instance_init = virtio_backup_pci_instance_init,
    .class_init    = virtio_backup_pci_class_init,
};

static void virtio_backup_pci_register(void)
{
    virtio_pci_types_register(&virtio_backup_pci_info);
}

type_init(virtio_backup_pci_register)
