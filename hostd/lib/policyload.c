/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Policy plugin loader: filled by the policies work. */
#include "policyload.h"
