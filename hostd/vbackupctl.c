/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdio.h>
int main(void) { fputs("vbackupctl: under construction\n", stderr); return 1; }
