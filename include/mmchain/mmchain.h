/* mmchain — the umbrella header: the whole public API of the library.
 *
 * Read the headers in this order (each needs only those before it):
 * version.h, error.h, rng.h, tensor.h, autograd.h, gradcheck.h, threads.h,
 * ops.h, nn.h, dist.h, optim.h, io.h, checkpoint.h, tokenizer.h, models.h,
 * clip.h, image.h, augment.h, data.h, synth.h, chain.h, pretrain.h.
 *
 * The application built on the library (the run folder, report.html, the
 * demo and the `mmchain` program) is not part of it: see app/. */
#ifndef MMCHAIN_H
#define MMCHAIN_H

#include "version.h"
#include "error.h"
#include "rng.h"
#include "tensor.h"
#include "autograd.h"
#include "gradcheck.h"
#include "threads.h"
#include "ops.h"
#include "nn.h"
#include "dist.h"
#include "optim.h"
#include "io.h"
#include "checkpoint.h"
#include "tokenizer.h"
#include "models.h"
#include "clip.h"
#include "image.h"
#include "augment.h"
#include "data.h"
#include "synth.h"
#include "chain.h"
#include "pretrain.h"

#endif
