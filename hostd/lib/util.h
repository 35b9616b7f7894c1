/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef VB_UTIL_H
#define VB_UTIL_H
#endif
