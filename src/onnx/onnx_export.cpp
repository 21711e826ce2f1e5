// graph::save_onnx and graph::check_onnx (include/qiusuo/graph/onnx.h): a static graph
// written as an ONNX ModelProto through Debian's libonnx (protobuf classes, checker, shape
// inference). One function per family of op-table rows; each names what it cannot export.
#include "qiusuo/graph/onnx.h"

#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "io/atomic_file.h"
#include "kernels/spatial.h"
#include "qiusuo/error.h"

namespace qs::graph {

namespace {

using onnx::AttributeProto;
using onnx::NodeProto;
using onnx::TensorProto;

int onnx_type(DType t) {
  switch (t) {
    case DType::f32: return TensorProto::FLOAT;
    case DType::f64: return TensorProto::DOUBLE;
    case DType::bf16: return TensorProto::BFLOAT16;
    case DType::f16: return TensorProto::FLOAT16;
    case DType::i8: return TensorProto::INT8;
    case DType::u8: return TensorProto::UINT8;
    case DType::i32: return TensorProto::INT32;
    case DType::i64: return TensorProto::INT64;
    case DType::b8: return TensorProto::BOOL;
  }
  return TensorProto::UNDEFINED;
}

void set_type(onnx::TypeProto* t, DType dt, const Shape& shape) {
  auto* tt = t->mutable_tensor_type();
  tt->set_elem_type(onnx_type(dt));
  auto* s = tt->mutable_shape();
  for (int64_t d : shape) {
    auto* dim = s->add_dim();
    if (d == kBatch)
      dim->set_dim_param("N");
    else if (d == kSeq)
      dim->set_dim_param("S");
    else
      dim->set_dim_value(d);
  }
}

void attr(NodeProto* n, const char* name, int64_t v) {
  AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(AttributeProto::INT);
  a->set_i(v);
}
void attr(NodeProto* n, const char* name, float v) {
  AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(AttributeProto::FLOAT);
  a->set_f(v);
}
void attr(NodeProto* n, const char* name, const std::vector<int64_t>& v) {
  AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}

class Exporter {
 public:
  Exporter(const Graph& g, onnx::GraphProto* out) : g_(g), out_(out), readers_(last_readers(g)) {}

  void run() {
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      node_ = int(i);
      emit(g_.nodes[i]);
    }
  }

  // Names of the params and constants some node (or output) reads.
  const std::set<int>& data_used() const { return data_used_; }
  int64_t nodes() const { return out_->node_size(); }

 private:
  const Graph& g_;
  onnx::GraphProto* out_;
  std::vector<int> readers_;
  std::set<int> data_used_;
  int node_ = 0, fresh_ = 0;

  [[noreturn]] void refuse(const std::string& why) const {
    const Node& n = g_.nodes[size_t(node_)];
    QS_FAIL("ONNX export: node {} ({} -> {}) has no ONNX form: {}", node_, n.op,
            n.outputs.empty() ? std::string("-") : g_.values[size_t(n.outputs[0])].name, why);
  }

  const Value& val(int id) const { return g_.values[size_t(id)]; }
  std::string name(int id) {
    const Value& v = val(id);
    if (v.kind == ValueKind::param || v.kind == ValueKind::constant) data_used_.insert(id);
    return v.name;
  }
  std::string fresh(const std::string& base) { return fmt::format("{}_o{}", base, fresh_++); }
  bool used(int id) const { return id >= 0 && readers_[size_t(id)] >= 0; }

  NodeProto* op(const std::string& type, const std::vector<std::string>& in, const std::vector<std::string>& outs) {
    NodeProto* n = out_->add_node();
    n->set_op_type(type);
    n->set_name(fmt::format("n{}_{}_{}", node_, type, out_->node_size()));
    for (auto& s : in) n->add_input(s);
    for (auto& s : outs) n->add_output(s);
    return n;
  }
  // One-output operator writing a fresh temporary (or `to`).
  std::string op1(const std::string& type, const std::vector<std::string>& in, NodeProto** made = nullptr,
                  const std::string& to = "") {
    std::string o = to.empty() ? fresh(g_.values[size_t(g_.nodes[size_t(node_)].outputs[0])].name) : to;
    NodeProto* n = op(type, in, {o});
    if (made) *made = n;
    return o;
  }

  std::string initializer(const std::string& base, DType dt, const Shape& shape, const void* data, size_t bytes) {
    TensorProto* t = out_->add_initializer();
    std::string n = fresh(base);
    t->set_name(n);
    t->set_data_type(onnx_type(dt));
    for (int64_t d : shape) t->add_dims(d);
    t->set_raw_data(std::string(static_cast<const char*>(data), bytes));
    return n;
  }
  std::string ints(const std::vector<int64_t>& v) {
    return initializer("i64", DType::i64, {int64_t(v.size())}, v.data(), v.size() * 8);
  }
  // A scalar (rank 0) of the given floating dtype.
  std::string scalar(double x, DType dt) {
    if (dt == DType::f64) return initializer("c", dt, {}, &x, 8);
    QS_CHECK(dt == DType::f32, "ONNX export: a {} scalar", dtype_name(dt));
    float f = float(x);
    return initializer("c", dt, {}, &f, 4);
  }
  std::string floats(const std::vector<float>& v, const Shape& shape) {
    return initializer("c", DType::f32, shape, v.data(), v.size() * 4);
  }

  // Every output after the first must be unread (they are the training-only or
  // diagnostic outputs of the row).
  void only_first_output(const Node& n, const char* what) const {
    for (size_t i = 1; i < n.outputs.size(); ++i)
      if (used(n.outputs[i])) refuse(fmt::format("its {} (output {}) is read by a later node", what, i));
  }
  const std::string& out0(const Node& n) const { return g_.values[size_t(n.outputs[0])].name; }
  const Shape& shape(int id) const { return val(id).shape; }
  Shape concrete(const Shape& s) const { return with_sizes(s, Sizes{1, 1}); }

  // The run-time size of a symbol (int64 [1]): Shape of the graph input that has it,
  // gathered at its dim (made once).
  std::map<int64_t, std::string> symbol_tensor_;
  std::string symbol_size(int64_t sym) {
    if (auto it = symbol_tensor_.find(sym); it != symbol_tensor_.end()) return it->second;
    for (int id : g_.inputs)
      for (size_t d = 0; d < val(id).shape.size(); ++d)
        if (val(id).shape[d] == sym) {
          std::string shape = op1("Shape", {name(id)});
          NodeProto* gather = nullptr;
          std::string t = op1("Gather", {shape, ints({int64_t(d)})}, &gather);
          attr(gather, "axis", int64_t(0));
          return symbol_tensor_[sym] = t;
        }
    refuse("a symbolic size that no graph input has");
  }
  // An int64 [k] list as a tensor: a constant, or (with symbols) concatenated from
  // constant runs and the symbols' run-time sizes.
  std::string int_list(const std::vector<int64_t>& v) {
    bool sym = false;
    for (int64_t d : v) sym = sym || is_symbol(d);
    if (!sym) return ints(v);
    std::vector<std::string> parts;
    std::vector<int64_t> run;
    for (int64_t d : v) {
      if (!is_symbol(d)) {
        run.push_back(d);
        continue;
      }
      if (!run.empty()) parts.push_back(ints(run)), run.clear();
      parts.push_back(symbol_size(d));
    }
    if (!run.empty()) parts.push_back(ints(run));
    if (parts.size() == 1) return parts[0];
    NodeProto* c = nullptr;
    std::string t = op1("Concat", parts, &c);
    attr(c, "axis", int64_t(0));
    return t;
  }
  // A reshape target: a lone symbol becomes -1 (Reshape infers it); several are read at
  // run time.
  std::string reshape_target(const std::vector<int64_t>& s) {
    int symbols = 0, inferred = 0;
    for (int64_t d : s) symbols += is_symbol(d), inferred += d == -1;
    if (symbols == 1 && inferred == 0) {
      std::vector<int64_t> r = s;
      for (auto& d : r)
        if (is_symbol(d)) d = -1;
      return ints(r);
    }
    if (symbols > 1 && inferred > 0) refuse("a reshape with symbolic sizes and an inferred one");
    return int_list(s);
  }

  std::string gelu(const std::string& x, const std::string& approx, DType dt) {
    // 0.5 x (1 + erf(x / sqrt 2)), or with tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    std::string inner;
    if (approx == "tanh") {
      std::string x3 = op1("Mul", {op1("Mul", {x, x}), x});
      std::string t = op1("Add", {x, op1("Mul", {x3, scalar(0.044715, dt)})});
      inner = op1("Tanh", {op1("Mul", {t, scalar(std::sqrt(2.0 / M_PI), dt)})});
    } else {
      inner = op1("Erf", {op1("Mul", {x, scalar(M_SQRT1_2, dt)})});
    }
    return op1("Mul", {op1("Mul", {x, scalar(0.5, dt)}), op1("Add", {inner, scalar(1.0, dt)})});
  }

  void spatial_attrs(NodeProto* n, const ops::Spatial& s, bool with_dilation) {
    std::vector<int64_t> k, st, pads, dil;
    for (int i = 3 - s.nsp; i < 3; ++i) {
      k.push_back(s.k[size_t(i)]);
      st.push_back(s.stride[size_t(i)]);
      pads.push_back(s.pad[size_t(i)]);
      dil.push_back(s.dil[size_t(i)]);
    }
    for (int i = 3 - s.nsp; i < 3; ++i) pads.push_back(s.pad[size_t(i)]);  // ends equal the begins
    attr(n, "kernel_shape", k);
    attr(n, "strides", st);
    attr(n, "pads", pads);
    if (with_dilation) attr(n, "dilations", dil);
  }

  void emit(const Node& n) {
    const std::string& o = n.op;
    auto in = [&](size_t i) { return name(n.inputs[i]); };
    auto has = [&](size_t i) { return i < n.inputs.size() && n.inputs[i] >= 0; };
    const DType dt = n.outputs.empty() ? DType::f32 : val(n.outputs[0]).dtype;
    static const std::map<std::string, std::string> unary = {
        {"neg", "Neg"},   {"exp", "Exp"},         {"log", "Log"},   {"sqrt", "Sqrt"}, {"abs", "Abs"},
        {"relu", "Relu"}, {"sigmoid", "Sigmoid"}, {"tanh", "Tanh"}, {"sin", "Sin"},   {"cos", "Cos"},
        {"copy", "Identity"}, {"dropout", "Identity"}};
    static const std::map<std::string, std::string> binary = {
        {"add", "Add"},  {"sub", "Sub"},     {"mul", "Mul"},        {"div", "Div"},     {"pow", "Pow"},
        {"maximum", "Max"}, {"minimum", "Min"}, {"eq", "Equal"},    {"lt", "Less"},     {"le", "LessOrEqual"},
        {"gt", "Greater"}, {"ge", "GreaterOrEqual"}, {"matmul", "MatMul"}};
    if (auto it = unary.find(o); it != unary.end()) {
      op(it->second, {in(0)}, {out0(n)});
    } else if (auto it2 = binary.find(o); it2 != binary.end()) {
      op(it2->second, {in(0), in(1)}, {out0(n)});
    } else if (o == "ne") {
      op("Not", {op1("Equal", {in(0), in(1)})}, {out0(n)});
    } else if (o == "rsqrt") {
      op("Reciprocal", {op1("Sqrt", {in(0)})}, {out0(n)});
    } else if (o == "silu") {
      op("Mul", {in(0), op1("Sigmoid", {in(0)})}, {out0(n)});
    } else if (o == "gelu") {
      op("Identity", {gelu(in(0), n.attrs.has("approximate") ? n.attrs.s("approximate") : "none", dt)}, {out0(n)});
    } else if (o == "where") {
      std::string c = in(0);
      if (val(n.inputs[0]).dtype != DType::b8) {
        NodeProto* cast = nullptr;
        c = op1("Cast", {c}, &cast);
        attr(cast, "to", int64_t(TensorProto::BOOL));
      }
      op("Where", {c, in(1), in(2)}, {out0(n)});
    } else if (o == "clamp") {
      std::string lo = n.attrs.has("min") ? scalar(n.attrs.f("min"), dt) : "";
      std::string hi = n.attrs.has("max") ? scalar(n.attrs.f("max"), dt) : "";
      op("Clip", {in(0), lo, hi}, {out0(n)});
    } else if (o == "view") {
      op("Reshape", {in(0), reshape_target(n.attrs.ints("shape"))}, {out0(n)});
    } else if (o == "permute") {
      attr(op("Transpose", {in(0)}, {out0(n)}), "perm", n.attrs.ints("dims"));
    } else if (o == "slice") {
      // A symbolic end that is the sliced dim's own size is "to the end"; any other is read
      // at run time (a position table of max_seq rows sliced to S).
      int64_t end = n.attrs.i("end");
      const int64_t dim = n.attrs.i("dim");
      const Shape& xs = shape(n.inputs[0]);
      const int64_t axis = dim < 0 ? dim + int64_t(xs.size()) : dim;
      std::string ends;
      if (is_symbol(end) && axis >= 0 && axis < int64_t(xs.size()) && xs[size_t(axis)] == end)
        ends = ints({std::numeric_limits<int64_t>::max()});
      else
        ends = int_list({end});
      if (is_symbol(n.attrs.i("start")) || is_symbol(n.attrs.i("step", 1))) refuse("a slice starting at a symbolic size");
      op("Slice", {in(0), ints({n.attrs.i("start")}), ends, ints({dim}), ints({n.attrs.i("step", 1)})}, {out0(n)});
    } else if (o == "expand") {
      std::vector<int64_t> s = n.attrs.ints("shape");
      const Shape& xs = shape(n.inputs[0]);
      bool dynamic = false;
      for (size_t d = 0; d < s.size(); ++d) {
        if (!is_symbol(s[d])) continue;
        const size_t lead = s.size() - xs.size();  // the input's dims align right
        if (d >= lead && xs[d - lead] == s[d])
          s[d] = 1;  // broadcasting keeps the input's own N or S
        else
          dynamic = true;
      }
      op("Expand", {in(0), dynamic ? int_list(s) : ints(s)}, {out0(n)});
    } else if (o == "cast") {
      attr(op("Cast", {in(0)}, {out0(n)}), "to", int64_t(onnx_type(dt)));
    } else if (o == "cat") {
      std::vector<std::string> xs;
      for (size_t i = 0; i < n.inputs.size(); ++i) xs.push_back(in(i));
      attr(op("Concat", xs, {out0(n)}), "axis", n.attrs.i("dim"));
    } else if (o == "sum" || o == "mean" || o == "amax" || o == "amin") {
      reduce(n, o == "sum" ? "ReduceSum" : o == "mean" ? "ReduceMean" : o == "amax" ? "ReduceMax" : "ReduceMin");
    } else if (o == "softmax" || o == "log_softmax") {
      attr(op(o == "softmax" ? "Softmax" : "LogSoftmax", {in(0)}, {out0(n)}), "axis", n.attrs.i("dim"));
    } else if (o == "argmax") {
      std::string x = in(0);
      int64_t axis = 0;
      if (n.attrs.has("dim"))
        axis = n.attrs.i("dim");
      else
        x = op1("Reshape", {x, ints({-1})});
      NodeProto* a = op("ArgMax", {x}, {out0(n)});
      attr(a, "axis", axis);
      attr(a, "keepdims", int64_t(n.attrs.b("keepdim", false)));
    } else if (o == "topk") {
      NodeProto* t = op("TopK", {in(0), ints({n.attrs.i("k")})}, {out0(n), g_.values[size_t(n.outputs[1])].name});
      attr(t, "axis", n.attrs.i("dim", -1));
      attr(t, "largest", int64_t(n.attrs.b("largest", true)));
      attr(t, "sorted", int64_t(n.attrs.b("sorted", true)));
    } else if (o == "layer_norm") {
      layer_norm(n, dt);
    } else if (o == "rms_norm") {
      rms_norm(n, dt);
    } else if (o == "linear") {
      linear(n, dt);
    } else if (o == "embedding") {
      op("Gather", {in(0), in(1)}, {out0(n)});  // padding_idx matters only to the gradient
    } else if (o == "index_select") {
      attr(op("Gather", {in(0), in(1)}, {out0(n)}), "axis", n.attrs.i("dim"));
    } else if (o == "gather") {
      attr(op("GatherElements", {in(0), in(1)}, {out0(n)}), "axis", n.attrs.i("dim"));
    } else if (o == "rope") {
      rope(n);
    } else if (o == "convolution") {
      ops::Spatial s = ops::conv_spatial(concrete(shape(n.inputs[0])), shape(n.inputs[1]), n.attrs, "convolution");
      std::vector<std::string> xs = {in(0), in(1)};
      if (has(2)) xs.push_back(in(2));
      const bool relu = ops::conv_relu(n.attrs);
      NodeProto* c = nullptr;
      std::string y = op1("Conv", xs, &c, relu ? "" : out0(n));
      spatial_attrs(c, s, true);
      attr(c, "group", n.attrs.i("groups", 1));
      if (relu) op("Relu", {y}, {out0(n)});
    } else if (o == "max_pool" || o == "avg_pool") {
      only_first_output(n, "indices");
      const Shape xs = concrete(shape(n.inputs[0]));
      ops::Spatial s = ops::pool_spatial(xs, n.attrs, o.c_str(), 1, 3);
      NodeProto* p = op(o == "max_pool" ? "MaxPool" : "AveragePool", {in(0)}, {out0(n)});
      spatial_attrs(p, s, false);
      if (o == "avg_pool") attr(p, "count_include_pad", int64_t(n.attrs.b("count_include_pad", true)));
    } else if (o == "adaptive_avg_pool") {
      adaptive_avg_pool(n);
    } else if (o == "batch_norm") {
      batch_norm(n, dt);
    } else if (o == "attention") {
      attention(n, dt);
    } else if (o == "quantize") {
      quantize_row(n);
    } else if (o == "dequantize") {
      dequantize_row(n);
    } else if (o == "qconv" || o == "qlinear") {
      qmatmul_row(n);
    } else if (o == "dynamic_linear" || o == "woq_linear" || o == "fake_quantize") {
      refuse("dynamically or weight-only quantised linears and fake quantisation have no QDQ form written; export "
             "the float model or a statically quantised one");
    } else {
      refuse("no ONNX mapping is written for this op-table row");
    }
  }

  // ---- INT8 as QDQ: QuantizeLinear / DequantizeLinear around float operators, the form
  // ONNX Runtime turns back into integer kernels (QLinearConv, QLinearMatMul).
  const Tensor& data_of(int id, const char* what) const {
    const Value& v = val(id);
    if (v.kind != ValueKind::param && v.kind != ValueKind::constant)
      refuse(fmt::format("its {} ({}) is computed, not a parameter or constant", what, v.name));
    return g_.data[size_t(id)];
  }
  // Per-tensor or per-channel zero points as an initializer of the codes' type.
  std::string zero_points(const std::vector<int64_t>& zp, DType codes, bool scalar) {
    std::vector<uint8_t> b;
    for (int64_t z : zp) b.push_back(uint8_t(codes == DType::u8 ? uint8_t(z) : uint8_t(int8_t(z))));
    Shape sh = scalar ? Shape{} : Shape{int64_t(zp.size())};
    return initializer("zp", codes, sh, b.data(), b.size());
  }
  std::string f32_scalar(double x) { return scalar(x, DType::f32); }
  // x (f32) -> codes: QuantizeLinear, with a Clip in the real domain first when [qmin, qmax]
  // is narrower than the type (7-bit activations; ONNX saturates to the whole type).
  std::string quantize_to(const std::string& x, double scale, int64_t zp, DType codes, int64_t qmin, int64_t qmax,
                          const std::string& to = "") {
    std::string in = x;
    const bool full = qmin == (codes == DType::u8 ? 0 : -128) && qmax == (codes == DType::u8 ? 255 : 127);
    if (!full) in = op1("Clip", {x, f32_scalar(double(qmin - zp) * scale), f32_scalar(double(qmax - zp) * scale)});
    return op1("QuantizeLinear", {in, f32_scalar(scale), zero_points({zp}, codes, true)}, nullptr, to);
  }
  std::string dequantize_from(const std::string& q, double scale, int64_t zp, DType codes, const std::string& to = "") {
    return op1("DequantizeLinear", {q, f32_scalar(scale), zero_points({zp}, codes, true)}, nullptr, to);
  }
  DType codes_of(const Attrs& a, const char* key) const {
    const std::string d = a.s(key);
    return d == "u8" ? DType::u8 : DType::i8;
  }

  void quantize_row(const Node& n) {
    const Tensor sc = data_of(n.inputs[1], "scale").contiguous(), zp = data_of(n.inputs[2], "zero point").contiguous();
    const int64_t axis = n.attrs.i("axis", -1);
    const DType codes = codes_of(n.attrs, "dtype");
    const int64_t qmin = n.attrs.i("qmin"), qmax = n.attrs.i("qmax");
    std::vector<int64_t> zps;
    for (int64_t i = 0; i < zp.numel(); ++i) zps.push_back(int64_t(zp.data_ptr<int32_t>()[i]));
    if (axis < 0) {
      quantize_to(name(n.inputs[0]), double(sc.data_ptr<float>()[0]), zps[0], codes, qmin, qmax, out0(n));
      return;
    }
    if (qmin != (codes == DType::u8 ? 0 : -128) || qmax != (codes == DType::u8 ? 255 : 127))
      refuse("per-channel quantisation to a range narrower than the type");
    std::vector<float> scales(sc.data_ptr<float>(), sc.data_ptr<float>() + sc.numel());
    NodeProto* q = op("QuantizeLinear", {name(n.inputs[0]), floats(scales, {sc.numel()}), zero_points(zps, codes, false)},
                      {out0(n)});
    attr(q, "axis", axis);
  }

  void dequantize_row(const Node& n) {
    const Tensor sc = data_of(n.inputs[1], "scale").contiguous(), zp = data_of(n.inputs[2], "zero point").contiguous();
    const int64_t axis = n.attrs.i("axis", -1);
    const DType codes = val(n.inputs[0]).dtype;
    std::vector<int64_t> zps;
    for (int64_t i = 0; i < zp.numel(); ++i) zps.push_back(int64_t(zp.data_ptr<int32_t>()[i]));
    if (axis < 0) {
      dequantize_from(name(n.inputs[0]), double(sc.data_ptr<float>()[0]), zps[0], codes, out0(n));
      return;
    }
    std::vector<float> scales(sc.data_ptr<float>(), sc.data_ptr<float>() + sc.numel());
    NodeProto* d = op("DequantizeLinear", {name(n.inputs[0]), floats(scales, {sc.numel()}), zero_points(zps, codes, false)},
                      {out0(n)});
    attr(d, "axis", axis);
  }

  // qconv and qlinear: the input codes (requantised first when chained), weights and bias
  // dequantised, the float operator, ReLU, and the output quantised (unless it is f32).
  // The bias goes in as int32 in units of x_scale * w_scale (zero point 0), the form ONNX
  // Runtime fuses into QLinearConv; rounding it moves each sum by at most half a unit.
  void qmatmul_row(const Node& n) {
    const bool conv = n.op == "qconv";
    const Attrs& a = n.attrs;
    const DType xcodes = val(n.inputs[0]).dtype;
    const double xs = a.f("x_scale");
    const int64_t xzp = a.i("x_zp", 0);
    std::string xq = name(n.inputs[0]);
    if (a.has("x_from_scale")) {  // codes of the producing layer: dequantise, requantise
      std::string real = dequantize_from(xq, a.f("x_from_scale"), a.i("x_from_zp", 0), xcodes);
      xq = quantize_to(real, xs, xzp, DType::u8, a.i("x_qmin", 0), a.i("x_qmax", 255));
    }
    std::string x = dequantize_from(xq, xs, xzp, a.has("x_from_scale") ? DType::u8 : xcodes);
    const Tensor ws = data_of(n.inputs[2], "weight scales").contiguous();
    const int64_t O = ws.numel();
    std::vector<float> wscale(ws.data_ptr<float>(), ws.data_ptr<float>() + O);
    NodeProto* dqw = nullptr;
    std::string w = op1("DequantizeLinear", {name(n.inputs[1]), floats(wscale, {O}), zero_points(std::vector<int64_t>(size_t(O), 0), DType::i8, false)}, &dqw);
    attr(dqw, "axis", int64_t(0));
    std::string bias;
    if (n.inputs[3] >= 0) {
      const Tensor b = data_of(n.inputs[3], "bias").contiguous();
      std::vector<int32_t> bq(static_cast<size_t>(O));
      std::vector<float> bscale(static_cast<size_t>(O));
      for (int64_t o = 0; o < O; ++o) {
        bscale[size_t(o)] = float(xs) * wscale[size_t(o)];
        const double q = std::nearbyint(double(b.data_ptr<float>()[o]) / double(bscale[size_t(o)]));
        if (!(std::abs(q) < 2147483647.0)) refuse("a bias beyond int32 in units of x_scale * w_scale");
        bq[size_t(o)] = int32_t(q);
      }
      std::string bq_name = initializer("bias_q", DType::i32, {O}, bq.data(), bq.size() * 4);
      std::vector<int32_t> zeros(static_cast<size_t>(O), 0);
      NodeProto* dqb = nullptr;
      bias = op1("DequantizeLinear", {bq_name, floats(bscale, {O}), initializer("zp", DType::i32, {O}, zeros.data(), zeros.size() * 4)}, &dqb);
      attr(dqb, "axis", int64_t(0));
    }
    const std::string out = a.has("out") ? a.s("out") : "f32";
    const bool relu = a.b("relu", false), real_out = out == "f32";
    std::string y;
    const std::string direct = (real_out && !relu) ? out0(n) : "";
    if (conv) {
      ops::Spatial s = ops::conv_spatial(concrete(shape(n.inputs[0])), shape(n.inputs[1]), a, "qconv");
      std::vector<std::string> xs_in = {x, w};
      if (!bias.empty()) xs_in.push_back(bias);
      NodeProto* c = nullptr;
      y = op1("Conv", xs_in, &c, direct);
      spatial_attrs(c, s, true);
      attr(c, "group", a.i("groups", 1));
    } else {
      y = x_wt_plus_b(x, w, bias, shape(n.inputs[0]).size() == 2, direct);
    }
    if (relu) y = op1("Relu", {y}, nullptr, real_out ? out0(n) : "");
    if (!real_out)
      quantize_to(y, a.f("out_scale"), a.i("out_zp", 0), out == "u8" ? DType::u8 : DType::i8, a.i("out_qmin"),
                  a.i("out_qmax"), out0(n));
  }

  void reduce(const Node& n, const char* type) {
    const std::vector<int64_t>& dims = n.attrs.ints("dims");
    const bool keep = n.attrs.b("keepdim", false);
    std::vector<std::string> xs = {name(n.inputs[0])};
    if (std::string(type) == "ReduceSum" && !dims.empty()) xs.push_back(ints(dims));  // opset 13: axes as an input
    NodeProto* r = op(type, xs, {out0(n)});
    attr(r, "keepdims", int64_t(keep));
    if (std::string(type) != "ReduceSum" && !dims.empty()) attr(r, "axes", dims);
  }

  void layer_norm(const Node& n, DType dt) {
    const std::vector<int64_t>& ns = n.attrs.ints("normalized_shape");
    int64_t count = 1;
    for (int64_t d : ns) count *= d;
    std::string w = n.inputs[1] >= 0 ? name(n.inputs[1]) : floats(std::vector<float>(size_t(count), 1.0f), ns);
    std::vector<std::string> xs = {name(n.inputs[0]), w};
    if (n.inputs[2] >= 0) xs.push_back(name(n.inputs[2]));
    NodeProto* l = op("LayerNormalization", xs, {out0(n)});
    attr(l, "axis", -int64_t(ns.size()));
    attr(l, "epsilon", float(n.attrs.f("eps")));
  }

  void rms_norm(const Node& n, DType dt) {
    const std::vector<int64_t>& ns = n.attrs.ints("normalized_shape");
    std::vector<int64_t> axes;
    for (size_t i = 0; i < ns.size(); ++i) axes.push_back(-int64_t(ns.size()) + int64_t(i));
    std::string x = name(n.inputs[0]);
    NodeProto* m = nullptr;
    std::string ms = op1("ReduceMean", {op1("Mul", {x, x})}, &m);
    attr(m, "axes", axes);
    attr(m, "keepdims", int64_t(1));
    std::string inv = op1("Reciprocal", {op1("Sqrt", {op1("Add", {ms, scalar(n.attrs.f("eps"), dt)})})});
    if (n.inputs[1] >= 0)
      op("Mul", {op1("Mul", {x, inv}), name(n.inputs[1])}, {out0(n)});
    else
      op("Mul", {x, inv}, {out0(n)});
  }

  // x w^T (+ b) for w [N, K]: Gemm for a 2-D x, else Transpose + MatMul (+ Add).
  std::string x_wt_plus_b(const std::string& x, const std::string& w, const std::string& b, bool two_d,
                          const std::string& to) {
    if (two_d) {
      std::vector<std::string> xs = {x, w};
      if (!b.empty()) xs.push_back(b);
      NodeProto* gemm = nullptr;
      std::string y = op1("Gemm", xs, &gemm, to);
      attr(gemm, "transB", int64_t(1));
      return y;
    }
    NodeProto* t = nullptr;
    std::string wt = op1("Transpose", {w}, &t);
    attr(t, "perm", std::vector<int64_t>{1, 0});
    return b.empty() ? op1("MatMul", {x, wt}, nullptr, to) : op1("Add", {op1("MatMul", {x, wt}), b}, nullptr, to);
  }

  void linear(const Node& n, DType dt) {
    const std::string act = n.attrs.has("activation") ? n.attrs.s("activation") : "none";
    if (act != "none" && act != "gelu") refuse("linear activation '" + act + "'");
    const bool fused = act == "gelu";
    const std::string x = name(n.inputs[0]), w = name(n.inputs[1]);
    const std::string b = n.inputs[2] >= 0 ? name(n.inputs[2]) : "";
    const std::string y = x_wt_plus_b(x, w, b, shape(n.inputs[0]).size() == 2, fused ? "" : out0(n));
    if (fused) op("Identity", {gelu(y, "none", dt)}, {out0(n)});
  }

  void rope(const Node& n) {
    const Shape& xs = shape(n.inputs[0]);
    const int64_t d = xs.back(), h = d / 2;
    const std::string x = name(n.inputs[0]), c = name(n.inputs[1]), s = name(n.inputs[2]);
    std::string x1 = op1("Slice", {x, ints({0}), ints({h}), ints({-1})});
    std::string x2 = op1("Slice", {x, ints({h}), ints({d}), ints({-1})});
    std::string a = op1("Sub", {op1("Mul", {x1, c}), op1("Mul", {x2, s})});
    std::string b = op1("Add", {op1("Mul", {x1, s}), op1("Mul", {x2, c})});
    attr(op("Concat", {a, b}, {out0(n)}), "axis", int64_t(-1));
  }

  void adaptive_avg_pool(const Node& n) {
    const Shape xs = concrete(shape(n.inputs[0]));
    ops::Spatial s = ops::adaptive_spatial(xs, n.attrs, "adaptive_avg_pool");
    bool global = true, even = true;
    std::vector<int64_t> k;
    for (int i = 3 - s.nsp; i < 3; ++i) {
      global = global && s.out[size_t(i)] == 1;
      even = even && s.in[size_t(i)] % s.out[size_t(i)] == 0;
      k.push_back(s.out[size_t(i)] ? s.in[size_t(i)] / s.out[size_t(i)] : 1);
    }
    if (global) {
      op("GlobalAveragePool", {name(n.inputs[0])}, {out0(n)});
    } else if (even) {  // equal windows: an average pool
      NodeProto* p = op("AveragePool", {name(n.inputs[0])}, {out0(n)});
      attr(p, "kernel_shape", k);
      attr(p, "strides", k);
    } else {
      refuse("adaptive average pooling to a size that does not divide the input (uneven windows)");
    }
  }

  void batch_norm(const Node& n, DType dt) {
    if (n.attrs.b("training", false)) refuse("batch_norm in training mode (trace in eval mode)");
    only_first_output(n, "batch statistics");
    const int64_t C = shape(n.inputs[0])[1];
    std::string w = n.inputs[1] >= 0 ? name(n.inputs[1]) : floats(std::vector<float>(size_t(C), 1.0f), {C});
    std::string b = n.inputs[2] >= 0 ? name(n.inputs[2]) : floats(std::vector<float>(size_t(C), 0.0f), {C});
    const bool relu = n.attrs.b("relu", false);
    NodeProto* bn = nullptr;
    std::string y = op1("BatchNormalization", {name(n.inputs[0]), w, b, name(n.inputs[3]), name(n.inputs[4])}, &bn,
                        relu ? "" : out0(n));
    attr(bn, "epsilon", float(n.attrs.f("eps")));
    if (relu) op("Relu", {y}, {out0(n)});
  }

  void attention(const Node& n, DType dt) {
    for (size_t i = 3; i < 6; ++i)
      if (n.inputs.size() > i && n.inputs[i] >= 0)
        refuse("attention with a padding mask, ALiBi slopes or relative-position bias");
    if (n.attrs.has("relative") && n.attrs.s("relative") != "none") refuse("relative-position attention");
    only_first_output(n, "log-sum-exp or bucket weights");
    const Shape &qs = shape(n.inputs[0]), &ks = shape(n.inputs[1]), &vs = shape(n.inputs[2]);
    const int64_t hq = qs[1], hk = ks[1], nq = qs[2], m = ks[2];
    if (is_symbol(hq) || is_symbol(hk)) refuse("a symbolic number of heads");
    std::string k = name(n.inputs[1]), v = name(n.inputs[2]);
    if (hq != hk) {  // grouped-query: key/value head g serves query heads [g r, (g + 1) r)
      if (hk <= 0 || hq % hk != 0) refuse("query heads not a multiple of key heads");
      const int64_t r = hq / hk;
      auto repeat = [&](const std::string& t, int64_t dd) {
        // 0 copies the batch from the input, -1 infers the key length
        std::string t5 = op1("Reshape", {t, ints({0, hk, 1, -1, dd})});
        std::string e = op1("Expand", {t5, ints({1, 1, r, 1, 1})});
        return op1("Reshape", {e, ints({0, hq, -1, dd})});
      };
      k = repeat(k, ks[3]);
      v = repeat(v, vs[3]);
    }
    NodeProto* t = nullptr;
    std::string kt = op1("Transpose", {k}, &t);
    attr(t, "perm", std::vector<int64_t>{0, 1, 3, 2});
    std::string s = op1("Mul", {op1("MatMul", {name(n.inputs[0]), kt}), scalar(n.attrs.f("scale"), dt)});
    if (n.attrs.b("causal", false) && (is_symbol(nq) || is_symbol(m))) {
      // A dynamic length: -inf above diagonal 1 + m - n, made at run time.
      if (nq != m) refuse("causal attention with query and key lengths that differ symbolically (a KV cache)");
      onnx::TensorProto minus_inf;
      minus_inf.set_data_type(TensorProto::FLOAT);
      minus_inf.add_dims(1);
      minus_inf.add_float_data(-std::numeric_limits<float>::infinity());
      NodeProto* full = nullptr;
      std::string filled = op1("ConstantOfShape", {int_list({nq, m})}, &full);
      AttributeProto* value = full->add_attribute();
      value->set_name("value");
      value->set_type(AttributeProto::TENSOR);
      *value->mutable_t() = minus_inf;
      NodeProto* tri = nullptr;
      const int64_t one = 1;
      std::string mask = op1("Trilu", {filled, initializer("k", DType::i64, {}, &one, 8)}, &tri);
      attr(tri, "upper", int64_t(1));
      s = op1("Add", {s, mask});
    } else if (n.attrs.b("causal", false)) {
      // Query i (position i + m - n) sees keys j <= i + m - n: -inf elsewhere.
      std::vector<float> mask(size_t(nq * m), 0.0f);
      for (int64_t i = 0; i < nq; ++i)
        for (int64_t j = 0; j < m; ++j)
          if (j > i + m - nq) mask[size_t(i * m + j)] = -std::numeric_limits<float>::infinity();
      s = op1("Add", {s, floats(mask, {nq, m})});
    }
    NodeProto* sm = nullptr;
    std::string p = op1("Softmax", {s}, &sm);
    attr(sm, "axis", int64_t(-1));
    op("MatMul", {p, v}, {out0(n)});
  }
};

}  // namespace

OnnxReport save_onnx(const Graph& g, const std::string& path, const OnnxOptions& opts) {
  g.check_replayable();
  g.verify();
  for (const Value& v : g.values)
    if (v.dtype == DType::bf16 || v.dtype == DType::f16)
      QS_FAIL("ONNX export: value {} is {}; export the float model (ONNX Runtime's CPU kernels are float32; trace "
              "without --bf16)", v.name, dtype_name(v.dtype));
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.set_producer_name("qiusuo");
  model.set_producer_version("0.1.0");
  model.set_doc_string(opts.doc);
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOnnxOpset);
  onnx::GraphProto* gp = model.mutable_graph();
  gp->set_name("qiusuo");

  Exporter ex(g, gp);
  ex.run();
  std::set<int> data = ex.data_used();
  for (int id : g.outputs)
    if (g.values[size_t(id)].kind == ValueKind::param || g.values[size_t(id)].kind == ValueKind::constant) data.insert(id);
  for (int id : data) {
    const Value& v = g.values[size_t(id)];
    const Tensor t = g.data[size_t(id)].contiguous();
    TensorProto* tp = gp->add_initializer();
    tp->set_name(v.name);
    tp->set_data_type(onnx_type(v.dtype));
    for (int64_t d : v.shape) tp->add_dims(d);
    tp->set_raw_data(std::string(static_cast<const char*>(t.raw_data()), size_t(t.numel()) * dtype_size(v.dtype)));
  }
  for (int id : g.inputs) {
    auto* vi = gp->add_input();
    vi->set_name(g.values[size_t(id)].name);
    set_type(vi->mutable_type(), g.values[size_t(id)].dtype, g.values[size_t(id)].shape);
  }
  std::set<int> outs(g.outputs.begin(), g.outputs.end());
  for (int id : g.outputs) {
    auto* vi = gp->add_output();
    vi->set_name(g.values[size_t(id)].name);
    set_type(vi->mutable_type(), g.values[size_t(id)].dtype, g.values[size_t(id)].shape);
  }
  // Every node output qiusuo knows the shape of: shape inference checks them against the
  // operators' own rules (check_onnx).
  const std::vector<int> readers = last_readers(g);
  for (const Node& n : g.nodes)
    for (int id : n.outputs)
      if (readers[size_t(id)] >= 0 && !outs.count(id)) {
        auto* vi = gp->add_value_info();
        vi->set_name(g.values[size_t(id)].name);
        set_type(vi->mutable_type(), g.values[size_t(id)].dtype, g.values[size_t(id)].shape);
      }

  std::string bytes;
  QS_CHECK(model.SerializeToString(&bytes), "ONNX export: the model does not serialise (over 2 GB?)");
  io::write_file_atomic(path, bytes);
  OnnxReport r;
  r.opset = kOnnxOpset;
  r.nodes = gp->node_size();
  r.initializers = gp->initializer_size();
  r.bytes = int64_t(bytes.size());
  for (const auto& n : gp->node()) r.op_types[n.op_type()]++;
  return r;
}

void check_onnx(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IOError(fmt::format("{}: cannot open", path));
  onnx::ModelProto model;
  if (!model.ParseFromIstream(&f)) throw IOError(fmt::format("{}: not an ONNX model (protobuf parse failed)", path));
  try {
    onnx::checker::check_model(model);
    onnx::ShapeInferenceOptions opts(/*check_type=*/true, /*strict_mode=*/1, /*data_prop=*/true);
    onnx::shape_inference::InferShapes(model, onnx::OpSchemaRegistry::Instance(), opts);
  } catch (const std::exception& e) {
    QS_FAIL("{}: the ONNX checker refused the model: {}", path, e.what());
  }
}

}  // namespace qs::graph
