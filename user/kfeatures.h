/* SPDX-License-Identifier: MIT */
#ifndef ASZ_KFEATURES_H
#define ASZ_KFEATURES_H

#include <stdbool.h>

struct kfeatures {
	bool uprobe_multi;
	bool uprobe_session;
	bool task_storage;
	bool bpf_loop;
	bool find_vma;
};

/* Probe the running kernel once (feature skeleton); returns 0 or a negative errno. */
int kfeatures__probe(struct kfeatures *f);

#endif
