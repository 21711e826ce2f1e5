// quant::convert and the description of a quantised module tree (include/qiusuo/quant/convert.h).
#include "qiusuo/quant/convert.h"

#include "qiusuo/autograd.h"
#include "qiusuo/nn/activation.h"
#include "quant/module_util.h"

namespace qs::quant {

namespace {

// Parameters read from a prepared layer, with the layer's name in any error.
template <class F> QParams read_qparams(const std::string& name, const char* what, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    QS_FAIL("convert: layer '{}': its {} parameters are not usable ({}); hint: calibrate the prepared model (or train "
            "it with QAT) before convert",
            name, what, e.what());
  }
}

void check_weight_qparams(const std::string& name, const QParams& w, int64_t channels) {
  bool zero = true;
  for (auto z : w.zero_point) zero = zero && z == 0;
  QS_CHECK(w.dtype == QDtype::s8 && w.axis == 0 && w.group_size == 0 && zero && int64_t(w.scale.size()) == channels,
           "convert: layer '{}': weight parameters must be per-channel symmetric s8 along axis 0 with {} channels, found "
           "{} axis {} group {} with {} scales{}",
           name, channels, qdtype_name(w.dtype), w.axis, w.group_size, w.scale.size(), zero ? "" : " and nonzero zero points");
}

std::shared_ptr<nn::Module> convert_named(const std::string& name, const PreparedLayer& l) {
  QParams in = read_qparams(name, "input", [&] { return l.input_qparams(); });
  QParams out = read_qparams(name, "output", [&] { return l.output_qparams(); });
  QParams wq = read_qparams(name, "weight", [&] { return l.weight_qparams(); });
  NoGrad ng;
  Tensor w = l.folded_weight().to(DType::f32).contiguous(), b = l.folded_bias().to(DType::f32).contiguous();
  check_weight_qparams(name, wq, w.size(0));
  std::shared_ptr<nn::Module> m;
  if (l.kind() == PreparedLayer::Kind::linear) {
    m = std::make_shared<QuantizedLinear>(w.size(1), w.size(0), true, in, out, l.relu());
  } else {
    nn::ConvOptions o = l.conv_options();
    o.bias = true;
    m = std::make_shared<QuantizedConv>(w.shape(), o, in, out, l.relu());
  }
  std::vector<double> scale(wq.scale.begin(), wq.scale.end());
  detail::buffer(*m, "weight").copy_(quantize(w, wq));
  detail::buffer(*m, "weight_scale").copy_(from_vector(scale, {int64_t(scale.size())}));
  detail::buffer(*m, "bias").copy_(b);
  return m;
}

}  // namespace

std::shared_ptr<nn::Module> convert_layer(const PreparedLayer& layer) { return convert_named(layer.type_name(), layer); }

int64_t convert(nn::Module& model) {
  auto layers = prepared_layers(model);
  // Build every replacement first: an error leaves the model as it was.
  std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>> done;
  for (auto& [name, layer] : layers) done.emplace_back(name, convert_named(name, *layer));
  for (auto& [name, m] : done) model.replace_child(name, m);
  clear_packed_weights();
  model.eval();
  return int64_t(done.size());
}

}  // namespace qs::quant
