# kura — one entry point: make, make test, make run, make bench, make deps
#   make SAN=1          AddressSanitizer + UndefinedBehaviorSanitizer build (into build-san/)
#   make install PREFIX=/usr/local

PREFIX ?= /usr/local
CC ?= cc
SAN ?=
DATA ?= ./data

ifeq ($(SAN),)
BUILD ?= build
SANFLAGS :=
else
BUILD ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

CFLAGS ?= -O2 -g
CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I. -MMD -MP $(SANFLAGS)
LDFLAGS += $(SANFLAGS)
LIBS := -luring -lisal -lrocksdb -luuid -lcurl -lpthread

COMMON_SRC := $(wildcard common/*.c)
METADATA_SRC := $(wildcard metadata/*.c)
STORE_SRC := $(filter-out blockd/main.c,$(wildcard blockd/*.c))
VDISK_SRC := $(wildcard vdisk/*.c)
ISCSI_SRC := $(wildcard iscsi-target/*.c)
REPL_SRC := $(wildcard replication/*.c)
LIB_SRC := $(COMMON_SRC) $(METADATA_SRC) $(STORE_SRC) $(VDISK_SRC) $(ISCSI_SRC) $(REPL_SRC)
OBJ := $(BUILD)/obj
LIB_OBJ := $(LIB_SRC:%.c=$(OBJ)/%.o)

# The vdisk command: a client of blockd's control socket. It links from
# libkura.a only what it uses (JSON, sizes), none of the store's libraries.
CLI_SRC := $(wildcard vdisk/cli/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(OBJ)/%.o)

UNIT_SRC := $(wildcard tests/unit/*.c tests/unit/*/*.c)
UNIT_OBJ := $(UNIT_SRC:%.c=$(OBJ)/%.o)

BINS := $(BUILD)/blockd $(BUILD)/kura-crashtest $(BUILD)/kura-protocheck $(BUILD)/kura-bench-store \
	$(BUILD)/kura-bench-vdisk $(BUILD)/kura-iscsi-perf $(BUILD)/kura-vdcrash $(BUILD)/kura-ctlcheck $(BUILD)/kura-iscsicheck \
	$(BUILD)/kura-etcdcheck $(BUILD)/kura-peercheck $(BUILD)/kura-fwdcheck $(BUILD)/kura-repcheck $(BUILD)/unit-tests $(BUILD)/vdisk

.PHONY: all deps test unit crash integration run bench install clean help
all: $(BINS)

help:
	@echo "make            build into $(BUILD)/"
	@echo "make run        install packages if missing, build, run one node on $(DATA)"
	@echo "make test       install packages if missing, build, run every test"
	@echo "make bench      the store against fio, vdisk operations against cp, iSCSI against tgt, guest latency under clones (bench-qos.png), replicated writes RF 1-3 (root)"
	@echo "make deps       install the Debian packages kura needs"
	@echo "make SAN=1      build with AddressSanitizer and UBSan"
	@echo "make fuzz       fuzz the iSCSI PDU checks, login, text keys and CHAP (clang libFuzzer) for FUZZ_SECONDS (600), then forwarded messages for FUZZ_FWD_SECONDS (60)"
	@echo "make install PREFIX=DIR"

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(OBJ)/libkura.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/blockd: $(OBJ)/blockd/main.o $(OBJ)/libkura.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/vdisk: $(CLI_OBJ) $(OBJ)/libkura.a
	$(CC) $(LDFLAGS) -o $@ $^

$(BUILD)/unit-tests: $(UNIT_OBJ) $(OBJ)/libkura.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/kura-crashtest: $(OBJ)/tests/integration/crashtest.o $(OBJ)/libkura.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/kura-vdcrash: $(OBJ)/tests/integration/vdcrash.o $(OBJ)/libkura.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/kura-ctlcheck: $(OBJ)/tests/integration/ctlcheck.o $(OBJ)/libkura.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/kura-etcdcheck: $(OBJ)/tests/integration/etcdcheck.o $(OBJ)/libkura.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/kura-peercheck: $(OBJ)/tests/cluster/peercheck.o $(OBJ)/libkura.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/kura-fwdcheck: $(OBJ)/tests/cluster/fwdcheck.o $(OBJ)/libkura.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/kura-repcheck: $(OBJ)/tests/cluster/repcheck.o $(OBJ)/libkura.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/kura-protocheck: $(OBJ)/tests/integration/protocheck.o $(OBJ)/libkura.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/kura-iscsicheck: $(OBJ)/tests/integration/iscsicheck.o $(OBJ)/tests/integration/iscsi_initiator.o \
		$(OBJ)/libkura.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/kura-bench-store: $(OBJ)/bench/store_bench.o $(OBJ)/libkura.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/kura-bench-vdisk: $(OBJ)/bench/vdisk_bench.o $(OBJ)/libkura.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# an iSCSI initiator for the benchmarks: random reads or writes through
# libiscsi, with nothing between it and the target
$(BUILD)/kura-iscsi-perf: $(OBJ)/bench/iscsi_perf.o
	$(CC) $(LDFLAGS) -o $@ $^ -liscsi

# make fuzz: libFuzzer with ASan and UBSan over the bytes an initiator sends
# (iSCSI header checks, login, text keys, CHAP), built from just those
# sources, run for FUZZ_SECONDS on a fresh copy of the seed corpus; then
# over forwarded messages between nodes (iscsi-target/fwd.h) for
# FUZZ_FWD_SECONDS; crashes land in $(BUILD)/fuzz/crashes/.
FUZZ_SECONDS ?= 600
FUZZ_FWD_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_SRC := iscsi-target/pdu.c iscsi-target/login.c iscsi-target/text.c iscsi-target/chap.c \
	iscsi-target/hash.c iscsi-target/fuzz/fuzz_iscsi.c common/base64.c
.PHONY: fuzz
fuzz: $(BUILD)/fuzz/fuzz_iscsi $(BUILD)/fuzz/fuzz_fwd
	@rm -rf $(BUILD)/fuzz/corpus $(BUILD)/fuzz/fwd-corpus
	@mkdir -p $(BUILD)/fuzz/corpus $(BUILD)/fuzz/fwd-corpus $(BUILD)/fuzz/crashes
	cp iscsi-target/fuzz/corpus/* $(BUILD)/fuzz/corpus/
	cp iscsi-target/fuzz/fwd-corpus/* $(BUILD)/fuzz/fwd-corpus/
	$(BUILD)/fuzz/fuzz_iscsi -max_total_time=$(FUZZ_SECONDS) -max_len=81920 -timeout=10 \
		-print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz/crashes/ $(BUILD)/fuzz/corpus
	$(BUILD)/fuzz/fuzz_fwd -max_total_time=$(FUZZ_FWD_SECONDS) -max_len=8192 -timeout=10 \
		-print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz/crashes/fwd- $(BUILD)/fuzz/fwd-corpus

$(BUILD)/fuzz/fuzz_fwd: iscsi-target/fwd_msg.c iscsi-target/fuzz/fuzz_fwd.c iscsi-target/fwd.h \
		iscsi-target/scsi.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -g -O1 -I. -Wall -Wextra -Werror \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o $@ \
		iscsi-target/fwd_msg.c iscsi-target/fuzz/fuzz_fwd.c

$(BUILD)/fuzz/fuzz_iscsi: $(FUZZ_SRC) $(wildcard iscsi-target/*.h) common/util.h common/base64.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -g -O1 -I. -Wall -Wextra -Werror \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o $@ $(FUZZ_SRC)

deps:
	@sh tools/deps.sh

run: deps all
	@mkdir -p $(DATA)
	$(BUILD)/blockd --data $(DATA)

test: deps all
	@sh tests/run.sh $(BUILD)

bench: deps all
	@sh bench/run.sh $(BUILD)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BUILD)/blockd $(DESTDIR)$(PREFIX)/bin/blockd
	install -m 0755 $(BUILD)/vdisk $(DESTDIR)$(PREFIX)/bin/vdisk

clean:
	rm -rf build build-san

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)
