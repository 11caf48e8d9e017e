// config_flags.h: the training config's table (ddpm/train/config.h) as ./train_mnist flags.
#pragma once

#include <string>
#include <type_traits>
#include <vector>

#include "ddpm/app/flags.h"
#include "ddpm/train/config.h"

namespace ddpm {

// What a field is staged as for Flags (ddpm/app/flags.h): integers as int64, double and bool as
// themselves, strings and enums as their names.
template <class T>
struct StagedFlag {
  using type = std::conditional_t<std::is_same<T, double>::value || std::is_same<T, bool>::value, T,
                                  std::conditional_t<std::is_integral<T>::value, int64_t, std::string>>;
};

// The table's fields as ./train_mnist flags. Construct before flags.parse(); then apply()
// writes the given flags into a config (enum names parsed, errors naming the flag), and
// given() lists the flags the command line set.
class TrainConfigFlags {
 public:
  TrainConfigFlags(Flags& flags, const TrainConfig& defaults = TrainConfig());
  void apply(TrainConfig& config) const;
  std::vector<std::string> given() const;

 private:
  Flags& flags_;
#define DDPM_TRAIN_CONFIG_STAGED(T_, name, default_value, flag, bounds, rule, help) typename StagedFlag<T_>::type name;
  DDPM_TRAIN_CONFIG_FIELDS(DDPM_TRAIN_CONFIG_STAGED)
#undef DDPM_TRAIN_CONFIG_STAGED
};

}  // namespace ddpm
