// make_corpus: writes the seed corpora of the fuzz harnesses into tests/fuzz/corpus/
// (`make fuzz-corpus`, from the repository root; the output is committed). Seeds are
// small valid inputs plus a few near-misses, so the fuzzer starts deep inside each format.
#include <sys/stat.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/data/cifar10.h"
#include "ddpm/io/file.h"
#include "ddpm/io/png.h"
#include "ddpm/io/safetensors.h"
#include "tests/fuzz/fuzz_setup.h"

using namespace ddpm;

namespace {

void put(const std::string& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  ::mkdir(dir.c_str(), 0755);
  write_file_atomic(dir + "/" + name, bytes);
}

std::vector<uint8_t> be32(uint32_t v) {
  return {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)};
}

std::vector<uint8_t> idx(uint32_t magic, const std::vector<uint32_t>& dims, size_t payload) {
  std::vector<uint8_t> out = be32(magic);
  for (uint32_t d : dims) {
    auto b = be32(d);
    out.insert(out.end(), b.begin(), b.end());
  }
  for (size_t i = 0; i < payload; i++) out.push_back(static_cast<uint8_t>(i * 37));
  return out;
}

std::vector<uint8_t> words(const std::vector<std::string>& args) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i < args.size(); i++) {
    if (i) out.push_back(0);
    out.insert(out.end(), args[i].begin(), args[i].end());
  }
  return out;
}

// A checkpoint's metadata (config.*, train.*, format, state.*) with no tensors.
std::map<std::string, std::string> checkpoint_metadata() {
  std::map<std::string, std::string> m = fuzzing::fuzz_unet_config().to_metadata();
  for (auto& kv : fuzzing::fuzz_train_config().to_metadata()) m.insert(kv);
  m["format"] = "ddpm.checkpoint";
  m["format_version"] = "1";
  for (const char* k : {"state.step", "state.epoch", "state.position", "state.adam_steps", "state.ema_updates"})
    m[k] = "1";
  m["state.data_size"] = "8";
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string root = argc > 1 ? argv[1] : "tests/fuzz/corpus";
  ::mkdir(root.c_str(), 0755);

  const std::string id = root + "/idx";
  put(id, "images-2x3x3", idx(0x803, {2, 3, 3}, 18));
  put(id, "images-0", idx(0x803, {0, 28, 28}, 0));
  put(id, "labels-5", idx(0x801, {5}, 5));
  put(id, "images-truncated", idx(0x803, {2, 4, 4}, 20));
  put(id, "labels-as-images", idx(0x801, {3}, 3));

  const std::string sd = root + "/safetensors";
  put(sd, "empty", encode_safetensors({}));
  Tensor a({2, 3}), b({4});
  for (int64_t i = 0; i < 6; i++) a[i] = 0.5f * static_cast<float>(i);
  for (int64_t i = 0; i < 4; i++) b[i] = -1.0f * static_cast<float>(i);
  put(sd, "two-tensors-metadata", encode_safetensors({{"a", a}, {"b", b}}, {{"note", "x"}}));
  put(sd, "scalar-and-empty", encode_safetensors({{"s", Tensor(Shape{})}, {"e", Tensor({0, 3})}}));
  // Other dtypes, by hand: {"x": F16 [2]} and {"y": I64 [1]}.
  for (auto dtype_bytes : std::vector<std::pair<std::string, std::vector<uint8_t>>>{
           {"F16", {0x00, 0x3C, 0x00, 0xC0}}, {"BF16", {0x80, 0x3F, 0x00, 0x40}},
           {"I64", {1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}}, {"U8", {1, 2}}}) {
    const size_t n = dtype_bytes.second.size();
    std::string json = "{\"x\":{\"dtype\":\"" + dtype_bytes.first + "\",\"shape\":[2],\"data_offsets\":[0," +
                       std::to_string(n) + "]}}";
    while (json.size() % 8) json += ' ';
    std::vector<uint8_t> file(8, 0);
    file[0] = static_cast<uint8_t>(json.size());
    file.insert(file.end(), json.begin(), json.end());
    file.insert(file.end(), dtype_bytes.second.begin(), dtype_bytes.second.end());
    put(sd, "dtype-" + dtype_bytes.first, file);
  }
  put(sd, "checkpoint-metadata-only", encode_safetensors({}, checkpoint_metadata()));
  {
    static const UNetConfig model_config = fuzzing::fuzz_unet_config();
    Trainer trainer(fuzzing::fuzz_train_config(), fuzzing::fuzz_dataset(), &model_config);
    trainer.step();
    const std::string path = sd + "/checkpoint-fuzz-unet";
    trainer.save_checkpoint(path);
  }

  const std::string fd = root + "/flags";
  put(fd, "all-kinds", words({"--steps", "12", "--lr=0.5", "--out", "dir", "--conditional", "--no-ema"}));
  put(fd, "equals", words({"--seed=-3", "--conditional=false", "--out="}));
  put(fd, "typo", words({"--stesp", "4"}));
  put(fd, "help", words({"--steps", "1", "--help"}));
  put(fd, "bad-number", words({"--lr", "1e999"}));
  // png: the repo's own writer for gray, RGB and RGBA (stored deflate blocks); zlib's
  // files from tests/fixtures/zlib_fixtures.py for dynamic Huffman codes, a palette (with
  // tRNS), gray+alpha and a 4-bit palette; PGM and PPM; and near-misses.
  const std::string pd = root + "/png";
  for (int channels : {1, 3, 4}) {
    std::vector<uint8_t> pixels(size_t(5 * 3 * channels));
    for (size_t i = 0; i < pixels.size(); i++) pixels[i] = static_cast<uint8_t>(i * 29);
    put(pd, "writer-" + std::to_string(channels) + "ch-5x3.png", encode_png(5, 3, channels, pixels.data()));
  }
  for (const char* name : {"rgb8-dynamic", "palette8", "gray-alpha8", "palette4"})
    put(pd, std::string("zlib-") + name + ".png", read_file_bytes(std::string("tests/fixtures/png/") + name + ".png"));
  const std::string pgm = "P5\n# a comment\n3 2\n255\n", ppm = "P6 2 1 15\n";
  std::vector<uint8_t> pgm_file(pgm.begin(), pgm.end()), ppm_file(ppm.begin(), ppm.end());
  pgm_file.insert(pgm_file.end(), {0, 50, 100, 150, 200, 250});
  ppm_file.insert(ppm_file.end(), {1, 2, 3, 13, 14, 15});
  put(pd, "gray-3x2.pgm", pgm_file);
  put(pd, "rgb-2x1-maxval15.ppm", ppm_file);
  std::vector<uint8_t> bad_crc = encode_png(2, 2, 1, std::vector<uint8_t>{1, 2, 3, 4}.data());
  bad_crc[bad_crc.size() - 20] ^= 1;  // inside IDAT
  put(pd, "bad-crc.png", bad_crc);
  std::vector<uint8_t> cut = encode_png(4, 4, 3, std::vector<uint8_t>(48, 7).data());
  cut.resize(cut.size() - 15);  // no IEND
  put(pd, "truncated.png", cut);

  // cifar: whole records (labels 3 and 9, then 0), and near-misses.
  const std::string cd = root + "/cifar";
  auto records = [](const std::vector<uint8_t>& labels) {
    std::vector<uint8_t> out;
    for (uint8_t label : labels) {
      out.push_back(label);
      for (size_t i = 0; i < kCifarImageBytes; i++) out.push_back(static_cast<uint8_t>(i * 7 + label));
    }
    return out;
  };
  put(cd, "two-records", records({3, 9}));
  put(cd, "one-record", records({0}));
  std::vector<uint8_t> label10 = records({10});
  put(cd, "label-10", label10);
  std::vector<uint8_t> short_record = records({1, 2});
  short_record.resize(short_record.size() - 100);
  put(cd, "truncated-record", short_record);

  std::printf("wrote the seed corpora under %s\n", root.c_str());
  return 0;
}
