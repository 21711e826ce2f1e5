// Quantised Linear and Conv modules, and the Quantize / DeQuantize modules
// (include/qiusuo/quant/modules.h).
#include "qiusuo/quant/modules.h"

#include "qiusuo/autograd.h"
#include "quant/module_util.h"

namespace qs::quant {

using detail::act_json;
using detail::bytes;
using detail::read_act;
using detail::register_act;

namespace {

bool is_quantised(const Tensor& x) { return x.dtype() == DType::u8 || x.dtype() == DType::i8; }

// The integer op's output side of a quantised layer: its fused ReLU and, if set, its
// output parameters.
QOutput layer_output(const nn::Module& m, bool relu) {
  QOutput o;
  o.relu = relu;
  if (detail::has_act(m, "output")) o.out = read_act(m, "output");
  return o;
}

// forward of QuantizedLinear around the integer op `run(xq, in, out)`: f32 in, f32 out.
template <class Run> Tensor quantised_forward(const nn::Module& m, const Tensor& x, bool relu, Run&& run) {
  detail::require_float_input(m, x);
  QParams in = read_act(m, "input");
  QOutput o = layer_output(m, relu);
  NoGrad ng;
  Tensor y = run(quantize(x, in), in, o);
  return o.out ? dequantize(y, *o.out) : y;
}

nlohmann::json io_json(const nn::Module& m) {
  nlohmann::json j;
  j["input"] = act_json(read_act(m, "input"));
  j["output"] = detail::has_act(m, "output") ? act_json(read_act(m, "output")) : nlohmann::json("f32");
  j["weight"] = {{"dtype", "s8"}, {"scheme", "per_channel_symmetric"}, {"axis", 0}};
  return j;
}

}  // namespace

// ---- QuantizedLinear
QuantizedLinear::QuantizedLinear(int64_t in_features, int64_t out_features, bool bias, const QParams& input,
                                 std::optional<QParams> output, bool relu)
    : Module("QuantizedLinear"), relu_(relu) {
  weight_ = register_buffer("weight", zeros({out_features, in_features}, DType::i8));
  scale_ = register_buffer("weight_scale", ones({out_features}));
  if (bias) bias_ = register_buffer("bias", zeros({out_features}));
  register_act(*this, "input", input);
  if (output) register_act(*this, "output", *output);
}

QuantizedLinear::QuantizedLinear(const nn::Linear& lin, const QParams& input, std::optional<QParams> output, bool relu)
    : QuantizedLinear(lin.in_features(), lin.out_features(), lin.bias().defined(), input, output, relu) {
  NoGrad ng;
  auto [q, s] = quantize_weight_per_channel(lin.weight().detach());
  weight_.copy_(q);
  scale_.copy_(s);
  if (bias_.defined()) bias_.copy_(lin.bias().detach());
}

Tensor QuantizedLinear::forward(const Tensor& x) {
  nn::ModuleScope scope(*this);
  return quantised_forward(*this, x, relu_, [&](const Tensor& xq, const QParams& in, const QOutput& o) {
    return qlinear(xq, in, weight_, scale_, bias_, o);
  });
}

QParams QuantizedLinear::input_qparams() const { return read_act(*this, "input"); }
std::optional<QParams> QuantizedLinear::output_qparams() const {
  if (!detail::has_act(*this, "output")) return std::nullopt;
  return read_act(*this, "output");
}

std::string QuantizedLinear::qparams_json() const {
  nlohmann::json j = io_json(*this);
  j["type"] = "QuantizedLinear";
  j["in_features"] = weight_.size(1);
  j["out_features"] = weight_.size(0);
  j["relu"] = relu_;
  return j.dump();
}

int64_t QuantizedLinear::weight_bytes() const { return bytes(weight_) + bytes(scale_); }

// ---- QuantizedConv
QuantizedConv::QuantizedConv(const Shape& weight_shape, const nn::ConvOptions& opt, const QParams& input,
                             std::optional<QParams> output, bool relu)
    : Module("QuantizedConv"), opt_(opt), relu_(relu) {
  QS_CHECK(weight_shape.size() >= 3 && weight_shape.size() <= 5,
           "QuantizedConv: weight shape {} must be [O, C / groups, k...] with 1 to 3 kernel dims", shape_str(weight_shape));
  weight_ = register_buffer("weight", zeros(weight_shape, DType::i8));
  scale_ = register_buffer("weight_scale", ones({weight_shape[0]}));
  if (opt.bias) bias_ = register_buffer("bias", zeros({weight_shape[0]}));
  register_act(*this, "input", input);
  if (output) register_act(*this, "output", *output);
}

QuantizedConv::QuantizedConv(const nn::ConvNd& conv, const QParams& input, std::optional<QParams> output, bool relu)
    : QuantizedConv(conv.weight().shape(), conv.options(), input, output, relu) {
  NoGrad ng;
  auto [q, s] = quantize_weight_per_channel(conv.weight().detach());
  weight_.copy_(q);
  scale_.copy_(s);
  if (bias_.defined()) bias_.copy_(conv.bias().detach());
}

Tensor QuantizedConv::forward(const Tensor& x) {
  nn::ModuleScope scope(*this);
  QConvOptions c;
  c.stride = opt_.stride, c.padding = opt_.padding, c.dilation = opt_.dilation, c.groups = opt_.groups;
  c.channels_last_out = chain_out_;
  QParams in = read_act(*this, "input");
  QOutput o = layer_output(*this, relu_);
  NoGrad ng;
  Tensor xq = x;
  if (is_quantised(x)) {
    QS_CHECK(chained_in_, "QuantizedConv: got a {} input, but this layer was not marked as taking chained input; a "
             "quantised tensor carries no scale. Pass f32 (it is quantised with the layer's input parameters), or let "
             "quant::chain_quantized_layers(model, example) wire adjacent quantised layers", dtype_name(x.dtype()));
    auto producer = producer_.lock();
    QS_CHECK(producer && producer->chained_output(), "QuantizedConv: chained input, but the layer that produced it is "
             "gone or no longer chained (replaced after quant::chain_quantized_layers?); run the chaining again");
    QS_CHECK(x.dtype() == DType::u8, "QuantizedConv: a chained input must be u8 codes, got {}", dtype_name(x.dtype()));
    QParams from = *producer->output_qparams();
    bool same = from.scale == in.scale && from.zero_point == in.zero_point && from.qmin() == in.qmin() &&
                from.qmax() == in.qmax();
    if (!same) c.x_from = from;
  } else {
    xq = quantize(x, in);
  }
  Tensor y = qconv(xq, in, weight_, scale_, bias_, c, o);
  return chain_out_ || !o.out ? y : dequantize(y, *o.out);
}

void QuantizedConv::set_chained_input(const std::shared_ptr<const QuantizedConv>& producer) {
  if (!producer) {
    chained_in_ = false;
    producer_.reset();
    return;
  }
  QParams in = input_qparams();
  QS_CHECK(in.dtype == QDtype::u8, "QuantizedConv: a chained input needs u8 input parameters, got {}",
           qdtype_name(in.dtype));
  auto out = producer->output_qparams();
  QS_CHECK(out && out->dtype == QDtype::u8 && out->per_tensor(),
           "QuantizedConv: the producer of a chained input must have u8 per-tensor output parameters");
  chained_in_ = true;
  producer_ = producer;
}

void QuantizedConv::set_chained_output(bool on) {
  if (on) {
    auto out = output_qparams();
    QS_CHECK(out && out->dtype == QDtype::u8 && out->per_tensor(),
             "QuantizedConv: a chained output needs u8 per-tensor output parameters, got {}",
             out ? qdtype_name(out->dtype) : std::string("none (f32 output)"));
  }
  chain_out_ = on;
}

QParams QuantizedConv::input_qparams() const { return read_act(*this, "input"); }
std::optional<QParams> QuantizedConv::output_qparams() const {
  if (!detail::has_act(*this, "output")) return std::nullopt;
  return read_act(*this, "output");
}

std::string QuantizedConv::qparams_json() const {
  nlohmann::json j = io_json(*this);
  j["type"] = fmt::format("QuantizedConv{}d", weight_.dim() - 2);
  j["weight_shape"] = weight_.shape();
  j["stride"] = opt_.stride.v;
  j["padding"] = opt_.padding.v;
  j["dilation"] = opt_.dilation.v;
  j["groups"] = opt_.groups;
  j["relu"] = relu_;
  return j.dump();
}

int64_t QuantizedConv::weight_bytes() const { return bytes(weight_) + bytes(scale_); }

// ---- Quantize / DeQuantize
Quantize::Quantize(const QParams& p) : Module("Quantize") { register_act(*this, "output", p); }
Tensor Quantize::forward(const Tensor& x) {
  nn::ModuleScope scope(*this);
  NoGrad ng;
  return quantize(x, read_act(*this, "output"));
}
std::string Quantize::extra_repr() const { return act_json(read_act(*this, "output")).dump(); }

DeQuantize::DeQuantize(const QParams& p) : Module("DeQuantize") { register_act(*this, "input", p); }
Tensor DeQuantize::forward(const Tensor& x) {
  nn::ModuleScope scope(*this);
  NoGrad ng;
  return dequantize(x, read_act(*this, "input"));
}
std::string DeQuantize::extra_repr() const { return act_json(read_act(*this, "input")).dump(); }

}  // namespace qs::quant
