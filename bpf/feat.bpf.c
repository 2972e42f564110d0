// SPDX-License-Identifier: GPL-2.0
/* Kernel feature probe: run once with BPF_PROG_TEST_RUN; results land in .bss. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

bool has_uprobe_multi;
bool has_uprobe_session;
bool has_task_storage;
bool has_bpf_loop;
bool has_find_vma;
bool ran;

SEC("syscall")
int probe_features(void *ctx)
{
	has_uprobe_multi = bpf_core_enum_value_exists(enum bpf_attach_type, BPF_TRACE_UPROBE_MULTI);
	has_uprobe_session =
		bpf_core_enum_value_exists(enum bpf_attach_type, BPF_TRACE_UPROBE_SESSION);
	has_task_storage = bpf_core_enum_value_exists(enum bpf_map_type, BPF_MAP_TYPE_TASK_STORAGE);
	has_bpf_loop = bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_loop);
	has_find_vma = bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_find_vma);
	ran = true;
	return 0;
}
