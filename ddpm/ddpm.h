// ddpm.h: the library's public API in one include, for programs built on the installed
// library (docs/library.md; examples/sample16 uses nothing else). It sits on top of the
// stack (tools/check_layers.sh): it may include every layer, and no file in ddpm/ includes it.
//
//   load a model       ddpm/train/checkpoint.h   load_model: a checkpoint or a weights file -> UNet
//                      ddpm/train/config.h       TrainConfig::from_metadata: its schedule, T, ...
//                      ddpm/model/unet.h         UNet, UNetConfig, unet_config("tiny" | "small" | "cifar10"),
//                                                resized_config
//   sample             ddpm/diffusion/schedule.h make_schedule (linear, cosine, sigmoid, quadratic)
//                      ddpm/diffusion/algorithms.h  sample: Algorithm 2
//                      ddpm/app/sampling.h       unet_model (U-Net -> the reverse process's model),
//                                                samplers (Algorithm 2, DDIM), sample_in_batches
//   write images       ddpm/io/png.h             write_image_grid, write_png
//   train              ddpm/data/dataset.h       Dataset, load_dataset
//                      ddpm/train/trainer.h      Trainer: Algorithm 1 steps, Adam, EMA, checkpoints
//   run                ddpm/core/parallel.h      set_num_threads
//                      ddpm/app/flags.h          default_threads, run_tool (main's error handling)
//                      ddpm/core/check.h         ddpm::Error, what every check throws
//                      ddpm/core/tensor.h        Tensor [N, C, H, W], float32, contiguous
#pragma once

#include "ddpm/app/flags.h"
#include "ddpm/app/sampling.h"
#include "ddpm/core/check.h"
#include "ddpm/core/parallel.h"
#include "ddpm/core/tensor.h"
#include "ddpm/data/dataset.h"
#include "ddpm/diffusion/algorithms.h"
#include "ddpm/diffusion/schedule.h"
#include "ddpm/io/png.h"
#include "ddpm/model/unet.h"
#include "ddpm/train/checkpoint.h"
#include "ddpm/train/config.h"
#include "ddpm/train/trainer.h"
