# ringtrain build. `make` builds ./ringtrain; `make test` runs the CPU test suite.
# Locations are overridable: make MPICC=... BLAS_LIBS=... YAML_LIBS=... CUDA_HOME=... NCCL_HOME=...
MPICC      ?= mpicc
MPIRUN     ?= mpirun
CUDA       ?= auto
CUDA_HOME  ?= /usr/local/cuda
NCCL_HOME  ?= /usr
HWLOC_LIBS ?= -lhwloc
BLAS_CFLAGS ?=
BLAS_LIBS  ?= -lopenblas
YAML_LIBS  ?= -lyaml
JSON_LIBS  ?= -lcjson
OPT        ?= -O2

CFLAGS  := -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Werror -fopenmp -MMD -MP \
           -Isrc -Isrc/cpu -Impi $(BLAS_CFLAGS)
LDLIBS  := $(BLAS_LIBS) $(YAML_LIBS) $(JSON_LIBS) -lm -fopenmp

SRC_LIB := $(filter-out src/main.c,$(wildcard src/*.c src/cpu/*.c mpi/*.c))
OBJ_LIB := $(SRC_LIB:%.c=build/obj/%.o)
TESTS   := $(patsubst test/%.c,build/%,$(wildcard test/test_*.c))

# The CUDA backend is built when nvcc is found and cuda/ holds sources (CUDA=0 forces CPU-only).
ifeq ($(CUDA),auto)
  CUDA := $(if $(and $(wildcard $(CUDA_HOME)/bin/nvcc),$(wildcard cuda/*.cu)),1,0)
endif
ifeq ($(CUDA),1)
  NVCC     := $(CUDA_HOME)/bin/nvcc
  NVFLAGS  := -std=c++17 $(OPT) -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=sm_80 \
              -Xcompiler -Wall,-Werror -Isrc -Impi -I$(NCCL_HOME)/include
  OBJ_LIB  += $(patsubst %.cu,build/obj/%.o,$(wildcard cuda/*.cu))
  CFLAGS   += -DRT_HAVE_CUDA -I$(CUDA_HOME)/include
  LDLIBS   += -L$(CUDA_HOME)/lib64 -L$(NCCL_HOME)/lib -lcudart -lcublasLt -lcublas -lnccl -lstdc++
endif

VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
CFLAGS  += -DRT_VERSION=\"$(VERSION)\"

.PHONY: all test clean docs
all: ringtrain $(TESTS)

ringtrain: build/obj/src/main.o build/libringtrain.a
	$(MPICC) -o $@ $^ $(LDLIBS)

build/libringtrain.a: $(OBJ_LIB)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

build/obj/%.o: %.c
	@mkdir -p $(@D)
	$(MPICC) $(CFLAGS) -c -o $@ $<

build/obj/%.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -c -o $@ $<

build/test_%: build/obj/test/test_%.o build/obj/test/testutil.o build/libringtrain.a
	$(MPICC) -o $@ $^ $(LDLIBS)

test: all
	MPIRUN="$(MPIRUN)" test/run_tests.sh

docs: ringtrain
	./ringtrain --help-config=markdown > docs/config.md

clean:
	rm -rf build ringtrain

-include $(shell find build -name '*.d' 2>/dev/null)
