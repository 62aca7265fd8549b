# ringtrain build. `make` builds ./ringtrain; `make test` runs the CPU test suite; `make
# sanitize` builds the CPU code with ASan + UBSan into build/san and runs the suite on it.
# Locations are overridable: make MPICC=... BLAS_LIBS=... YAML_LIBS=... HWLOC_LIBS=... CUDA_HOME=... NCCL_HOME=...
# OPT is the host compiler's optimization (and sanitizer) flags, NVOPT nvcc's; BUILD the
# output directory, BIN the program (build/san and build/san/ringtrain for `make sanitize`).
.DEFAULT_GOAL := all
MPICC      ?= mpicc
MPIRUN     ?= mpirun
CUDA       ?= auto
CUDA_HOME  ?= /usr/local/cuda
NCCL_HOME  ?= $(CUDA_HOME)
CUDNN      ?= auto
CUDNN_HOME ?= $(CUDA_HOME)
EXTRA_CFLAGS  ?=
EXTRA_LDFLAGS ?=
BLAS_CFLAGS ?=
BLAS_LIBS  ?= -lopenblas
YAML_LIBS  ?= -lyaml
JSON_LIBS  ?= -lcjson
HASH_LIBS  ?= -lxxhash
HWLOC_CFLAGS ?=
HWLOC_LIBS ?= -lhwloc
OPT        ?= -O2
NVOPT      ?= -O2
BUILD      ?= build
BIN        ?= ringtrain
SANITIZE   ?=

CFLAGS  := -std=c11 -D_GNU_SOURCE $(OPT) -fno-math-errno -g -Wall -Wextra -Wpointer-arith -Werror -fopenmp -MMD -MP \
           -Isrc -Isrc/cpu -Impi -Itest $(BLAS_CFLAGS) $(HWLOC_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  := $(EXTRA_LDFLAGS) $(BLAS_LIBS) $(YAML_LIBS) $(JSON_LIBS) $(HASH_LIBS) $(HWLOC_LIBS) -lm -fopenmp
# SANITIZE=address,undefined: host code and links instrumented; any undefined behaviour is fatal.
ifneq ($(SANITIZE),)
  CFLAGS += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
  LDLIBS += -fsanitize=$(SANITIZE)
endif

SRC_LIB := $(filter-out src/main.c,$(wildcard src/*.c src/cpu/*.c mpi/*.c))
OBJ_LIB := $(SRC_LIB:%.c=$(BUILD)/obj/%.o)
TESTS   := $(patsubst test/%.c,$(BUILD)/%,$(wildcard test/test_*.c))
GPU_TESTS := $(patsubst test/gpu/%.c,$(BUILD)/gpu/%,$(wildcard test/gpu/test_*.c))

# The CUDA backend is built when nvcc is found and cuda/ holds sources (CUDA=0 forces CPU-only).
ifeq ($(CUDA),auto)
  CUDA := $(if $(and $(wildcard $(CUDA_HOME)/bin/nvcc),$(wildcard cuda/*.cu)),1,0)
endif
ifeq ($(CUDA),1)
  NVCC     := $(CUDA_HOME)/bin/nvcc
  NVFLAGS  := -std=c++17 $(NVOPT) -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_80,code=sm_80 \
              -Xcompiler -Wall,-Werror -MMD -MP -Isrc -Isrc/cpu -Impi -Icuda -I$(NCCL_HOME)/include $(EXTRA_CFLAGS)
  OBJ_LIB  += $(patsubst %.cu,$(BUILD)/obj/%.o,$(wildcard cuda/*.cu)) $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard cuda/*.c))
  CFLAGS   += -DRT_HAVE_CUDA -I$(CUDA_HOME)/include -I$(NCCL_HOME)/include -Icuda
  LDLIBS   += -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/lib -L$(NCCL_HOME)/lib -Wl,-rpath,$(CUDA_HOME)/lib64:$(CUDA_HOME)/lib:$(NCCL_HOME)/lib \
              -lcudart -lcublasLt -lcublas -lnccl -lstdc++
  # cuDNN's fused attention is built in when its header is found (CUDNN=0 leaves it out).
  ifeq ($(CUDNN),auto)
    CUDNN := $(if $(wildcard $(CUDNN_HOME)/include/cudnn.h),1,0)
  endif
  ifeq ($(CUDNN),1)
    CFLAGS  += -DRT_HAVE_CUDNN -I$(CUDNN_HOME)/include
    NVFLAGS += -DRT_HAVE_CUDNN -I$(CUDNN_HOME)/include
    LDLIBS  += -L$(CUDNN_HOME)/lib -L$(CUDNN_HOME)/lib64 -Wl,-rpath,$(CUDNN_HOME)/lib:$(CUDNN_HOME)/lib64 -lcudnn
  endif
endif

# Objects depend on a stamp named after the flags, so changing a flag (CUDA, CUDNN, a path)
# rebuilds them instead of linking stale ones.
FLAGS_STAMP := $(BUILD)/flags.$(shell echo '$(CFLAGS) $(NVFLAGS) $(LDLIBS)' | md5sum | cut -c1-12)
$(FLAGS_STAMP):
	@mkdir -p $(BUILD) && rm -f $(BUILD)/flags.* && touch $@

VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
CFLAGS  += -DRT_VERSION=\"$(VERSION)\"

.PHONY: all test test-gpu bench clean docs sanitize
all: $(BIN) $(TESTS)

$(BIN): $(BUILD)/obj/src/main.o $(BUILD)/libringtrain.a
	@mkdir -p $(@D)
	$(MPICC) -o $@ $^ $(LDLIBS)

$(BUILD)/libringtrain.a: $(OBJ_LIB)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(MPICC) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/%.o: %.cu $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -c -o $@ $<

$(BUILD)/test_%: $(BUILD)/obj/test/test_%.o $(BUILD)/obj/test/testutil.o $(BUILD)/libringtrain.a
	$(MPICC) -o $@ $^ $(LDLIBS)

# test_zero runs the parameter store over the strict transport (test/comm_strict.h).
$(BUILD)/test_zero: $(BUILD)/obj/test/comm_strict.o

# The suite runs the programs of RT_BUILD and RT_BIN (test/run_tests.sh).
test: all
	MPIRUN="$(MPIRUN)" RT_BUILD=$(BUILD) RT_BIN=$(BIN) test/run_tests.sh

# The CPU suite under AddressSanitizer + UndefinedBehaviorSanitizer: a CPU-only build of its
# own (build/san, which leaves the normal build alone), every test run on it. Leak reports
# are off (Open MPI's own allocations at exit would drown ours).
SAN_ENV := ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
sanitize:
	$(MAKE) BUILD=build/san BIN=build/san/ringtrain CUDA=0 OPT="-O1 -g" SANITIZE=address,undefined all
	$(SAN_ENV) MPIRUN="$(MPIRUN)" RT_BUILD=build/san RT_BIN=build/san/ringtrain test/run_tests.sh

# CUDA builds: the LD_PRELOAD library with which test_plan shows that --plan makes no CUDA call.
ifeq ($(CUDA),1)
all: $(BUILD)/nocuda.so
$(BUILD)/nocuda.so: test/nocuda.c
	@mkdir -p $(@D)
	$(CC) -shared -fPIC -O2 -Wall -Wextra -Werror -o $@ $<
endif

# GPU tests (on a machine with a GPU): each CUDA op against its CPU twin, and more.
$(BUILD)/gpu/test_%: $(BUILD)/obj/test/gpu/test_%.o $(BUILD)/obj/test/testutil.o $(BUILD)/libringtrain.a
	@mkdir -p $(@D)
	$(MPICC) -o $@ $^ $(LDLIBS)

test-gpu: ringtrain $(GPU_TESTS)
	@test "$(CUDA)" = 1 || { echo "test-gpu needs the CUDA backend (nvcc in CUDA_HOME and cuda/*.cu)"; exit 1; }
	test/gpu/run_gpu_tests.sh

# Benchmark (GPU): the 7B-shape step at SEQ tokens, then the attention kernels.
SEQ ?= 16384
bench: ringtrain build/gpu/bench_attn
	./ringtrain yaml/bench_7b.yaml --set data.seq_len=$(SEQ) --set log.metrics=build/bench_7b_$(SEQ).jsonl
	build/gpu/bench_attn

$(BUILD)/gpu/bench_%: $(BUILD)/obj/test/gpu/bench_%.o $(BUILD)/obj/test/testutil.o $(BUILD)/libringtrain.a
	@mkdir -p $(@D)
	$(MPICC) -o $@ $^ $(LDLIBS)

docs: ringtrain
	./ringtrain --help-config=markdown > docs/config.md

clean:
	rm -rf build ringtrain

-include $(shell find $(BUILD)/obj $(BUILD)/gpu -name '*.d' 2>/dev/null)
