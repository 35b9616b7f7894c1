/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef VB_PSI_H
#define VB_PSI_H
#endif
