# ddpm: `make` builds ./train_mnist (and the other tools) and fetches MNIST if absent;
# `make test` builds and runs the doctest suite; `make bench` runs the benchmarks.
#
#   make SIMD=scalar test     force the scalar SIMD target (the always-buildable fallback)
#   make SIMD=avx2 test       AVX2+FMA only, even on an AVX-512 machine
#
# The source lists below are explicit; tools/check_sources.sh fails when they differ
# from the lists in CMakeLists.txt.

CXX ?= g++
SIMD ?= native
BUILD := build/$(SIMD)

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

# --- library sources -------------------------------------------------------
LIB_SRCS := \
	ddpm/check.cpp \
	ddpm/tensor.cpp \
	ddpm/rng.cpp \
	ddpm/parallel.cpp \
	ddpm/kernels.cpp \
	ddpm/tape.cpp \
	ddpm/ops/elementwise.cpp

# --- test sources ----------------------------------------------------------
TEST_SRCS := \
	tests/test_main.cpp \
	tests/test_tensor.cpp \
	tests/test_rng.cpp \
	tests/test_parallel.cpp \
	tests/test_kernels.cpp \
	tests/test_tape.cpp \
	tests/test_elementwise.cpp

# --- tools: one program per source ------------------------------------------
TOOLS := \
	bench

LIB_OBJS := $(LIB_SRCS:%.cpp=$(BUILD)/%.o)
TEST_OBJS := $(TEST_SRCS:%.cpp=$(BUILD)/%.o)
LIB := $(BUILD)/libddpm.a
TEST_BIN := $(BUILD)/test_ddpm

.PHONY: all test check-sources clean bench
# bench is linked like every tool, but `make bench` also runs it: its rules are below.
TOOL_BINS := $(filter-out bench,$(TOOLS))
all: $(TOOL_BINS) $(BUILD)/bench

$(BUILD)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(TOOL_BINS): %: $(BUILD)/tools/%.o $(LIB)
	$(CXX) $(CXXFLAGS) $^ -o $@ $(LDFLAGS)

# `make bench` builds ./bench and runs it (about a minute): FMA peak and GEMM rates,
# medians of several runs, JSON in build/bench.json. BENCH_ARGS="--help" lists options.
BENCH_ARGS ?= --json build/bench.json
$(BUILD)/bench: $(BUILD)/tools/bench.o $(LIB)
	$(CXX) $(CXXFLAGS) $^ -o $@ $(LDFLAGS)
	cp $@ bench
bench: $(BUILD)/bench
	./bench $(BENCH_ARGS)

$(TEST_BIN): $(TEST_OBJS) $(LIB)
	$(CXX) $(CXXFLAGS) $^ -o $@ $(LDFLAGS)

$(BUILD)/tests/test_main.o: tests/test_main.cpp
	@test -f /usr/include/doctest/doctest.h || { echo "error: doctest not found; install Debian's doctest-dev: apt-get install -y doctest-dev" >&2; exit 1; }
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

test: $(TEST_BIN) check-sources
	./$(TEST_BIN)

check-sources:
	@bash tools/check_sources.sh

clean:
	rm -rf build $(TOOLS)

-include $(LIB_OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(TOOLS:%=$(BUILD)/tools/%.d)
