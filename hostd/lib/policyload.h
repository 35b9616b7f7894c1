/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef VB_POLICYLOAD_H
#define VB_POLICYLOAD_H
#endif
