/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Linux PSI reader: filled by the policies work. */
#include "psi.h"
