// Training-mode batch norm fused with the ReLU that follows it, on oneDNN, as XLA FFI
// handlers (NHWC, float32, statistics over N, H and W per channel C):
//
//   glonets_bn_relu_fwd  x[N,H,W,C], scale[C], shift[C]
//                        -> y[N,H,W,C], mean[C], var[C], workspace[bytes]
//   glonets_bn_relu_bwd  x, dy[N,H,W,C], scale, mean, var, workspace
//                        -> dx[N,H,W,C], dscale[C], dshift[C]
//
// with the attribute epsilon. ``var`` is the biased batch variance, as Flax's BatchNorm
// normalises with; the workspace is oneDNN's ReLU mask, whose size
// GlonetsBatchNormWorkspaceBytes(n, h, w, c) tells the Python side before tracing.
// Why: XLA's batch norm and ReLU (forward and backward) cost a ResNet20 train step on
// the CPU about a fifth of its time, several passes over each activation where oneDNN
// makes two (benchmarks/README.md).

#include <array>
#include <cstring>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "onednn_common.h"

namespace ffi = xla::ffi;

namespace {

using glonets::Engine;
using glonets::ExecutionMutex;
using glonets::ScratchBuffer;
using glonets::Stream;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

const auto kFlags = dnnl::normalization_flags::use_scale |
                        dnnl::normalization_flags::use_shift |
                        dnnl::normalization_flags::fuse_norm_relu;

struct Entry {
  dnnl::batch_normalization_forward::primitive_desc fwd;
  dnnl::batch_normalization_backward::primitive_desc bwd;
  dnnl::primitive forward, backward;
};

// n, h, w, c and the bits of epsilon.
using Key = std::array<int64_t, 5>;

const Entry& Lookup(int64_t n, int64_t h, int64_t w, int64_t c, float epsilon) {
  static std::mutex mutex;
  static std::map<Key, std::unique_ptr<Entry>> cache;
  int32_t eps_bits;
  static_assert(sizeof(eps_bits) == sizeof(epsilon));
  std::memcpy(&eps_bits, &epsilon, sizeof(epsilon));
  const Key key = {n, h, w, c, eps_bits};
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(key);
  if (it == cache.end()) {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const dnnl::memory::desc md({n, c, h, w}, dt::f32, tag::nhwc);
    auto entry = std::make_unique<Entry>();
    entry->fwd = dnnl::batch_normalization_forward::primitive_desc(
        Engine(), dnnl::prop_kind::forward_training, md, md, epsilon, kFlags, attr);
    entry->bwd = dnnl::batch_normalization_backward::primitive_desc(
        Engine(), dnnl::prop_kind::backward, md, md, md, epsilon, kFlags, entry->fwd, attr);
    entry->forward = dnnl::batch_normalization_forward(entry->fwd);
    entry->backward = dnnl::batch_normalization_backward(entry->bwd);
    it = cache.emplace(key, std::move(entry)).first;
  }
  return *it->second;
}

bool IsF32(const ffi::AnyBuffer& b) { return b.element_type() == ffi::DataType::F32; }

ffi::Error Forward(ffi::AnyBuffer x, ffi::AnyBuffer scale, ffi::AnyBuffer shift,
                   ffi::Result<ffi::AnyBuffer> y, ffi::Result<ffi::AnyBuffer> mean,
                   ffi::Result<ffi::AnyBuffer> var, ffi::Result<ffi::AnyBuffer> workspace,
                   float epsilon) {
  auto d = x.dimensions();
  if (d.size() != 4 || !IsF32(x) || !IsF32(scale) || !IsF32(shift)) {
    return ffi::Error::InvalidArgument("glonets oneDNN batch norm: 4-D float32 input only");
  }
  try {
    const Entry& e = Lookup(d[0], d[1], d[2], d[3], epsilon);
    if (workspace->size_bytes() != e.fwd.workspace_desc().get_size()) {
      return ffi::Error::InvalidArgument("glonets oneDNN batch norm: workspace size");
    }
    std::lock_guard<std::mutex> exec_lock(ExecutionMutex());
    dnnl::engine& engine = Engine();
    auto wrap = [&](const dnnl::memory::desc& md, void* data) {
      return dnnl::memory(md, engine, data);
    };
    dnnl::memory scratch = wrap(e.fwd.scratchpad_desc(),
                                ScratchBuffer().Get(e.fwd.scratchpad_desc().get_size()));
    e.forward.execute(Stream(), {{DNNL_ARG_SRC, wrap(e.fwd.src_desc(), x.untyped_data())},
                                 {DNNL_ARG_SCALE, wrap(e.fwd.weights_desc(), scale.untyped_data())},
                                 {DNNL_ARG_SHIFT, wrap(e.fwd.weights_desc(), shift.untyped_data())},
                                 {DNNL_ARG_DST, wrap(e.fwd.dst_desc(), y->untyped_data())},
                                 {DNNL_ARG_MEAN, wrap(e.fwd.mean_desc(), mean->untyped_data())},
                                 {DNNL_ARG_VARIANCE,
                                  wrap(e.fwd.variance_desc(), var->untyped_data())},
                                 {DNNL_ARG_WORKSPACE,
                                  wrap(e.fwd.workspace_desc(), workspace->untyped_data())},
                                 {DNNL_ARG_SCRATCHPAD, scratch}});
    Stream().wait();
  } catch (const dnnl::error& err) {
    return ffi::Error::Internal(std::string("glonets oneDNN batch norm: ") + err.what());
  }
  return ffi::Error::Success();
}

ffi::Error Backward(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::AnyBuffer scale,
                    ffi::AnyBuffer mean, ffi::AnyBuffer var, ffi::AnyBuffer workspace,
                    ffi::Result<ffi::AnyBuffer> dx, ffi::Result<ffi::AnyBuffer> dscale,
                    ffi::Result<ffi::AnyBuffer> dshift, float epsilon) {
  auto d = x.dimensions();
  if (d.size() != 4 || !IsF32(x) || !IsF32(dy)) {
    return ffi::Error::InvalidArgument("glonets oneDNN batch norm: 4-D float32 input only");
  }
  try {
    const Entry& e = Lookup(d[0], d[1], d[2], d[3], epsilon);
    std::lock_guard<std::mutex> exec_lock(ExecutionMutex());
    dnnl::engine& engine = Engine();
    auto wrap = [&](const dnnl::memory::desc& md, void* data) {
      return dnnl::memory(md, engine, data);
    };
    dnnl::memory scratch = wrap(e.bwd.scratchpad_desc(),
                                ScratchBuffer().Get(e.bwd.scratchpad_desc().get_size()));
    e.backward.execute(
        Stream(), {{DNNL_ARG_SRC, wrap(e.bwd.src_desc(), x.untyped_data())},
                   {DNNL_ARG_DIFF_DST, wrap(e.bwd.diff_dst_desc(), dy.untyped_data())},
                   {DNNL_ARG_SCALE, wrap(e.bwd.weights_desc(), scale.untyped_data())},
                   {DNNL_ARG_MEAN, wrap(e.bwd.mean_desc(), mean.untyped_data())},
                   {DNNL_ARG_VARIANCE, wrap(e.bwd.variance_desc(), var.untyped_data())},
                   {DNNL_ARG_WORKSPACE, wrap(e.bwd.workspace_desc(), workspace.untyped_data())},
                   {DNNL_ARG_DIFF_SRC, wrap(e.bwd.diff_src_desc(), dx->untyped_data())},
                   {DNNL_ARG_DIFF_SCALE, wrap(e.bwd.diff_weights_desc(), dscale->untyped_data())},
                   {DNNL_ARG_DIFF_SHIFT, wrap(e.bwd.diff_weights_desc(), dshift->untyped_data())},
                   {DNNL_ARG_SCRATCHPAD, scratch}});
    Stream().wait();
  } catch (const dnnl::error& err) {
    return ffi::Error::Internal(std::string("glonets oneDNN batch norm: ") + err.what());
  }
  return ffi::Error::Success();
}

}  // namespace

// The ReLU mask's size in bytes, for the Python side to allocate before tracing; -1 when
// oneDNN rejects the shape.
extern "C" int64_t GlonetsBatchNormWorkspaceBytes(int64_t n, int64_t h, int64_t w, int64_t c,
                                                  float epsilon) {
  try {
    return static_cast<int64_t>(Lookup(n, h, w, c, epsilon).fwd.workspace_desc().get_size());
  } catch (const dnnl::error&) {
    return -1;
  }
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(GlonetsBatchNormReluForward, Forward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<float>("epsilon"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(GlonetsBatchNormReluBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<float>("epsilon"));
