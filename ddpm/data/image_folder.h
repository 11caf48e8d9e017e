// image_folder.h: a folder of images as a dataset (--dataset folder).
//
// Which files: every *.png, *.pgm and *.ppm (any case) directly in dir, sorted by name
// (bytewise), all with label 0 (num_classes 1). Or, when dir holds no images itself but
// sub-folders, one class per sub-folder, dir/<class>/*: classes are numbered 0..K-1 in
// the sorted order of their names, images sorted by name within each, class by class.
// Names starting with '.' are skipped, as are other files and folders below a class.
// Refused with an error naming the folder: a folder that does not exist or cannot be
// read; no images at all; images at the top level beside sub-folders that hold images
// (which would be which class?); a class sub-folder without images; more than 255
// classes (labels are bytes). A conditional model takes at most 10 classes (dataset.h).
//
// Each image, read by read_image (ddpm/io/image_file.h, which checks it), becomes
// [channels, size, size] floats by image_to_tensor:
//   1. alpha is composited on black: each color sample times alpha / 255 (a transparent
//      icon on a black background, which is -1 after scaling). Palette images are RGB.
//   2. channels: gray to 3 replicates the gray value; RGB to 1 is the luma of ITU-R
//      BT.601, 0.299 R + 0.587 G + 0.114 B (PIL's convert("L") weights, not rounded).
//   3. center crop to a square: side s = min(W, H), from column (W - s) / 2 and row
//      (H - s) / 2, rounded down (an odd leftover pixel goes to the right or bottom).
//   4. resize s x s -> size x size by area averaging: output pixel (i, j) is the mean of
//      the source square [i s/size, (i+1) s/size) x [j s/size, (j+1) s/size), source
//      pixels weighted by the area they cover (exact for any ratio, up or down; the
//      identity when s == size; each 2x2 block's mean when s == 2 size).
//   5. x / 127.5 - 1, to [-1, 1], as every dataset (bytes_to_unit_range).
// Steps 1 to 4 are computed in double on values in 0..255, and the result is rounded
// to float once, at step 5.
//
// Channels: `channels` 1 or 3 converts every image to it. With channels 0 the images
// keep their own: gray (and gray+alpha) is 1, RGB, RGBA and palette are 3, and all must
// agree: a folder that mixes them is refused, naming an image of each kind, with the
// advice to ask for a channel count.
//
// Memory: the files are listed first; then the first image gives the channel count
// (with channels 0), and N * channels * size^2 floats, bounded by kFolderMaxBytes, are
// allocated once; each image is decoded, converted into its slot and freed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ddpm/data/dataset.h"
#include "ddpm/io/png.h"

namespace ddpm {

constexpr int64_t kFolderMaxImageSize = 1024;          // image_size: 1..1024
constexpr uint64_t kFolderMaxBytes = uint64_t(4) << 30;  // the images as floats: at most 4 GiB
constexpr int64_t kFolderMaxClasses = 255;

struct ImageFolderListing {
  std::vector<std::string> paths;   // every image, in load order
  std::vector<uint8_t> labels;      // one per path
  std::vector<std::string> classes;  // the class sub-folders' names, label order; empty for a flat folder
};

// Which images a folder holds, and their labels (the rules above).
ImageFolderListing list_image_folder(const std::string& dir);

// 1 for gray and gray+alpha, 3 for RGB, RGBA and palette (decode_png's RGB).
int color_channels(const Image& img);

// The image as out[channels][size][size] in [-1, 1] (steps 1 to 5 above); channels 1 or
// 3. `source` names the image in errors.
void image_to_tensor(const Image& img, int64_t size, int channels, float* out, const std::string& source);

// The folder as a dataset (the rules above). channels 0, 1 or 3.
Dataset load_image_folder(const std::string& dir, int64_t image_size, int channels);

}  // namespace ddpm
