#include "ddpm/app/config_flags.h"

#include "ddpm/core/check.h"

namespace ddpm {

namespace {

// A flag's staged value (StagedFlag) into the field.
void from_flag(const std::string& flag, int64_t staged, int64_t& v) { v = staged; (void)flag; }
void from_flag(const std::string& flag, int64_t staged, uint64_t& v) {
  DDPM_CHECK(staged >= 0, flag << " " << staged << " must be non-negative");
  v = static_cast<uint64_t>(staged);
}
void from_flag(const std::string&, double staged, double& v) { v = staged; }
void from_flag(const std::string&, bool staged, bool& v) { v = staged; }
template <class T>
void from_flag(const std::string& flag, const std::string& staged, T& v) {
  try {
    from_text(staged, v);
  } catch (const Error& e) {
    DDPM_FAIL(flag << ": " << e.what());
  }
}
template <class T>
typename StagedFlag<T>::type to_staged(const T& v) {
  if constexpr (std::is_same<typename StagedFlag<T>::type, std::string>::value) return to_text(v);
  else return static_cast<typename StagedFlag<T>::type>(v);
}

}  // namespace

TrainConfigFlags::TrainConfigFlags(Flags& flags, const TrainConfig& defaults) : flags_(flags) {
#define DDPM_FIELD(T_, name, default_value, flag, bounds, rule, help) \
  name = to_staged(defaults.name);                                      \
  flags.add(flag, &name, help);
  DDPM_TRAIN_CONFIG_FIELDS(DDPM_FIELD)
#undef DDPM_FIELD
}

void TrainConfigFlags::apply(TrainConfig& config) const {
#define DDPM_FIELD(T_, name, default_value, flag, bounds, rule, help) \
  if (flags_.given(flag)) from_flag(flag, name, config.name);
  DDPM_TRAIN_CONFIG_FIELDS(DDPM_FIELD)
#undef DDPM_FIELD
}

std::vector<std::string> TrainConfigFlags::given() const {
  std::vector<std::string> names;
#define DDPM_FIELD(T_, name, default_value, flag, bounds, rule, help) \
  if (flags_.given(flag)) names.push_back(flag);
  DDPM_TRAIN_CONFIG_FIELDS(DDPM_FIELD)
#undef DDPM_FIELD
  return names;
}

}  // namespace ddpm
