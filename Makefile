# asizeof-bpf: eBPF allocation profiler
# make [V=1] | make deps | make test | make demo | make bench | make install [PREFIX=/usr/local DESTDIR=] | make clean

OUT := build
CLANG ?= clang
BPFTOOL ?= $(shell command -v bpftool 2>/dev/null || echo /usr/sbin/bpftool)
CC ?= cc
PREFIX ?= /usr/local
ARCH := $(shell uname -m | sed 's/x86_64/x86/; s/aarch64/arm64/')

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

CFLAGS ?= -O2 -g
CFLAGS += -Wall -Wextra -std=gnu11 -D_GNU_SOURCE -Iinclude -Iuser -I$(OUT)
LDLIBS := -lm -lbpf -lelf -ldw -lz -lpthread -lstdc++ -lncursesw -lmicrohttpd -lprotobuf-c
BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Iinclude -I$(OUT) -Wall -Wno-unused-function

BPF_SRCS := $(wildcard bpf/*.bpf.c)
SKELS := $(patsubst bpf/%.bpf.c,$(OUT)/%.skel.h,$(BPF_SRCS))
USER_SRCS := $(wildcard user/*.c)
USER_OBJS := $(patsubst user/%.c,$(OUT)/user/%.o,$(USER_SRCS)) $(OUT)/profile.pb-c.o
LIB_OBJS := $(filter-out $(OUT)/user/main.o,$(USER_OBJS))
UNIT_SRCS := $(wildcard tests/unit/*.c)
WORKLOAD_C := $(wildcard tests/workloads/*.c)
WORKLOAD_CXX := $(wildcard tests/workloads/*.cc)
WORKLOADS := $(patsubst tests/workloads/%.c,$(OUT)/workloads/%,$(WORKLOAD_C)) \
	     $(patsubst tests/workloads/%.cc,$(OUT)/workloads/%,$(WORKLOAD_CXX))

.PHONY: all deps test unit e2e demo bench install clean workloads
.DELETE_ON_ERROR:
.SECONDARY:

all: asizeof-bpf

deps:
	$(Q)sh tools/deps.sh

$(OUT) $(OUT)/user $(OUT)/workloads:
	$(Q)mkdir -p $@

$(OUT)/vmlinux.h: | $(OUT)
	$(call msg,GEN,$@)
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@

$(OUT)/%.bpf.o: bpf/%.bpf.c include/asizeof.h $(wildcard bpf/*.h) $(OUT)/vmlinux.h | $(OUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@
	$(Q)llvm-strip -g $@ 2>/dev/null || true

$(OUT)/%.skel.h: $(OUT)/%.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< > $@

$(OUT)/user/%.o: user/%.c $(wildcard user/*.h) include/asizeof.h $(SKELS) | $(OUT)/user
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# pprof's profile.proto -> protobuf-c code; every user object may include its header.
$(OUT)/profile.pb-c.c $(OUT)/profile.pb-c.h &: user/profile.proto | $(OUT)
	$(call msg,PROTOC,$@)
	$(Q)protoc-c --c_out=$(OUT) --proto_path=user user/profile.proto

$(OUT)/profile.pb-c.o: $(OUT)/profile.pb-c.c $(OUT)/profile.pb-c.h
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(patsubst user/%.c,$(OUT)/user/%.o,$(USER_SRCS)): $(OUT)/profile.pb-c.h

asizeof-bpf: $(USER_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(OUT)/unit_tests: $(UNIT_SRCS) $(LIB_OBJS) | $(OUT)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $(UNIT_SRCS) $(LIB_OBJS) -o $@ $(LDLIBS) -lcriterion

# Test workloads: plain -O2 like real programs; pointers escape through volatile globals.
$(OUT)/workloads/%: tests/workloads/%.c | $(OUT)/workloads
	$(call msg,CC,$@)
	$(Q)$(CC) -O2 -g -Wall -o $@ $< -lpthread

$(OUT)/workloads/%: tests/workloads/%.cc | $(OUT)/workloads
	$(call msg,CXX,$@)
	$(Q)g++ -O2 -g -Wall -o $@ $< -lpthread

$(OUT)/demo: tools/demo.c | $(OUT)
	$(call msg,CC,$@)
	$(Q)$(CC) -O2 -g -Wall -o $@ $<

workloads: $(WORKLOADS)

unit: $(OUT)/unit_tests
	$(OUT)/unit_tests

e2e: asizeof-bpf workloads
	/usr/bin/python3 -m pytest -q tests/e2e

test: deps
	$(MAKE) all workloads $(OUT)/unit_tests
	$(OUT)/unit_tests
	/usr/bin/python3 -m pytest -q tests/e2e

demo: deps
	$(MAKE) all $(OUT)/demo
	./asizeof-bpf -i 1 -n 5 -- $(OUT)/demo

bench: deps
	$(MAKE) all
	bash tools/bench.sh

install: asizeof-bpf
	install -D -m 0755 asizeof-bpf $(DESTDIR)$(PREFIX)/sbin/asizeof-bpf
	install -D -m 0644 tools/asizeof-bpf.8 $(DESTDIR)$(PREFIX)/share/man/man8/asizeof-bpf.8
	install -D -m 0644 tools/asizeof-bpf.service $(DESTDIR)$(PREFIX)/lib/systemd/system/asizeof-bpf.service

clean:
	rm -rf $(OUT) asizeof-bpf
