#include "ddpm/app/checkpoint_model.h"

#include <algorithm>

#include "ddpm/app/sampling.h"
#include "ddpm/train/checkpoint.h"

namespace ddpm {

LoadedModel load_checkpoint_model(const std::string& path, bool use_ema, bool require_train_config) {
  LoadedModel m;
  m.model = load_model(path, use_ema, &m.metadata, &m.ema);
  const bool has_train_config = std::any_of(m.metadata.begin(), m.metadata.end(), [](const auto& kv) {
    return kv.first.compare(0, 6, "train.") == 0;
  });
  if (has_train_config || require_train_config) {
    // The trainer's own checks of train.*, naming the file ("metadata has no 'train.…'").
    m.train = TrainConfig::from_metadata(m.metadata, path);
    m.schedule = make_schedule(m.train->schedule, m.train->T);
  }
  m.predict = prediction_target(m.metadata);
  return m;
}

}  // namespace ddpm
