// sample16: 16 images from a ddpm checkpoint with Algorithm 2, written as a 4x4 grid.
//   sample16 CHECKPOINT [OUT.png] [SCHEDULE T]
// CHECKPOINT is a ./train_mnist checkpoint (EMA weights; its schedule and T are in its metadata)
// or a weights file, which needs SCHEDULE and T (e.g. linear 1000). Built on the installed
// library only: see docs/library.md.
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include <ddpm/ddpm.h>

int run(int argc, char** argv) {
  if (argc != 2 && argc != 3 && argc != 5) {
    std::fprintf(stderr, "usage: %s CHECKPOINT [OUT.png] [SCHEDULE T]\n", argv[0]);
    return 2;
  }
  const std::string path = argv[1], out = argc > 2 ? argv[2] : "sample16.png";
  ddpm::set_num_threads(static_cast<int>(ddpm::default_threads()));
  std::map<std::string, std::string> meta;
  std::unique_ptr<ddpm::UNet> unet = ddpm::load_model(path, /*use_ema=*/true, &meta);
  const ddpm::UNetConfig& c = unet->config();

  // The schedule the model was trained with: train.schedule and train.T, or the command line.
  std::string schedule = argc == 5 ? argv[3] : "";
  int64_t T = 0;
  if (argc == 5) ddpm::from_text(argv[4], T);  // strict: the whole word an integer
  else if (meta.count("train.T")) {
    const ddpm::TrainConfig train = ddpm::TrainConfig::from_metadata(meta, path);
    schedule = train.schedule, T = train.T;
  } else throw ddpm::Error(path + " does not record its schedule: pass SCHEDULE T (e.g. linear 1000)");
  const ddpm::Schedule s = ddpm::make_schedule(schedule, T);

  // Algorithm 2 for [16, C, S, S], the model as the checkpoint was trained (eps/x0/v, its Sigma).
  const ddpm::ModelFn model = ddpm::unet_model(*unet, s, ddpm::prediction_target(meta),
                                               ddpm::checkpoint_sigma(c, meta, /*requested=*/""));
  const ddpm::SampleResult r = ddpm::sample(s, model, {16, c.in_ch, c.image_size, c.image_size}, /*seed=*/0);
  ddpm::write_image_grid(out, r.x0, /*nrow=*/4);  // 4 * (S + 2) + 2 pixels square
  std::printf("wrote %s: 16 samples of %s, %s schedule, T = %lld\n", out.c_str(), c.name.c_str(), s.name.c_str(),
              static_cast<long long>(s.T));
  return 0;
}

int main(int argc, char** argv) { return ddpm::run_tool(run, argc, argv); }
