// The two places where training code must spell things differently for LibTorch 1.x (Debian's
// 1.13) and 2.x (the CUDA machines): switching bf16 autocast on CUDA, and the key type of
// Optimizer::state(). Kept in one file so that the trainer and the activation-checkpointing wrapper
// say what they mean and the version checks live in one place.
#pragma once
#include <torch/torch.h>

#include <sstream>
#include <string>
#include <type_traits>

namespace ilf {

// Whether autocast is on for CUDA in this thread.
bool cuda_autocast_enabled();

// Switches bf16 autocast on CUDA on or off for this thread (off also clears the autocast cache).
void set_cuda_autocast(bool enabled);

// bf16 autocast on CUDA for the lifetime of the object (a no-op when `enabled` is false).
class AutocastScope {
 public:
  explicit AutocastScope(bool enabled) : enabled_(enabled) {
    if (enabled_) set_cuda_autocast(true);
  }
  ~AutocastScope() {
    if (enabled_) set_cuda_autocast(false);
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool enabled_;
};

// The key of parameter `p` in an Optimizer::state() map: a string in LibTorch 1.x (what
// c10::guts::to_string(TensorImpl*) gives), the TensorImpl pointer in 2.x.
template <typename StateMap>
typename StateMap::key_type optimizer_state_key(const StateMap&, const torch::Tensor& p) {
  using Key = typename StateMap::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream key;
    key << p.unsafeGetTensorImpl();
    return key.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

}  // namespace ilf
