// cifar10.h: CIFAR-10's binary format (https://www.cs.toronto.edu/~kriz/cifar.html, the
// "binary version": cifar-10-binary.tar.gz, which unpacks to cifar-10-batches-bin/).
//
// A batch file is a sequence of 3073-byte records and nothing else: 1 label byte (0..9:
// airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck), then the 32x32
// image channel-planar, 1024 red bytes, 1024 green, 1024 blue, each plane row by row.
// That is [3, 32, 32] in PyTorch order, so a record's pixels map straight to images[n].
// Training: data_batch_1.bin .. data_batch_5.bin (10000 records each); test: test_batch.bin.
//
// The reader checks each file's real size before allocating: not empty, at most
// kCifarMaxFileBytes, and a whole number of records (otherwise the error names the file,
// the record that is cut short and how many of its bytes are there). Then it reads the
// records in pieces and checks each label (a label above 9 names the file and the record;
// CIFAR-100's files, 2 label bytes per record, fail there or on the size). What has no
// real size (/dev/zero, a pipe, a folder) is refused before any read. Images come back as
// float [N, 3, 32, 32] in [-1, 1] (x / 127.5 - 1, Ho et al. 2020, Sec. 3.3).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "ddpm/data/dataset.h"

namespace ddpm {

constexpr size_t kCifarImageBytes = 3 * 32 * 32;
constexpr size_t kCifarRecordBytes = 1 + kCifarImageBytes;  // 3073
// The largest batch file read: 1 GiB, about 35 times CIFAR-10's (30,730,000 bytes).
constexpr uint64_t kCifarMaxFileBytes = uint64_t(1) << 30;

// The records of one batch file held in memory; `source` names it in errors.
Dataset parse_cifar10(const uint8_t* bytes, size_t size, const std::string& source);
// One batch file.
Dataset read_cifar10_file(const std::string& path);
// split "train" (data_batch_1..5.bin, in that order) or "test" (test_batch.bin), from dir
// or from dir/cifar-10-batches-bin. The error names the files it did not find and where
// to get them. The files are sized up first, so the images are allocated once.
Dataset load_cifar10(const std::string& dir, const std::string& split);

}  // namespace ddpm
