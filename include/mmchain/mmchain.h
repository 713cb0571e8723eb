/* mmchain — the umbrella header: the whole public API.
 *
 * Read the headers in this order: error.h, rng.h, tensor.h, autograd.h,
 * threads.h, ops.h, nn.h, optim.h, io.h, tokenizer.h, models.h, data.h. */
#ifndef MMCHAIN_H
#define MMCHAIN_H

#include "error.h"
#include "rng.h"
#include "tensor.h"
#include "autograd.h"
#include "threads.h"
#include "ops.h"
#include "nn.h"
#include "optim.h"
#include "models.h"
#include "pretrain.h"
#include "clip.h"
#include "io.h"
#include "tokenizer.h"
#include "image.h"
#include "data.h"
#include "synth.h"
#include "run.h"
#include "chain.h"

/* The library version, "MAJOR.MINOR.PATCH". */
const char *mc_version(void);

#endif
