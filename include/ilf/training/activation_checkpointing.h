// Activation checkpointing for training large backbones on little memory: a Backbone wrapper whose
// blocks keep no activations for backward but recompute them there. It is a Backbone like any other,
// so the losses and the inner-loop forward run on it unchanged; the trainer uses it when
// training.activation_checkpointing is on.
#pragma once
#include "ilf/models/backbone.h"

namespace ilf {

// A Backbone whose block() runs with activation checkpointing: the block's activations are not
// kept for backward but recomputed there (gradients equal the plain backbone's). Every other call
// goes to the wrapped backbone. Without grad mode, block() is the wrapped backbone's block().
BackbonePtr with_activation_checkpointing(BackbonePtr backbone);

}  // namespace ilf
