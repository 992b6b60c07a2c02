// Building blocks shared by the DiT and PixArt backbones: the sinusoidal timestep embedding and its
// MLP, the fixed 2-D sin-cos positional embedding, adaLN modulation, the transformer MLP, patch
// embedding / unpatchify, and multi-head self- and cross-attention with a per-image key mask.
// Parameter names follow the official checkpoints (mlp.0 / mlp.2, fc1 / fc2, qkv / proj, q_linear /
// kv_linear / proj) so that named_parameters() of a backbone equals the official state_dict keys.
#pragma once
#include <torch/torch.h>

#include <cstdint>

namespace ilf {

// Sinusoidal timestep embedding (GLIDE order [cos | sin]), computed in float32 whatever t's dtype:
// freqs = exp(-ln(max_period) * arange(dim/2) / (dim/2 - freq_shift)); t (B,) -> (B, dim). freq_shift
// is 0 in the official DiT and PixArt; diffusers' DiTTransformer2DModel uses 1 (its
// downscale_freq_shift).
torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim = 256, double max_period = 10000.0, int64_t freq_shift = 0);

// How the pos-embed grid coordinates are divided by `scale`. PixArt-alpha stores lewei_scale as a
// 1-tuple, so numpy divides the float32 grid by it in float64; PixArt-Sigma's pe_interpolation is a
// plain float and the division stays in float32. (Only matters for scales that are not powers of 2.)
enum class GridScaleDivision { kFloat32, kFloat64 };

// Fixed 2-D sin-cos positional embedding for a grid_h x grid_w token grid (row-major tokens):
// coordinates are arange(n) / (n / base_size) / scale, the first embed_dim/2 channels encode the
// column (w) coordinate and the last embed_dim/2 the row (h) coordinate, each half [sin | cos] with
// omega_k = 1 / 10000^(k / (embed_dim/4)). Computed in float64 like the official numpy code, then
// cast once to float32. Returns (grid_h * grid_w, embed_dim) float32.
torch::Tensor sincos_pos_embed_2d(int64_t embed_dim, int64_t grid_h, int64_t grid_w, double base_size, double scale = 1.0,
                                  GridScaleDivision division = GridScaleDivision::kFloat32);

// adaLN modulation: x * (1 + scale) + shift (shift/scale broadcast against x, e.g. (B, 1, D)).
torch::Tensor modulate(const torch::Tensor& x, const torch::Tensor& shift, const torch::Tensor& scale);

// LayerNorm over the last dim without affine parameters, eps 1e-6 by default (the blocks' norm1 / norm2 /
// norm_final).
torch::Tensor layer_norm_no_affine(const torch::Tensor& x, double eps = 1e-6);

// Tokens (B, h*w, p*p*c), last dim ordered (p_row, p_col, channel) -> image (B, c, h*p, w*p).
torch::Tensor unpatchify(const torch::Tensor& tokens, int64_t grid_h, int64_t grid_w, int64_t patch_size, int64_t channels);

// Scaled dot-product attention. q (B, H, N, hd), k and v (B, H, L, hd); key_mask (B, L) bool
// (true = attend) or undefined. Returns (B, H, N, hd). Uses at::scaled_dot_product_attention on
// LibTorch >= 2, otherwise softmax(q k^T * hd^-0.5) v. A row whose keys are all masked (an image whose
// caption has no valid token) gets zeros: the official code would attend over an empty sequence.
torch::Tensor scaled_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const torch::Tensor& key_mask = {});

// Linear(256, D) - SiLU - Linear(D, D) over the timestep embedding (keys mlp.0, mlp.2). Also the
// PixArt-alpha size / aspect-ratio embedders. The sinusoid is computed in float32 and cast to the
// weights' dtype only at the MLP input.
class TimestepEmbedderImpl : public torch::nn::Module {
 public:
  explicit TimestepEmbedderImpl(int64_t hidden_size, int64_t frequency_size = 256, int64_t freq_shift = 0);
  // t (B,) -> (B, hidden_size)
  torch::Tensor forward(const torch::Tensor& t);

  torch::nn::Sequential mlp{nullptr};
  int64_t frequency_size;
  int64_t freq_shift;  // of timestep_embedding
};
TORCH_MODULE(TimestepEmbedder);

// The transformer MLP: fc1 (D -> hidden) - GELU(tanh) - fc2 (hidden -> out).
class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(int64_t in_features, int64_t hidden_features, int64_t out_features);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Mlp);

// Conv2d patch embedding (key proj): x (B, C, H, W) -> tokens (B, (H/p)(W/p), D), row-major.
class PatchEmbedImpl : public torch::nn::Module {
 public:
  PatchEmbedImpl(int64_t patch_size, int64_t in_channels, int64_t hidden_size);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

// Multi-head self-attention: qkv Linear(D, 3D) split [q | k | v], heads of D/H consecutive channels,
// proj Linear(D, D). With qk_norm (PixArt-Sigma), q and k go through LayerNorm(D) (affine, eps 1e-5;
// keys q_norm / k_norm) before the head split.
class SelfAttentionImpl : public torch::nn::Module {
 public:
  SelfAttentionImpl(int64_t hidden_size, int64_t num_heads, bool qk_norm = false);
  // x (B, N, D) -> (B, N, D)
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear qkv{nullptr}, proj{nullptr};
  torch::nn::LayerNorm q_norm{nullptr}, k_norm{nullptr};
  int64_t num_heads;
};
TORCH_MODULE(SelfAttention);

// Multi-head cross-attention from image tokens to caption tokens: q_linear Linear(D, D), kv_linear
// Linear(D, 2D) (first D outputs are K, last D are V), proj Linear(D, D).
class CrossAttentionImpl : public torch::nn::Module {
 public:
  CrossAttentionImpl(int64_t hidden_size, int64_t num_heads);
  // x (B, N, D), context (B, L, D), key_mask (B, L) bool or undefined -> (B, N, D). Each image attends
  // only to its own valid context tokens.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context, const torch::Tensor& key_mask);

  torch::nn::Linear q_linear{nullptr}, kv_linear{nullptr}, proj{nullptr};
  int64_t num_heads;
};
TORCH_MODULE(CrossAttention);

}  // namespace ilf
