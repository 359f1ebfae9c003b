// The torch operator mythos::latent_attention over the C kernel in latent_attention.c.
//
// Registered from C++ so that a compiled decode step (inductor's C++ wrapper) reaches the kernel through
// the dispatcher alone: no return to Python, no GIL, no Python-side argument handling per call.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <vector>

extern "C" int latent_attention(const float *q, int64_t rows, int64_t rows_per_batch, int64_t H, int64_t C,
                                const void *cache, int key_bits, int64_t batch_stride, int64_t row_stride,
                                const int64_t *n_keys, int64_t r, float scale, float *out, float *work);

namespace {

constexpr int64_t kBlock = 32;  // keys per block in latent_attention.c
constexpr int64_t kMaxHeads = 64;

at::Tensor latent_attention_cpu(const at::Tensor &query, const at::Tensor &keys, const at::Tensor &n_keys,
                                double scale, int64_t value_dim) {
    const int key_bits = keys.scalar_type() == at::kFloat ? 32 : keys.scalar_type() == at::kBFloat16 ? 16 : 0;
    TORCH_CHECK_VALUE(query.dim() == 4 && keys.dim() == 3 && query.scalar_type() == at::kFloat && key_bits != 0 &&
                          keys.stride(-1) == 1 && keys.size(0) == query.size(0) && keys.size(2) == query.size(3),
                      "latent_attention: an fp32 query (B, T, H, C) and fp32 or bf16 keys (B, S, C) with "
                      "contiguous rows are required");
    const int64_t B = query.size(0), T = query.size(1), H = query.size(2), C = query.size(3), S = keys.size(1);
    TORCH_CHECK_VALUE(H <= kMaxHeads, "latent_attention: ", H, " heads is more than the kernel supports (64)");
    TORCH_CHECK_VALUE(0 < value_dim && value_dim <= C, "latent_attention: value_dim must be in 1..", C);
    TORCH_CHECK_VALUE(n_keys.numel() == B * T, "latent_attention: n_keys must hold one count per query row");
    const at::Tensor q = query.contiguous();
    const at::Tensor counts_in = n_keys.to(at::kLong).contiguous();
    const int64_t *counts_ptr = counts_in.data_ptr<int64_t>();
    std::vector<int64_t> counts(counts_ptr, counts_ptr + B * T);
    for (auto &n : counts) n = std::clamp<int64_t>(n, 0, S);
    at::Tensor out = at::empty({B, T, H, value_dim}, q.options());
    thread_local std::vector<float> work;
    work.resize(std::max(H * (C + kBlock + 2), 8 * (C + kBlock)) + 16 + kBlock * C);
    const int status = latent_attention(q.data_ptr<float>(), B * T, T, H, C, keys.data_ptr(), key_bits,
                                        keys.stride(0), keys.stride(1), counts.data(), value_dim,
                                        static_cast<float>(scale), out.data_ptr<float>(), work.data());
    TORCH_CHECK_VALUE(status == 0, "latent_attention: unsupported shape (", H, " heads, row width ", C, ")");
    return out;
}

}  // namespace

TORCH_LIBRARY(mythos, m) {
    m.def("latent_attention(Tensor query, Tensor keys, Tensor n_keys, float scale, int value_dim) -> Tensor");
}

TORCH_LIBRARY_IMPL(mythos, CPU, m) { m.impl("latent_attention", &latent_attention_cpu); }
