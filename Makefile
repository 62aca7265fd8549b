# ringtrain build. `make` builds ./ringtrain; `make test` runs the CPU test suite.
# Locations are overridable: make MPICC=... BLAS_LIBS=... YAML_LIBS=... HWLOC_LIBS=... CUDA_HOME=... NCCL_HOME=...
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

CFLAGS  := -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Wpointer-arith -Werror -fopenmp -MMD -MP \
           -Isrc -Isrc/cpu -Impi -Itest $(BLAS_CFLAGS) $(HWLOC_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  := $(EXTRA_LDFLAGS) $(BLAS_LIBS) $(YAML_LIBS) $(JSON_LIBS) $(HASH_LIBS) $(HWLOC_LIBS) -lm -fopenmp

SRC_LIB := $(filter-out src/main.c,$(wildcard src/*.c src/cpu/*.c mpi/*.c))
OBJ_LIB := $(SRC_LIB:%.c=build/obj/%.o)
TESTS   := $(patsubst test/%.c,build/%,$(wildcard test/test_*.c))
GPU_TESTS := $(patsubst test/gpu/%.c,build/gpu/%,$(wildcard test/gpu/test_*.c))

# The CUDA backend is built when nvcc is found and cuda/ holds sources (CUDA=0 forces CPU-only).
ifeq ($(CUDA),auto)
  CUDA := $(if $(and $(wildcard $(CUDA_HOME)/bin/nvcc),$(wildcard cuda/*.cu)),1,0)
endif
ifeq ($(CUDA),1)
  NVCC     := $(CUDA_HOME)/bin/nvcc
  NVFLAGS  := -std=c++17 $(OPT) -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_80,code=sm_80 \
              -Xcompiler -Wall,-Werror -MMD -MP -Isrc -Isrc/cpu -Impi -Icuda -I$(NCCL_HOME)/include $(EXTRA_CFLAGS)
  OBJ_LIB  += $(patsubst %.cu,build/obj/%.o,$(wildcard cuda/*.cu)) $(patsubst %.c,build/obj/%.o,$(wildcard cuda/*.c))
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
FLAGS_STAMP := build/flags.$(shell echo '$(CFLAGS) $(NVFLAGS) $(LDLIBS)' | md5sum | cut -c1-12)
$(FLAGS_STAMP):
	@mkdir -p build && rm -f build/flags.* && touch $@

VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
CFLAGS  += -DRT_VERSION=\"$(VERSION)\"

.PHONY: all test test-gpu bench clean docs
all: ringtrain $(TESTS)

ringtrain: build/obj/src/main.o build/libringtrain.a
	$(MPICC) -o $@ $^ $(LDLIBS)

build/libringtrain.a: $(OBJ_LIB)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

build/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(MPICC) $(CFLAGS) -c -o $@ $<

build/obj/%.o: %.cu $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -c -o $@ $<

build/test_%: build/obj/test/test_%.o build/obj/test/testutil.o build/libringtrain.a
	$(MPICC) -o $@ $^ $(LDLIBS)

test: all
	MPIRUN="$(MPIRUN)" test/run_tests.sh

# CUDA builds: the LD_PRELOAD library with which test_plan shows that --plan makes no CUDA call.
ifeq ($(CUDA),1)
all: build/nocuda.so
build/nocuda.so: test/nocuda.c
	@mkdir -p $(@D)
	$(CC) -shared -fPIC -O2 -Wall -Wextra -Werror -o $@ $<
endif

# GPU tests (on a machine with a GPU): each CUDA op against its CPU twin, and more.
build/gpu/test_%: build/obj/test/gpu/test_%.o build/obj/test/testutil.o build/libringtrain.a
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

build/gpu/bench_%: build/obj/test/gpu/bench_%.o build/obj/test/testutil.o build/libringtrain.a
	@mkdir -p $(@D)
	$(MPICC) -o $@ $^ $(LDLIBS)

docs: ringtrain
	./ringtrain --help-config=markdown > docs/config.md

clean:
	rm -rf build ringtrain

-include $(shell find build -name '*.d' 2>/dev/null)
