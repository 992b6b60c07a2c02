// Shared backbone building blocks (see include/ilf/models/layers.h). The arithmetic follows the
// official code operation by operation (same dtypes, same order) so that float32 results agree with
// the reference vectors to a few ulps.
#include "ilf/models/layers.h"

#include <torch/version.h>

#include <cmath>
#include <limits>
#include <vector>

namespace ilf {

torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim, double max_period, int64_t freq_shift) {
  const int64_t half = dim / 2;
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(t.device());
  // (half,) float32, evaluated like the official torch expression (scalar factors applied in float32).
  const torch::Tensor freqs = torch::exp(-std::log(max_period) * torch::arange(0, half, options) / (half - freq_shift));
  const torch::Tensor args = t.reshape({-1, 1}).to(torch::kFloat32) * freqs.unsqueeze(0);  // (B, half)
  torch::Tensor embedding = torch::cat({torch::cos(args), torch::sin(args)}, -1);          // (B, 2*half)
  if (dim % 2) embedding = torch::cat({embedding, torch::zeros_like(embedding.narrow(1, 0, 1))}, -1);
  return embedding;
}

torch::Tensor sincos_pos_embed_2d(int64_t embed_dim, int64_t grid_h, int64_t grid_w, double base_size, double scale,
                                  GridScaleDivision division) {
  TORCH_CHECK(embed_dim % 4 == 0, "sincos_pos_embed_2d: embed_dim must be a multiple of 4, got ", embed_dim);
  TORCH_CHECK(grid_h > 0 && grid_w > 0, "sincos_pos_embed_2d: empty grid");
  // Grid coordinates as numpy computes them: float32 arange divided by the float32 value of
  // n / base_size, then by the scale (in float32 or float64, see GridScaleDivision).
  auto coordinates = [&](int64_t n) {
    const float step = static_cast<float>(static_cast<double>(n) / base_size);
    std::vector<double> coords(n);
    for (int64_t i = 0; i < n; ++i) {
      const float g = static_cast<float>(i) / step;
      coords[i] = division == GridScaleDivision::kFloat32 ? static_cast<double>(g / static_cast<float>(scale))
                                                          : static_cast<double>(g) / scale;
    }
    return coords;
  };
  const std::vector<double> rows = coordinates(grid_h), cols = coordinates(grid_w);
  const int64_t quarter = embed_dim / 4;  // frequencies per coordinate
  std::vector<double> omega(quarter);
  for (int64_t k = 0; k < quarter; ++k) omega[k] = 1.0 / std::pow(10000.0, static_cast<double>(k) / quarter);

  torch::Tensor out = torch::empty({grid_h * grid_w, embed_dim}, torch::kFloat32);  // (T, D)
  float* data = out.data_ptr<float>();
  for (int64_t r = 0; r < grid_h; ++r) {
    for (int64_t c = 0; c < grid_w; ++c) {
      float* row = data + (r * grid_w + c) * embed_dim;
      for (int64_t k = 0; k < quarter; ++k) {
        const double col_arg = cols[c] * omega[k], row_arg = rows[r] * omega[k];
        row[k] = static_cast<float>(std::sin(col_arg));  // column half: [sin | cos]
        row[quarter + k] = static_cast<float>(std::cos(col_arg));
        row[2 * quarter + k] = static_cast<float>(std::sin(row_arg));  // row half: [sin | cos]
        row[3 * quarter + k] = static_cast<float>(std::cos(row_arg));
      }
    }
  }
  return out;
}

torch::Tensor modulate(const torch::Tensor& x, const torch::Tensor& shift, const torch::Tensor& scale) {
  return x * (1 + scale) + shift;
}

torch::Tensor layer_norm_no_affine(const torch::Tensor& x, double eps) {
  return torch::layer_norm(x, {x.size(-1)}, /*weight=*/{}, /*bias=*/{}, eps);
}

torch::Tensor unpatchify(const torch::Tensor& tokens, int64_t grid_h, int64_t grid_w, int64_t patch_size, int64_t channels) {
  TORCH_CHECK(tokens.dim() == 3 && tokens.size(1) == grid_h * grid_w && tokens.size(2) == patch_size * patch_size * channels,
              "unpatchify: expected tokens (B, ", grid_h * grid_w, ", ", patch_size * patch_size * channels, "), got ",
              tokens.sizes());
  const int64_t batch = tokens.size(0);
  // (B, h, w, p, p, c) -> (B, c, h, p, w, p) -> (B, c, h*p, w*p)
  return tokens.reshape({batch, grid_h, grid_w, patch_size, patch_size, channels})
      .permute({0, 5, 1, 3, 2, 4})
      .reshape({batch, channels, grid_h * patch_size, grid_w * patch_size});
}

torch::Tensor scaled_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const torch::Tensor& key_mask) {
  torch::Tensor mask;      // (B, 1, 1, L) bool, true = attend
  torch::Tensor has_keys;  // (B, 1, 1, 1): false for images without any valid key
  if (key_mask.defined()) {
    TORCH_CHECK(key_mask.dim() == 2 && key_mask.size(0) == q.size(0) && key_mask.size(1) == k.size(2),
                "scaled_attention: key_mask must be (B, L) = (", q.size(0), ", ", k.size(2), "), got ", key_mask.sizes());
    torch::Tensor valid = key_mask.to(torch::kBool);
    has_keys = valid.any(1).view({-1, 1, 1, 1});
    // An all-masked row would be softmax over nothing (NaN); let it attend everywhere and zero its
    // output below, which also keeps gradients finite.
    mask = valid.logical_or(has_keys.view({-1, 1}).logical_not()).view({valid.size(0), 1, 1, valid.size(1)});
  }
  torch::Tensor out;
#if TORCH_VERSION_MAJOR >= 2
  out = at::scaled_dot_product_attention(q, k, v, mask.defined() ? c10::optional<at::Tensor>(mask) : c10::nullopt);
#else
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  torch::Tensor logits = torch::matmul(q, k.transpose(-2, -1)) * scale;  // (B, H, N, L)
  if (mask.defined()) logits = logits.masked_fill(mask.logical_not(), -std::numeric_limits<double>::infinity());
  out = torch::matmul(logits.softmax(-1), v);  // (B, H, N, hd)
#endif
  if (has_keys.defined()) out = out * has_keys.to(out.dtype());
  return out;
}

TimestepEmbedderImpl::TimestepEmbedderImpl(int64_t hidden_size, int64_t frequency_size, int64_t freq_shift)
    : frequency_size(frequency_size), freq_shift(freq_shift) {
  mlp = register_module("mlp", torch::nn::Sequential(torch::nn::Linear(frequency_size, hidden_size), torch::nn::SiLU(),
                                                     torch::nn::Linear(hidden_size, hidden_size)));
}

torch::Tensor TimestepEmbedderImpl::forward(const torch::Tensor& t) {
  const torch::Tensor& weight = mlp->ptr<torch::nn::LinearImpl>(0)->weight;
  return mlp->forward(timestep_embedding(t.to(weight.device()), frequency_size, 10000.0, freq_shift).to(weight.scalar_type()));
}

MlpImpl::MlpImpl(int64_t in_features, int64_t hidden_features, int64_t out_features) {
  fc1 = register_module("fc1", torch::nn::Linear(in_features, hidden_features));
  fc2 = register_module("fc2", torch::nn::Linear(hidden_features, out_features));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) { return fc2(torch::gelu(fc1(x), "tanh")); }

PatchEmbedImpl::PatchEmbedImpl(int64_t patch_size, int64_t in_channels, int64_t hidden_size) {
  proj = register_module(
      "proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, hidden_size, patch_size).stride(patch_size).bias(true)));
}

torch::Tensor PatchEmbedImpl::forward(const torch::Tensor& x) {
  // (B, C, H, W) -> (B, D, H/p, W/p) -> (B, T, D)
  return proj(x.to(proj->weight.scalar_type())).flatten(2).transpose(1, 2);
}

SelfAttentionImpl::SelfAttentionImpl(int64_t hidden_size, int64_t num_heads, bool qk_norm) : num_heads(num_heads) {
  TORCH_CHECK(hidden_size % num_heads == 0, "SelfAttention: hidden_size ", hidden_size, " is not divisible by num_heads ",
              num_heads);
  qkv = register_module("qkv", torch::nn::Linear(hidden_size, 3 * hidden_size));
  if (qk_norm) {
    q_norm = register_module("q_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({hidden_size}).eps(1e-5)));
    k_norm = register_module("k_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({hidden_size}).eps(1e-5)));
  }
  proj = register_module("proj", torch::nn::Linear(hidden_size, hidden_size));
}

torch::Tensor SelfAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t batch = x.size(0), tokens = x.size(1), dim = x.size(2), head_dim = dim / num_heads;
  const std::vector<torch::Tensor> qkv_parts = qkv(x).reshape({batch, tokens, 3, dim}).unbind(2);  // 3 x (B, N, D)
  torch::Tensor q = qkv_parts[0], k = qkv_parts[1], v = qkv_parts[2];
  if (!q_norm.is_empty()) {
    q = q_norm(q);
    k = k_norm(k);
  }
  auto heads = [&](const torch::Tensor& t) { return t.reshape({batch, tokens, num_heads, head_dim}).transpose(1, 2); };
  const torch::Tensor out = scaled_attention(heads(q), heads(k), heads(v));  // (B, H, N, hd)
  return proj(out.transpose(1, 2).reshape({batch, tokens, dim}));
}

CrossAttentionImpl::CrossAttentionImpl(int64_t hidden_size, int64_t num_heads) : num_heads(num_heads) {
  TORCH_CHECK(hidden_size % num_heads == 0, "CrossAttention: hidden_size ", hidden_size, " is not divisible by num_heads ",
              num_heads);
  q_linear = register_module("q_linear", torch::nn::Linear(hidden_size, hidden_size));
  kv_linear = register_module("kv_linear", torch::nn::Linear(hidden_size, 2 * hidden_size));
  proj = register_module("proj", torch::nn::Linear(hidden_size, hidden_size));
}

torch::Tensor CrossAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& context, const torch::Tensor& key_mask) {
  const int64_t batch = x.size(0), tokens = x.size(1), dim = x.size(2), head_dim = dim / num_heads;
  const int64_t context_len = context.size(1);
  const torch::Tensor q = q_linear(x).reshape({batch, tokens, num_heads, head_dim}).transpose(1, 2);  // (B, H, N, hd)
  const torch::Tensor kv = kv_linear(context).reshape({batch, context_len, 2, num_heads, head_dim});  // (B, L, 2, H, hd)
  const torch::Tensor k = kv.select(2, 0).transpose(1, 2), v = kv.select(2, 1).transpose(1, 2);       // (B, H, L, hd)
  const torch::Tensor out = scaled_attention(q, k, v, key_mask);                                      // (B, H, N, hd)
  return proj(out.transpose(1, 2).reshape({batch, tokens, dim}));
}

}  // namespace ilf
