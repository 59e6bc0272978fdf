// One LSTM layer's time loop, forward and backward, with each step's element-wise cell fused into one pass
// over (B, H). The maths is model.py's layer_forward / layer_backward line for line (docs/derivation.md,
// equation numbers in the comments); the matmuls stay ATen's: the recurrent one through oneDNN with its weight
// packed once per layer call (mkldnn::_linear_pointwise; 1.7-2.2x BLAS's sgemm in float32 and 1.03-1.09x
// aten::mm in bfloat16 at B 128, H 512 on the EPYC of README's Speed: benchmark.py matmul), else at::mm
// (float64, no oneDNN).
//
// Dtypes: scalar_t is the gates', cell states' and tanh(c)'s (float32, or float64 in the tests); md_t is the
// matmuls' (scalar_t, or bfloat16 under --precision bf16: h_t and dz are then written in bfloat16 straight
// from the fused pass, the recurrent product read in bfloat16 and added there, so no step converts a tensor).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <vector>
#include <c10/core/impl/alloc_cpu.h>

namespace {

// The loops' big buffers (the activations, cell states, dz: MBs each) come from this pool and go back to it
// when the last tensor on them dies (their storage's deleter), so a buffer saved for backward is never handed
// out while a graph still holds it. Without it each layer call maps them anew: glibc serves blocks above
// 32 MB with mmap, and the kernel faults a fresh 52 MB block in page by page, ~12 ms each
// (docs/precision.md, round 6). A request takes the smallest free block that holds it; past KEEP bytes of free
// blocks the smallest go back to the system, so the pool keeps the blocks of the longest batches, which serve
// every shorter one (their pages are resident anyway once such a batch has run). One pool serves the
// process, as torch's own allocators do.
class Pool : public std::enable_shared_from_this<Pool> {
 public:
  static constexpr size_t MIN = size_t(1) << 20, KEEP = size_t(1) << 30;

  static std::shared_ptr<Pool> get() {
    static const std::shared_ptr<Pool> pool = std::make_shared<Pool>();   // deleters keep it alive at exit
    return pool;
  }

  at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    size_t bytes = c10::elementSize(c10::typeMetaToScalarType(options.dtype()));
    for (auto s : sizes) bytes *= size_t(s);
    if (bytes < MIN) return at::empty(sizes, options);
    void* p = take(bytes);
    auto self = shared_from_this();
    return at::from_blob(p, sizes, [self](void* q) { self->give(q); }, options);
  }

  size_t held() {
    std::lock_guard<std::mutex> lock(m_);
    return held_;
  }

  ~Pool() {                                  // the last tensor on the pool is gone: no block is in use
    for (auto& kv : free_) c10::free_cpu(kv.second);
  }

 private:
  void* take(size_t bytes) {                 // the smallest free block that holds bytes, or a new one
    std::lock_guard<std::mutex> lock(m_);
    auto it = free_.lower_bound(bytes);
    if (it != free_.end()) {
      void* p = it->second;
      held_ -= it->first;
      free_.erase(it);
      return p;
    }
    void* p = c10::alloc_cpu(bytes);
    capacity_[p] = bytes;
    return p;
  }

  void give(void* p) {                       // back to the free blocks; past KEEP, the smallest are freed
    std::lock_guard<std::mutex> lock(m_);
    const size_t cap = capacity_.at(p);
    free_.emplace(cap, p);
    held_ += cap;
    while (held_ > KEEP) {
      auto it = free_.begin();
      held_ -= it->first;
      capacity_.erase(it->second);
      c10::free_cpu(it->second);
      free_.erase(it);
    }
  }

  std::mutex m_;
  std::multimap<size_t, void*> free_;        // capacity -> free block
  std::map<void*, size_t> capacity_;         // every block of the pool, free or in use
  size_t held_ = 0;                          // bytes in free blocks
};

// y = x Wp^T with Wp a weight packed by mkldnn::_reorder_linear_weight (Python side: model.packed): the
// operator is oneDNN's and reached through the dispatcher (it has no C++ header)
at::Tensor packed_linear(const at::Tensor& x, const at::Tensor& Wp) {
  static const c10::OperatorHandle op =
      c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
  torch::jit::Stack stack{x, Wp, c10::IValue(), std::string("none"),
                          c10::List<c10::optional<at::Scalar>>(), c10::IValue()};
  op.callBoxed(&stack);
  return stack[0].toTensor();
}

// dtype conversions the vectoriser can follow: bfloat16 <-> float by their bits, round to nearest even as
// torch's .to(torch.bfloat16) does (c10::BFloat16's own conversion is a call the loops cannot vectorise)
template <typename S, typename T> inline S conv(T x) { return S(x); }
template <> inline float conv<float, at::BFloat16>(at::BFloat16 x) {
  const uint32_t u = uint32_t(x.x) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
template <> inline at::BFloat16 conv<at::BFloat16, float>(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);           // (a NaN stays NaN but for payloads in the low 16 bits, inf)
  return at::BFloat16(uint16_t(u >> 16), at::BFloat16::from_bits());
}

// sigmoid; x held above -80 so that exp(-x) stays finite (-ffast-math's reciprocal of inf is NaN): the
// sigmoid there is below 2e-35, zero to float32 and to every product it enters
template <typename T> inline T sigm(T x) { return T(1) / (T(1) + std::exp(-std::max(x, T(-80)))); }

// zx (B, 4H): x W_x^T of step t, with b added (in_t scalar_t) or, when bias (4H) is given, without it (in_t
// md_t: the bf16 product as it came); rec (B, 4H): h_{t-1} W_h^T in md_t, or null when it was already added
// into zx; a (B, 4H) out: the activations i, f, o, g (a may be zx itself).
template <typename scalar_t, typename md_t, typename in_t, bool with_bias, bool with_rec>
void cell_pass(const in_t* zx, const scalar_t* bias, const md_t* rec, scalar_t* a, const scalar_t* c_prev,
               scalar_t* c, scalar_t* tanh_c, md_t* h, int64_t B, int64_t H) {
  at::parallel_for(0, B, 8, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const in_t* xb = zx + b * 4 * H;
      scalar_t* ab = a + b * 4 * H;
      const md_t* rb = with_rec ? rec + b * 4 * H : nullptr;
      const int64_t o0 = b * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        scalar_t zi = conv<scalar_t>(xb[j]), zf = conv<scalar_t>(xb[H + j]);
        scalar_t zo = conv<scalar_t>(xb[2 * H + j]), zg = conv<scalar_t>(xb[3 * H + j]);
        if constexpr (with_bias) {                             // + b, left out of the bf16 input gates
          zi += bias[j]; zf += bias[H + j]; zo += bias[2 * H + j]; zg += bias[3 * H + j];
        }
        if constexpr (with_rec) {                              // z_t = W [x_t; h_{t-1}] + b      eq. (1)
          zi += conv<scalar_t>(rb[j]); zf += conv<scalar_t>(rb[H + j]);
          zo += conv<scalar_t>(rb[2 * H + j]); zg += conv<scalar_t>(rb[3 * H + j]);
        }
        const scalar_t i = sigm(zi), f = sigm(zf), o = sigm(zo), g = std::tanh(zg);   // eq. (1)
        ab[j] = i; ab[H + j] = f; ab[2 * H + j] = o; ab[3 * H + j] = g;
        const scalar_t cc = f * c_prev[o0 + j] + i * g;       // c_t = f c_{t-1} + i g           eq. (2)
        const scalar_t tc = std::tanh(cc);
        c[o0 + j] = cc; tanh_c[o0 + j] = tc;
        h[o0 + j] = conv<md_t>(o * tc);                              // h_t = o tanh(c_t)               eq. (3)
      }
    }
  });
}

// cell_pass with its branches chosen once, outside the vectorised loop (bias, rec: null or not)
template <typename scalar_t, typename md_t, typename in_t>
void cell_forward(const in_t* zx, const scalar_t* bias, const md_t* rec, scalar_t* a, const scalar_t* c_prev,
                  scalar_t* c, scalar_t* tanh_c, md_t* h, int64_t B, int64_t H) {
  if (bias && rec) cell_pass<scalar_t, md_t, in_t, true, true>(zx, bias, rec, a, c_prev, c, tanh_c, h, B, H);
  else if (bias) cell_pass<scalar_t, md_t, in_t, true, false>(zx, bias, rec, a, c_prev, c, tanh_c, h, B, H);
  else if (rec) cell_pass<scalar_t, md_t, in_t, false, true>(zx, bias, rec, a, c_prev, c, tanh_c, h, B, H);
  else cell_pass<scalar_t, md_t, in_t, false, false>(zx, bias, rec, a, c_prev, c, tanh_c, h, B, H);
}

// One step back: a (B, 4H) activations of step t, c_prev, tanh_c (B, H); dh_in (B, H): dL/dh_t from step t+1
// (rec_t: md_t, or scalar_t at the last step), dout (B, H) from above or null; dc (B, H) in place: dL/dc_t in,
// dL/dc_{t-1} out; dz (B, 4H) out: the gradients at the pre-activations.
template <typename scalar_t, typename rec_t, typename md_t>
void cell_backward(const scalar_t* a, const scalar_t* c_prev, const scalar_t* tanh_c, const rec_t* dh_in,
                   const md_t* dout, scalar_t* dc, md_t* dz, int64_t B, int64_t H) {
  at::parallel_for(0, B, 8, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const scalar_t* ab = a + b * 4 * H;
      md_t* zb = dz + b * 4 * H;
      const int64_t o0 = b * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const scalar_t i = ab[j], f = ab[H + j], o = ab[2 * H + j], g = ab[3 * H + j];
        const scalar_t tc = tanh_c[o0 + j];
        scalar_t dh = conv<scalar_t>(dh_in[o0 + j]);
        if (dout) dh += conv<scalar_t>(dout[o0 + j]);               // from above plus from t+1        eq. (13)
        const scalar_t d_o = dh * tc;                          // into o                          eq. (4)
        const scalar_t dct = dc[o0 + j] + dh * o * (scalar_t(1) - tc * tc);   // into c (total)  eq. (5)
        const scalar_t d_i = dct * g, d_f = dct * c_prev[o0 + j], d_g = dct * i;   // i, f, g      eq. (6)
        dc[o0 + j] = dct * f;                                  // into c_{t-1}                    eq. (7)
        zb[j] = conv<md_t>(d_i * i * (scalar_t(1) - i));             // through the sigmoids            eq. (8)
        zb[H + j] = conv<md_t>(d_f * f * (scalar_t(1) - f));
        zb[2 * H + j] = conv<md_t>(d_o * o * (scalar_t(1) - o));
        zb[3 * H + j] = conv<md_t>(d_g * (scalar_t(1) - g * g));     // through the tanh                eq. (9)
      }
    }
  });
}

constexpr int64_t CHUNK_ROWS = 1024;     // rows of one input-gate product made in the loop (Wxp given)

// in_t: the input gates' dtype (scalar_t with b added, or md_t without b, bias then given). With Wxp (W_x
// packed), in is x (T, B, D) md and the input gates are made here, x_t W_x^T for CHUNK_ROWS / B steps at a
// time, so the whole (T, B, 4H) product, a fresh 52 MB at E256, is never held (about as fast as one product,
// faster or slower by ~10% by layer: docs/precision.md, round 6); else in is the input gates (T, B, 4H).
template <typename scalar_t, typename md_t, typename in_t>
std::vector<at::Tensor> forward_impl(at::Tensor in, const at::Tensor& W_hT, const at::Tensor& h0,
                                     const at::Tensor& c0, const c10::optional<at::Tensor>& Wp,
                                     const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& Wxp) {
  const int64_t T = in.size(0), B = in.size(1), H = c0.size(1);
  const bool same = W_hT.scalar_type() == in.scalar_type() && !bias;
  auto pool = Pool::get();
  auto act = bias ? pool->empty({T, B, 4 * H}, c0.options()) : in;      // the activations, in place or apart
  auto hs = pool->empty({T + 1, B, H}, h0.options().dtype(W_hT.scalar_type()));
  auto cs = pool->empty({T + 1, B, H}, c0.options());
  auto tanh_c = pool->empty({T, B, H}, c0.options());
  hs[0].copy_(h0);
  cs[0].copy_(c0);
  auto rec = Wp || same ? at::Tensor() : at::empty({B, 4 * H}, hs.options());
  const scalar_t* b = bias ? bias->data_ptr<scalar_t>() : nullptr;
  const int64_t K = Wxp ? std::max<int64_t>(1, CHUNK_ROWS / B) : 1;
  at::Tensor chunk;                                            // (K*B, 4H) x_t W_x^T of steps t0 .. t0+K-1
  for (int64_t t = 0; t < T; ++t) {
    if (Wxp && t % K == 0)
      chunk = packed_linear(in.slice(0, t, std::min(t + K, T)).reshape({-1, in.size(2)}), *Wxp);   // x W_x^T
    auto z = Wxp ? chunk.slice(0, (t % K) * B, (t % K + 1) * B) : in[t];
    if (Wp) rec = packed_linear(hs[t], *Wp);                  // (B, 4H) h_{t-1} W_h^T, md        eq. (1)
    else if (same) z.addmm_(hs[t], W_hT);                     // (B, 4H) += h_{t-1} W_h^T        eq. (1)
    else at::mm_out(rec, hs[t], W_hT);
    cell_forward<scalar_t, md_t, in_t>(z.data_ptr<in_t>(), b, same && !Wp ? nullptr : rec.data_ptr<md_t>(),
                                       act[t].data_ptr<scalar_t>(), cs[t].data_ptr<scalar_t>(),
                                       cs[t + 1].data_ptr<scalar_t>(), tanh_c[t].data_ptr<scalar_t>(),
                                       hs[t + 1].data_ptr<md_t>(), B, H);
  }
  return {hs, cs, tanh_c, act};
}

template <typename scalar_t, typename md_t>
std::vector<at::Tensor> backward_impl(const at::Tensor& gates, const at::Tensor& cs, const at::Tensor& tanh_c,
                                      const at::Tensor& W_h, const c10::optional<at::Tensor>& dout,
                                      const at::Tensor& dh, const at::Tensor& dc_in,
                                      const c10::optional<at::Tensor>& Wp) {
  const int64_t T = gates.size(0), B = gates.size(1), H = cs.size(2);
  auto dzs = Pool::get()->empty({T, B, 4 * H}, gates.options().dtype(W_h.scalar_type()));
  auto dc = dc_in.clone();
  auto dh_prev = at::empty({B, H}, dzs.options());
  const md_t* dout_p = nullptr;
  for (int64_t t = T - 1; t >= 0; --t) {
    if (dout) dout_p = (*dout)[t].data_ptr<md_t>();
    auto z = dzs[t];
    if (t == T - 1)
      cell_backward<scalar_t, scalar_t, md_t>(gates[t].data_ptr<scalar_t>(), cs[t].data_ptr<scalar_t>(),
          tanh_c[t].data_ptr<scalar_t>(), dh.data_ptr<scalar_t>(), dout_p, dc.data_ptr<scalar_t>(),
          z.data_ptr<md_t>(), B, H);
    else
      cell_backward<scalar_t, md_t, md_t>(gates[t].data_ptr<scalar_t>(), cs[t].data_ptr<scalar_t>(),
          tanh_c[t].data_ptr<scalar_t>(), dh_prev.data_ptr<md_t>(), dout_p, dc.data_ptr<scalar_t>(),
          z.data_ptr<md_t>(), B, H);
    if (Wp) dh_prev = packed_linear(z, *Wp);                  // into h_{t-1}                    eq. (11)
    else at::mm_out(dh_prev, z, W_h);                          // into h_{t-1}                    eq. (11)
  }
  return {dzs, dh_prev, dc};
}

void check(bool ok, const char* what) { TORCH_CHECK(ok, "lstm_cell: ", what); }

}  // namespace

// in (T, B, 4H): x W_x^T + b in scalar, overwritten with the activations, or, with bias (4H,) scalar,
// x W_x^T alone in md (bfloat16 matmuls always: the product as the matmul gave it, b added in float32 here);
// or, with Wxp (W_x (4H, D) packed, md) and bias, in is x (T, B, D) md and the loop makes x W_x^T itself.
// W_hT (H, 4H) md, contiguous; h0 (B, H) md; c0 (B, H) scalar; Wp: W_h (4H, H) packed, or None
// -> hs (T+1, B, H) md, cs (T+1, B, H), tanh_c (T, B, H), the activations (T, B, 4H) scalar (in itself
// without bias).
std::vector<at::Tensor> layer_forward(at::Tensor in, at::Tensor W_hT, at::Tensor h0, at::Tensor c0,
                                      c10::optional<at::Tensor> Wp, c10::optional<at::Tensor> bias,
                                      c10::optional<at::Tensor> Wxp) {
  check(in.is_contiguous() && W_hT.is_contiguous() && h0.is_contiguous() && c0.is_contiguous() &&
        (!bias || bias->is_contiguous()), "contiguous");
  check(in.device().is_cpu(), "cpu tensors");
  const auto s = c0.scalar_type(), m = W_hT.scalar_type();
  check(h0.scalar_type() == m && in.scalar_type() == (bias ? m : s) && (!bias || bias->scalar_type() == s),
        "dtypes");
  check(!bias || bias->numel() == 4 * c0.size(1), "the bias: (4H,)");
  check(!Wp || (Wp->scalar_type() == m && Wp->size(0) == W_hT.size(1) && Wp->size(1) == W_hT.size(0)),
        "the packed weight: W_h (4H, H) in the matmuls' dtype");
  check(!Wxp || (bias && Wp && Wxp->scalar_type() == m && Wxp->size(0) == W_hT.size(1) &&
                 Wxp->size(1) == in.size(2)), "the packed W_x: (4H, D) in the matmuls' dtype, with bias and Wp");
  check(Wxp || in.size(2) == W_hT.size(1), "the input gates: (T, B, 4H)");
  if (s == at::kFloat && m == at::kFloat) return forward_impl<float, float, float>(in, W_hT, h0, c0, Wp, bias, Wxp);
  if (s == at::kDouble && m == at::kDouble)
    return forward_impl<double, double, double>(in, W_hT, h0, c0, Wp, bias, Wxp);
  if (s == at::kFloat && m == at::kBFloat16 && bias)
    return forward_impl<float, at::BFloat16, at::BFloat16>(in, W_hT, h0, c0, Wp, bias, Wxp);
  TORCH_CHECK(false, "lstm_cell: unsupported dtypes (bfloat16 matmuls take the input gates in bfloat16, b apart)");
}

// the activations, cs, tanh_c of layer_forward; W_h (4H, H) md, contiguous; dout (T, B, H) md or None;
// dh, dc (B, H) scalar: at h_T, c_T; Wp: W_h^T (H, 4H) packed, or None -> dz (T, B, 4H) md, dh_0 (B, H) md,
// dc_0 (B, H) scalar.
std::vector<at::Tensor> layer_backward(at::Tensor gates, at::Tensor cs, at::Tensor tanh_c, at::Tensor W_h,
                                       c10::optional<at::Tensor> dout, at::Tensor dh, at::Tensor dc,
                                       c10::optional<at::Tensor> Wp) {
  check(gates.is_contiguous() && cs.is_contiguous() && tanh_c.is_contiguous() && W_h.is_contiguous() &&
        dh.is_contiguous() && dc.is_contiguous() && (!dout || dout->is_contiguous()), "contiguous");
  check(dh.scalar_type() == gates.scalar_type() && dc.scalar_type() == gates.scalar_type() &&
        (!dout || dout->scalar_type() == W_h.scalar_type()), "dtypes");
  const auto s = gates.scalar_type(), m = W_h.scalar_type();
  check(!Wp || (Wp->scalar_type() == m && Wp->size(0) == W_h.size(1) && Wp->size(1) == W_h.size(0)),
        "the packed weight: W_h^T (H, 4H) in the matmuls' dtype");
  if (s == at::kFloat && m == at::kFloat) return backward_impl<float, float>(gates, cs, tanh_c, W_h, dout, dh, dc, Wp);
  if (s == at::kDouble && m == at::kDouble)
    return backward_impl<double, double>(gates, cs, tanh_c, W_h, dout, dh, dc, Wp);
  if (s == at::kFloat && m == at::kBFloat16)
    return backward_impl<float, at::BFloat16>(gates, cs, tanh_c, W_h, dout, dh, dc, Wp);
  TORCH_CHECK(false, "lstm_cell: unsupported dtypes");
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("pool_held", [] { return Pool::get()->held(); }, "bytes the buffer pool holds in free blocks");
  m.attr("POOL_KEEP") = Pool::KEEP;
  m.attr("CHUNK_ROWS") = CHUNK_ROWS;
  m.def("layer_forward", &layer_forward, "an LSTM layer's forward time loop, the cell fused",
        py::arg("in"), py::arg("W_hT"), py::arg("h0"), py::arg("c0"), py::arg("Wp") = py::none(),
        py::arg("bias") = py::none(), py::arg("Wxp") = py::none());
  m.def("layer_backward", &layer_backward, "an LSTM layer's backward time loop, the cell fused",
        py::arg("gates"), py::arg("cs"), py::arg("tanh_c"), py::arg("W_h"), py::arg("dout"), py::arg("dh"),
        py::arg("dc"), py::arg("Wp") = py::none());
}
