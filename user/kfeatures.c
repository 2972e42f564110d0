// SPDX-License-Identifier: MIT
#include <errno.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include "kfeatures.h"
#include "feat.skel.h"
#include "log.h"

int kfeatures__probe(struct kfeatures *f)
{
	LIBBPF_OPTS(bpf_test_run_opts, topts);
	struct feat_bpf *skel;
	int err;

	skel = feat_bpf__open_and_load();
	if (!skel)
		return -errno ? -errno : -EINVAL;
	err = bpf_prog_test_run_opts(bpf_program__fd(skel->progs.probe_features), &topts);
	if (err || !skel->bss->ran) {
		err = err ? err : -EINVAL;
		goto cleanup;
	}
	f->uprobe_multi = skel->bss->has_uprobe_multi;
	f->uprobe_session = skel->bss->has_uprobe_session;
	f->task_storage = skel->bss->has_task_storage;
	f->bpf_loop = skel->bss->has_bpf_loop;
	f->find_vma = skel->bss->has_find_vma;
	dlog("features: uprobe_multi=%d uprobe_session=%d task_storage=%d bpf_loop=%d find_vma=%d\n",
	     f->uprobe_multi, f->uprobe_session, f->task_storage, f->bpf_loop, f->find_vma);
cleanup:
	feat_bpf__destroy(skel);
	return err;
}
