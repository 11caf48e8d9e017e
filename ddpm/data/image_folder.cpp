#include "ddpm/data/image_folder.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <system_error>

#include "ddpm/core/check.h"
#include "ddpm/io/image_file.h"

namespace ddpm {

namespace fs = std::filesystem;

namespace {

bool is_image_name(const std::string& name) {
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos) return false;
  std::string ext = name.substr(dot);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".png" || ext == ".pgm" || ext == ".ppm";
}

// The image files and the sub-folders directly in dir, each sorted by name; names
// starting with '.' skipped. Symbolic links count as what they point to.
void scan(const std::string& dir, std::vector<std::string>* images, std::vector<std::string>* folders) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    std::error_code kind;
    if (it->is_directory(kind)) {
      if (folders) folders->push_back(name);
    } else if (it->is_regular_file(kind) && is_image_name(name)) {
      images->push_back(name);
    }
  }
  DDPM_CHECK(!ec, "folder: cannot read the folder '" << dir << "': " << ec.message());
  std::sort(images->begin(), images->end());
  if (folders) std::sort(folders->begin(), folders->end());
}

// Overlap, in units of 1/size of a source pixel, between output pixel o, which covers
// source [o * side, (o + 1) * side) / size, and source pixel j, [j * size, (j + 1) * size) / size.
int64_t overlap(int64_t o, int64_t j, int64_t side, int64_t size) {
  return std::min((o + 1) * side, (j + 1) * size) - std::max(o * side, j * size);
}

const char* kind_name(int channels) { return channels == 1 ? "gray (1 channel)" : "color (3 channels)"; }

}  // namespace

ImageFolderListing list_image_folder(const std::string& dir) {
  std::error_code ec;
  DDPM_CHECK(fs::exists(dir, ec), "folder: '" << dir << "' does not exist; pass the folder of images with --data");
  DDPM_CHECK(fs::is_directory(dir, ec), "folder: '" << dir << "' is not a folder; pass the folder of images with --data");
  ImageFolderListing listing;
  std::vector<std::string> images, folders;
  scan(dir, &images, &folders);
  if (!images.empty()) {
    // A flat folder: its own images, label 0. Sub-folders holding images would leave
    // the labels ambiguous.
    for (const std::string& sub : folders) {
      std::vector<std::string> inside;
      scan(dir + "/" + sub, &inside, nullptr);
      DDPM_CHECK(inside.empty(), "folder: '" << dir << "' holds images itself (" << images[0]
                                             << ", ...) and class sub-folders with images ('" << sub << "/"
                                             << inside[0] << "'): put every image in a class sub-folder, or none");
    }
    for (const std::string& name : images) listing.paths.push_back(dir + "/" + name);
    listing.labels.assign(listing.paths.size(), 0);
    return listing;
  }
  DDPM_CHECK(!folders.empty(), "folder: '" << dir
                                           << "' holds no images (*.png, *.pgm, *.ppm) and no class sub-folders; "
                                              "point --data at a folder of images");
  DDPM_CHECK(int64_t(folders.size()) <= kFolderMaxClasses,
             "folder: '" << dir << "' has " << folders.size() << " sub-folders, each a class; at most "
                         << kFolderMaxClasses << " classes are supported");
  for (size_t k = 0; k < folders.size(); k++) {
    std::vector<std::string> inside;
    scan(dir + "/" + folders[k], &inside, nullptr);
    DDPM_CHECK(!inside.empty(), "folder: the class folder '" << dir << "/" << folders[k]
                                                             << "' holds no images (*.png, *.pgm, *.ppm); every "
                                                                "sub-folder of '"
                                                             << dir << "' is a class: remove it or add its images");
    for (const std::string& name : inside) {
      listing.paths.push_back(dir + "/" + folders[k] + "/" + name);
      listing.labels.push_back(static_cast<uint8_t>(k));
    }
  }
  listing.classes = folders;
  return listing;
}

int color_channels(const Image& img) { return img.channels <= 2 ? 1 : 3; }

void image_to_tensor(const Image& img, int64_t size, int channels, float* out, const std::string& source) {
  DDPM_CHECK(size >= 1 && size <= kFolderMaxImageSize,
             "folder: image size " << size << " is outside 1.." << kFolderMaxImageSize);
  DDPM_CHECK(channels == 1 || channels == 3, "folder: " << channels << " channels asked for; use 1 or 3");
  const int64_t W = img.width, H = img.height;
  const int ic = img.channels;
  DDPM_CHECK(W >= 1 && H >= 1 && ic >= 1 && ic <= 4 && img.pixels.size() == size_t(W * H * ic),
             "folder: image '" << source << "' is " << W << " x " << H << " x " << ic << " with " << img.pixels.size()
                               << " bytes of pixels: not a decoded image");
  // 3. The centered square.
  const int64_t side = std::min(W, H), x0 = (W - side) / 2, y0 = (H - side) / 2;
  const int64_t C = channels;
  // 4. Area averaging, separable: each source row is averaged along x into `row`, which
  // is added into the output rows it overlaps, weighted by the overlap along y.
  std::vector<double> acc(size_t(size * size * C), 0.0), row(size_t(size * C));
  double v[3];
  for (int64_t y = 0; y < side; y++) {
    std::fill(row.begin(), row.end(), 0.0);
    const uint8_t* src = img.pixels.data() + ((y0 + y) * W + x0) * ic;
    for (int64_t x = 0; x < side; x++, src += ic) {
      // 1. Alpha composited on black; 2. the channels asked for.
      const double alpha = ic == 2 ? src[1] / 255.0 : ic == 4 ? src[3] / 255.0 : 1.0;
      if (ic <= 2) {
        v[0] = v[1] = v[2] = src[0] * alpha;
      } else if (C == 1) {
        v[0] = (0.299 * src[0] + 0.587 * src[1] + 0.114 * src[2]) * alpha;  // ITU-R BT.601 luma
      } else {
        for (int c = 0; c < 3; c++) v[c] = src[c] * alpha;
      }
      for (int64_t o = x * size / side; o <= ((x + 1) * size - 1) / side; o++) {
        const double w = double(overlap(o, x, side, size)) / double(side);
        for (int64_t c = 0; c < C; c++) row[size_t(o * C + c)] += w * v[c];
      }
    }
    for (int64_t o = y * size / side; o <= ((y + 1) * size - 1) / side; o++) {
      const double w = double(overlap(o, y, side, size)) / double(side);
      double* dst = acc.data() + o * size * C;
      for (int64_t i = 0; i < size * C; i++) dst[i] += w * row[size_t(i)];
    }
  }
  // 5. To [-1, 1] as bytes_to_unit_range maps a byte, [size][size][C] -> [C][size][size].
  for (int64_t c = 0; c < C; c++)
    for (int64_t i = 0; i < size * size; i++)
      out[c * size * size + i] = static_cast<float>(acc[size_t(i * C + c)]) / 127.5f - 1.0f;
}

Dataset load_image_folder(const std::string& dir, int64_t image_size, int channels) {
  DDPM_CHECK(image_size >= 1 && image_size <= kFolderMaxImageSize,
             "folder: image size " << image_size << " is outside 1.." << kFolderMaxImageSize
                                   << "; ask for the side of the square images to train on");
  DDPM_CHECK(channels == 0 || channels == 1 || channels == 3,
             "folder: " << channels << " channels asked for; use 1 (gray), 3 (RGB) or 0 (the images' own)");
  const ImageFolderListing listing = list_image_folder(dir);
  const int64_t N = static_cast<int64_t>(listing.paths.size()), S = image_size;
  Image img = read_image(listing.paths[0]);
  const int C = channels ? channels : color_channels(img);
  const uint64_t bytes = uint64_t(N) * uint64_t(C) * uint64_t(S * S) * sizeof(float);
  DDPM_CHECK(bytes <= kFolderMaxBytes, "folder: '" << dir << "' has " << N << " images, " << N << " x " << C << " x "
                                                   << S << " x " << S << " floats = " << bytes
                                                   << " bytes, more than the " << kFolderMaxBytes
                                                   << " this loader holds; use a smaller image size or fewer images");
  Dataset d;
  try {
    d.images = Tensor::empty(Shape{N, C, S, S});
  } catch (const Error& error) {  // out of memory: say for what
    DDPM_FAIL("folder: the " << N << " images of '" << dir << "' at " << C << " x " << S << " x " << S
                             << " do not fit in memory as floats: " << error.what());
  }
  for (int64_t n = 0; n < N; n++) {
    const std::string& path = listing.paths[size_t(n)];
    if (n > 0) img = read_image(path);
    DDPM_CHECK(channels != 0 || color_channels(img) == C,
               "folder: '" << path << "' is " << kind_name(color_channels(img)) << " but '" << listing.paths[0]
                           << "' is " << kind_name(C)
                           << ": the images of one folder must agree unless a channel count is asked for; ask for 1 "
                              "or 3 channels to convert them all");
    image_to_tensor(img, S, C, d.images.data() + n * C * S * S, path);
  }
  d.labels = listing.labels;
  d.num_classes = listing.classes.empty() ? 1 : static_cast<int64_t>(listing.classes.size());
  return d;
}

}  // namespace ddpm
