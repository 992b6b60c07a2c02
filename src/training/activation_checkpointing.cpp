// The activation-checkpointing Backbone wrapper (see include/ilf/training/activation_checkpointing.h):
// a custom autograd function per block that saves only the block's inputs and, in backward, runs the
// block again with gradients (under the autocast state of the forward) and back-propagates through it.
#include "ilf/training/activation_checkpointing.h"

#include <torch/torch.h>

#include <vector>

#include "ilf/training/torch_compat.h"

namespace ilf {
namespace {

// Runs one backbone block without keeping its activations; backward recomputes the block with
// gradients enabled and back-propagates through the recomputation (parameters of the block that
// require grad accumulate their .grad there).
class CheckpointedBlockFunction : public torch::autograd::Function<CheckpointedBlockFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& h,
                                                const torch::Tensor& cond_block, const torch::Tensor& cond_head,
                                                const torch::Tensor& caption_tokens, const torch::Tensor& caption_mask,
                                                int64_t present, Backbone* backbone, int64_t j) {
    // Undefined conditioning tensors arrive as empty placeholders (see CheckpointedBackbone::block);
    // `present` says which are real.
    const torch::Tensor inputs[] = {h, cond_block, cond_head, caption_tokens, caption_mask};
    int64_t needs_grad = 0;
    for (int i = 0; i < 5; ++i)
      if (inputs[i].requires_grad()) needs_grad |= int64_t{1} << i;
    ctx->save_for_backward({h, cond_block, cond_head, caption_tokens, caption_mask});
    ctx->saved_data["needs_grad"] = needs_grad;
    ctx->saved_data["present"] = present;
    ctx->saved_data["backbone"] = reinterpret_cast<int64_t>(backbone);
    ctx->saved_data["j"] = j;
    ctx->saved_data["autocast"] = cuda_autocast_enabled();
    auto real = [&](int i) { return (present & (int64_t{1} << i)) ? inputs[i] : torch::Tensor(); };
    return {backbone->block(j, h, Conditioning{real(1), real(2), real(3), real(4)})};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const int64_t needs_grad = ctx->saved_data["needs_grad"].toInt();
    const int64_t present = ctx->saved_data["present"].toInt();
    auto* backbone = reinterpret_cast<Backbone*>(ctx->saved_data["backbone"].toInt());
    const int64_t j = ctx->saved_data["j"].toInt();
    const bool autocast = ctx->saved_data["autocast"].toBool();

    std::vector<torch::Tensor> inputs(5);
    for (int i = 0; i < 5; ++i) {
      if (!(present & (int64_t{1} << i))) continue;
      inputs[i] = saved[i].detach();
      if (needs_grad & (int64_t{1} << i)) inputs[i].requires_grad_(true);
    }
    torch::Tensor out;
    {
      torch::AutoGradMode enable_grad(true);
      const bool previous_autocast = cuda_autocast_enabled();
      if (autocast != previous_autocast) set_cuda_autocast(autocast);
      out = backbone->block(j, inputs[0], Conditioning{inputs[1], inputs[2], inputs[3], inputs[4]});
      if (autocast != previous_autocast) set_cuda_autocast(previous_autocast);
      if (out.requires_grad()) torch::autograd::backward({out}, {grad_outputs[0]});
    }
    torch::autograd::variable_list grads(8);
    for (int i = 0; i < 5; ++i)
      if (inputs[i].defined() && inputs[i].requires_grad()) grads[i] = inputs[i].grad();
    return grads;
  }
};

class CheckpointedBackbone : public Backbone {
 public:
  explicit CheckpointedBackbone(BackbonePtr inner) : inner_(register_module("inner", std::move(inner))) {}

  std::string family() const override { return inner_->family(); }
  std::string variant() const override { return inner_->variant(); }
  int64_t depth() const override { return inner_->depth(); }
  int64_t hidden_size() const override { return inner_->hidden_size(); }
  int64_t in_channels() const override { return inner_->in_channels(); }
  int64_t out_channels() const override { return inner_->out_channels(); }
  int64_t patch_size() const override { return inner_->patch_size(); }
  int64_t input_size() const override { return inner_->input_size(); }
  bool accepts_any_size() const override { return inner_->accepts_any_size(); }
  ConditionKind condition_kind() const override { return inner_->condition_kind(); }
  int64_t num_classes() const override { return inner_->num_classes(); }
  int64_t caption_channels() const override { return inner_->caption_channels(); }
  int64_t caption_length() const override { return inner_->caption_length(); }
  bool uses_size_conditioning() const override { return inner_->uses_size_conditioning(); }
  bool has_learned_null_condition() const override { return inner_->has_learned_null_condition(); }
  void set_null_condition(const ConditionInputs& null) override { inner_->set_null_condition(null); }
  nlohmann::json architecture_json() const override { return inner_->architecture_json(); }
  torch::Tensor embed(const torch::Tensor& x) override { return inner_->embed(x); }
  Conditioning condition(const torch::Tensor& t, const ConditionInputs& inputs) override { return inner_->condition(t, inputs); }
  torch::Tensor block(int64_t j, const torch::Tensor& h, const Conditioning& cond) override {
    if (!torch::GradMode::is_enabled()) return inner_->block(j, h, cond);
    // Custom autograd functions take only defined tensors: undefined ones travel as empty placeholders.
    const torch::Tensor parts[] = {h, cond.block, cond.head, cond.caption_tokens, cond.caption_mask};
    int64_t present = 0;
    torch::Tensor args[5];
    for (int i = 0; i < 5; ++i) {
      if (parts[i].defined()) present |= int64_t{1} << i;
      args[i] = parts[i].defined() ? parts[i] : torch::empty({0}, h.options());
    }
    return CheckpointedBlockFunction::apply(args[0], args[1], args[2], args[3], args[4], present, inner_.get(), j)[0];
  }
  torch::Tensor head(const torch::Tensor& h, const Conditioning& cond, int64_t height, int64_t width) override {
    return inner_->head(h, cond, height, width);
  }
  BlockPtr make_block() const override { return inner_->make_block(); }
  BlockPtr block_module(int64_t j) const override { return inner_->block_module(j); }
  ConditionInputs null_condition(const ConditionInputs& like) const override { return inner_->null_condition(like); }

 private:
  BackbonePtr inner_;
};

}  // namespace

BackbonePtr with_activation_checkpointing(BackbonePtr backbone) {
  return std::make_shared<CheckpointedBackbone>(std::move(backbone));
}

}  // namespace ilf
