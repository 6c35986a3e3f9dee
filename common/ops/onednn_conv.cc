// 2-D convolutions on the CPU through oneDNN, as XLA FFI handlers.
//
// Why: XLA's CPU convolutions run at about half of oneDNN's speed at the channel counts of
// the CIFAR/Imagenette ResNets, and its weight gradient at a fifth (measured in
// ../shared/probes and benchmarks/README.md). PyTorch's CPU path is oneDNN; this file gives
// JAX the same kernels. Three handlers share one geometry, in JAX's NHWC / HWIO layouts:
//
//   glonets_conv_fwd          x[N,H,W,C],  w[KH,KW,C,O]  -> y[N,OH,OW,O]
//   glonets_conv_bwd_data     dy[N,OH,OW,O], w[KH,KW,C,O] -> dx[N,H,W,C]
//   glonets_conv_bwd_weights  x[N,H,W,C],  dy[N,OH,OW,O] -> dw[KH,KW,C,O]
//
// with attributes stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right (explicit
// padding, as lax.padtype_to_pads gives it). Activations stay in their plain NHWC layout
// (as PyTorch's channels_last path); the small weight tensors are reordered to the layout
// oneDNN's kernels want on each call. Float32 only, no dilation, no groups: the Python side
// (common/ops/conv.py) sends everything else to XLA.
//
// Threads: see onednn_common.h.

#include <array>
#include <cstdint>
#include <cstdlib>
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
using glonets::WeightsBuffer;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
using dims = dnnl::memory::dims;

enum Kind : int64_t { kForward = 0, kBackwardData = 1, kBackwardWeights = 2 };

// n, h, w, c, o, kh, kw, oh, ow, stride_h, stride_w, pad_t, pad_b, pad_l, pad_r, kind.
using Key = std::array<int64_t, 16>;

struct Geometry {
  int64_t n, h, w, c, o, kh, kw, oh, ow, sh, sw, pt, pb, pl, pr;

  dnnl::memory::desc src() const { return {{n, c, h, w}, dt::f32, tag::nhwc}; }
  dnnl::memory::desc dst() const { return {{n, o, oh, ow}, dt::f32, tag::nhwc}; }
  dnnl::memory::desc user_weights() const { return {{o, c, kh, kw}, dt::f32, tag::hwio}; }
  dnnl::memory::desc any_weights() const { return {{o, c, kh, kw}, dt::f32, tag::any}; }
  dims strides() const { return {sh, sw}; }
  dims pad_l() const { return {pt, pl}; }
  dims pad_r() const { return {pb, pr}; }
};

struct Entry {
  dnnl::primitive primitive;
  dnnl::memory::desc weights;  // the layout the primitive reads or writes its weights in
  dnnl::memory::desc scratchpad;
  bool reorder = false;
  dnnl::primitive weight_reorder;  // user -> primitive (fwd, bwd data), or back (bwd w)
};

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g,
                                                      const dnnl::primitive_attr& attr) {
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      g.src(), g.any_weights(), g.dst(), g.strides(), g.pad_l(), g.pad_r(), attr);
}

std::unique_ptr<Entry> Build(const Geometry& g, Kind kind) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto entry = std::make_unique<Entry>();
  const dnnl::memory::desc user = g.user_weights();
  if (kind == kForward) {
    auto pd = ForwardDesc(g, attr);
    entry->primitive = dnnl::convolution_forward(pd);
    entry->weights = pd.weights_desc();
    entry->scratchpad = pd.scratchpad_desc();
  } else if (kind == kBackwardData) {
    auto hint = ForwardDesc(g, dnnl::primitive_attr());
    auto pd = dnnl::convolution_backward_data::primitive_desc(
        Engine(), dnnl::algorithm::convolution_direct, g.src(), g.any_weights(), g.dst(),
        g.strides(), g.pad_l(), g.pad_r(), hint, attr);
    entry->primitive = dnnl::convolution_backward_data(pd);
    entry->weights = pd.weights_desc();
    entry->scratchpad = pd.scratchpad_desc();
  } else {
    auto hint = ForwardDesc(g, dnnl::primitive_attr());
    auto pd = dnnl::convolution_backward_weights::primitive_desc(
        Engine(), dnnl::algorithm::convolution_direct, g.src(), g.any_weights(), g.dst(),
        g.strides(), g.pad_l(), g.pad_r(), hint, attr);
    entry->primitive = dnnl::convolution_backward_weights(pd);
    entry->weights = pd.diff_weights_desc();
    entry->scratchpad = pd.scratchpad_desc();
  }
  entry->reorder = entry->weights != user;
  if (entry->reorder) {
    entry->weight_reorder = kind == kBackwardWeights
                                ? dnnl::reorder(dnnl::reorder::primitive_desc(
                                      Engine(), entry->weights, Engine(), user))
                                : dnnl::reorder(dnnl::reorder::primitive_desc(
                                      Engine(), user, Engine(), entry->weights));
  }
  return entry;
}

const Entry& Lookup(const Geometry& g, Kind kind) {
  static std::mutex mutex;
  static std::map<Key, std::unique_ptr<Entry>> cache;
  const Key key = {g.n, g.h, g.w, g.c, g.o, g.kh, g.kw, g.oh, g.ow,
                   g.sh, g.sw, g.pt, g.pb, g.pl, g.pr, kind};
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, Build(g, kind)).first;
  return *it->second;
}

ffi::Error Run(Kind kind, ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out,
               int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  if (a.element_type() != ffi::DataType::F32 || b.element_type() != ffi::DataType::F32 ||
      out->element_type() != ffi::DataType::F32) {
    return ffi::Error::InvalidArgument("glonets oneDNN conv: float32 only");
  }
  auto ad = a.dimensions(), bd = b.dimensions(), od = out->dimensions();
  if (ad.size() != 4 || bd.size() != 4 || od.size() != 4) {
    return ffi::Error::InvalidArgument("glonets oneDNN conv: 4-D operands only");
  }
  Geometry g;
  if (kind == kForward) {  // a = x, b = w, out = y
    g = {ad[0], ad[1], ad[2], ad[3], bd[3], bd[0], bd[1], od[1], od[2], sh, sw, pt, pb, pl, pr};
  } else if (kind == kBackwardData) {  // a = dy, b = w, out = dx
    g = {od[0], od[1], od[2], od[3], bd[3], bd[0], bd[1], ad[1], ad[2], sh, sw, pt, pb, pl, pr};
  } else {  // a = x, b = dy, out = dw
    g = {ad[0], ad[1], ad[2], ad[3], od[3], od[0], od[1], bd[1], bd[2], sh, sw, pt, pb, pl, pr};
  }
  try {
    const Entry& entry = Lookup(g, kind);
    std::lock_guard<std::mutex> exec_lock(ExecutionMutex());
    dnnl::engine& engine = Engine();
    dnnl::stream& stream = Stream();
    dnnl::memory scratch(entry.scratchpad, engine,
                         ScratchBuffer().Get(entry.scratchpad.get_size()));
    auto wrap = [&](const dnnl::memory::desc& md, void* data) {
      return dnnl::memory(md, engine, data);
    };
    if (kind == kBackwardWeights) {
      dnnl::memory user_w = wrap(g.user_weights(), out->untyped_data());
      dnnl::memory w = entry.reorder
                           ? wrap(entry.weights, WeightsBuffer().Get(entry.weights.get_size()))
                           : user_w;
      entry.primitive.execute(stream, {{DNNL_ARG_SRC, wrap(g.src(), a.untyped_data())},
                                       {DNNL_ARG_DIFF_DST, wrap(g.dst(), b.untyped_data())},
                                       {DNNL_ARG_DIFF_WEIGHTS, w},
                                       {DNNL_ARG_SCRATCHPAD, scratch}});
      if (entry.reorder) {
        entry.weight_reorder.execute(stream, {{DNNL_ARG_FROM, w}, {DNNL_ARG_TO, user_w}});
      }
    } else {
      dnnl::memory user_w = wrap(g.user_weights(), b.untyped_data());
      dnnl::memory w = user_w;
      if (entry.reorder) {
        w = wrap(entry.weights, WeightsBuffer().Get(entry.weights.get_size()));
        entry.weight_reorder.execute(stream, {{DNNL_ARG_FROM, user_w}, {DNNL_ARG_TO, w}});
      }
      if (kind == kForward) {
        entry.primitive.execute(stream, {{DNNL_ARG_SRC, wrap(g.src(), a.untyped_data())},
                                         {DNNL_ARG_WEIGHTS, w},
                                         {DNNL_ARG_DST, wrap(g.dst(), out->untyped_data())},
                                         {DNNL_ARG_SCRATCHPAD, scratch}});
      } else {
        entry.primitive.execute(stream, {{DNNL_ARG_DIFF_DST, wrap(g.dst(), a.untyped_data())},
                                         {DNNL_ARG_WEIGHTS, w},
                                         {DNNL_ARG_DIFF_SRC, wrap(g.src(), out->untyped_data())},
                                         {DNNL_ARG_SCRATCHPAD, scratch}});
      }
    }
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("glonets oneDNN conv: ") + e.what());
  }
  return ffi::Error::Success();
}

template <Kind kind>
ffi::Error Handler(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out,
                   int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  return Run(kind, a, b, out, sh, sw, pt, pb, pl, pr);
}

}  // namespace

#define GLONETS_BIND                       \
  ffi::Ffi::Bind()                         \
      .Arg<ffi::AnyBuffer>()               \
      .Arg<ffi::AnyBuffer>()               \
      .Ret<ffi::AnyBuffer>()               \
      .Attr<int64_t>("stride_h")           \
      .Attr<int64_t>("stride_w")           \
      .Attr<int64_t>("pad_top")            \
      .Attr<int64_t>("pad_bottom")         \
      .Attr<int64_t>("pad_left")           \
      .Attr<int64_t>("pad_right")

XLA_FFI_DEFINE_HANDLER_SYMBOL(GlonetsConvForward, Handler<kForward>, GLONETS_BIND);
XLA_FFI_DEFINE_HANDLER_SYMBOL(GlonetsConvBackwardData, Handler<kBackwardData>, GLONETS_BIND);
XLA_FFI_DEFINE_HANDLER_SYMBOL(GlonetsConvBackwardWeights, Handler<kBackwardWeights>,
                              GLONETS_BIND);
