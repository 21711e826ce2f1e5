// quant::convert: the prepared (PTQ-calibrated or QAT-trained) model becomes a real INT8
// model (torch.ao.quantization.convert), and the description of such a model that a
// quantised checkpoint stores so `load` can rebuild its module tree.
//
// convert(model), in place:
// - every PreparedLayer (QatLinear, QatConv, QatConvBn) is replaced by a QuantizedLinear /
//   QuantizedConv with the same name: weight = quantize(folded_weight(), weight_qparams())
//   (per-channel symmetric s8, the scales the fake quantisation used), bias =
//   folded_bias() in f32, input parameters input_qparams(), output parameters
//   output_qparams() (after the fused ReLU, which the integer epilogue applies);
// - the Identities left by fusion stay; modules prepare kept in float stay float;
// - boundaries are f32: each quantised layer quantises its f32 input and dequantises its
//   output, so max pooling, average pooling and flatten between layers run in f32 on
//   exactly the values the fake-quantised model sees. The converted model therefore
//   computes what the prepared model computes with fake quantisation enabled (eval), up
//   to the order of float sums (exact s32 here) flipping a rounding step now and then.
// - convert(model, example) also chains adjacent quantised convolutions
//   (chain_quantized_layers below): same results, bit for bit, without the f32 hand-over.
// - the model is left in eval mode. Errors (qs::Error, naming the layer): a layer whose
//   observers saw nothing (calibrate first), or whose weight parameters are not
//   per-channel symmetric s8 along axis 0.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "qiusuo/quant/modules.h"
#include "qiusuo/quant/qat.h"

namespace qs::quant {

// The quantised twin of one prepared layer (see above).
std::shared_ptr<nn::Module> convert_layer(const PreparedLayer& layer);
// Converts every prepared layer of `model`; returns how many were converted.
int64_t convert(nn::Module& model);
// convert, then chain_quantized_layers(model, example).
int64_t convert(nn::Module& model, const Tensor& example);

// ---- chaining u8 activations between quantised convolutions
// Runs model.forward(example) once (eval, no grad, every QuantizedConv's chain marks
// cleared first) while recording the dispatched ops, and marks each pair of QuantizedConv
// layers A -> B whose data flow that trace proves safe: A's requantised u8 output goes only
// to A's own dequantize, and that f32 tensor reaches B's input quantisation only through
// ops that commute with monotone quantisation (max_pool; Identity modules dispatch nothing),
// with no other use on the way (not the model's result, not max_pool's indices), A always
// feeds B and B is fed by A alone, and both sides are u8 per tensor. A then returns its u8
// codes channels-last and B takes them, requantised to its input parameters inside the
// integer convolution (modules.h), which gives the same codes as the f32 hand-over: max
// pooling of codes equals quantising max-pooled values, because dequantisation and
// quantisation are monotone. Every other hand-over stays f32 (ReLU is not in the list:
// after the fusions ReLUs live in the quantised layers' epilogues, and relu has no u8
// kernel). Returns the number of chained pairs. The proof covers the path the example
// takes, as torch.jit.trace: do not chain a model whose forward branches on its input's
// values or shape. The marks are not saved: run this again after loading (load_fashion_cnn
// does) or after replacing modules.
int64_t chain_quantized_layers(nn::Module& model, const Tensor& example);

// ---- dynamic and weight-only quantisation of Linear layers (Transformers, LM generation)
// Replaces every nn::Linear whose dotted name starts with one of `prefixes` ("" = all):
//   "dynamic"      DynamicQuantizedLinear (s8 per-channel weights, u8 activations per token)
//   "weight-int8"  WeightOnlyLinear bits 8 (per channel)
//   "weight-int4"  WeightOnlyLinear bits 4 (groups of `group` inputs)
// `activations` of the weight-only layers: "q8" (x quantised per block of 32 at run time, as
// llama.cpp does; integer dot products) or "f32" (x as it is). Returns how many were replaced. The parent must reach its Linear children through
// child(name) (MultiheadAttention, GeluMLP, SwiGLU, Sequential do). Errors (naming the
// layer): an unknown method, a Linear inside a module that keeps a typed pointer to it
// (MultiheadLatentAttention, MoE), in_features not a multiple of `group` (int4).
int64_t quantize_linears(nn::Module& model, const std::string& method, int64_t group = 128,
                         const std::vector<std::string>& prefixes = {"blocks."}, const std::string& activations = "q8");

// ---- describing a quantised model (for checkpoints)
// {"<dotted name>": spec} for every quantised module (its qparams_json()) and every
// Identity of the model ({"type": "Identity"}), i.e. what differs from the float model.
nlohmann::json quantized_layers(const nn::Module& model);
// An empty shell for one spec (QuantizedLinear, QuantizedConvNd, DynamicQuantizedLinear,
// WeightOnlyLinear, Identity), ready for load_state_dict. Errors name the layer `name`
// and the field that is missing or wrong.
std::shared_ptr<nn::Module> quantized_module_from_spec(const std::string& name, const nlohmann::json& spec);
// Replaces each named module of the float `model` by the shell of its spec.
void apply_quantized_layers(nn::Module& model, const nlohmann::json& layers);

// Bytes of the model's weights as stored: for quantised modules weight_bytes() (the
// integer weight and its scales) plus the f32 bias; for every other module its own
// parameters (weights, biases, batch-norm affine). Activation parameters and running
// statistics are not weights and are not counted.
int64_t model_weight_bytes(const nn::Module& model);

}  // namespace qs::quant
