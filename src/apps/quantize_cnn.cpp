// INT8 quantisation of the Fashion-MNIST CNN: PTQ (prepare, calibrate, convert) and QAT
// (prepare_qat, fine-tune with PyTorch's recipe, convert), with the accuracy and size report.
#include <chrono>
#include <filesystem>

#include "util/progress.h"
#include "qiusuo/apps/cnn.h"
#include "qiusuo/autograd.h"
#include "qiusuo/data/dataloader.h"
#include "qiusuo/data/idx.h"
#include "qiusuo/io/checkpoint.h"
#include "qiusuo/ops.h"
#include "qiusuo/optim/optim.h"
#include "qiusuo/optim/schedule.h"
#include "qiusuo/quant/checkpoint.h"
#include "qiusuo/quant/convert.h"

namespace qs::apps {

namespace {

int64_t file_size(const std::string& p) { return int64_t(std::filesystem::file_size(p)); }

void calibrate_ptq(FashionCNN& model, const Tensor& train_x, const QuantizeCnnOptions& o) {
  QS_CHECK(o.calib_batches >= 1, "quantize cnn: --calib-batches must be at least 1, got {}", o.calib_batches);
  quant::PrepareOptions po;
  po.fuse = FashionCNN::fuse_groups();
  model.eval();
  quant::prepare(model, quant::QConfig::default_ptq(), po);
  std::vector<Tensor> batches;
  for (int64_t i = 0; i < o.calib_batches && i * o.batch < train_x.size(0); ++i)
    batches.push_back(train_x.narrow(0, i * o.batch, std::min(o.batch, train_x.size(0) - i * o.batch)));
  quant::calibrate(model, batches);
}

// PyTorch's QAT recipe: fine-tune at a small lr; freeze the batch-norm statistics, then the
// observers (scales), part-way through.
int64_t train_qat(FashionCNN& model, const Tensor& train_x, const Tensor& train_y, const QuantizeCnnOptions& o) {
  QS_CHECK(o.qat_epochs >= 1, "quantize cnn: --qat-epochs must be at least 1, got {}", o.qat_epochs);
  quant::PrepareOptions po;
  po.fuse = FashionCNN::fuse_groups();
  model.train();
  quant::prepare_qat(model, quant::QConfig::default_qat(), po);
  optim::SGD sgd(model.parameters(), o.qat_lr, 0.9, 0.0, o.weight_decay, false);
  data::TensorDataset ds(train_x, train_y);
  data::DataLoader loader(ds, o.batch, true, o.seed);
  const int64_t total = int64_t(o.qat_epochs) * loader.num_batches();
  const auto bn_step = int64_t(o.freeze_bn_at * double(total)), obs_step = int64_t(o.freeze_observers_at * double(total));
  optim::CosineAnnealingLR schedule(total);
  util::Progress progress("qat", total, "img", 50);
  int64_t step = 0;
  model.train();
  while (loader.epoch() < o.qat_epochs) {
    while (auto batch = loader.next()) {
      if (step == bn_step) quant::freeze_bn_stats(model);
      if (step == obs_step) quant::enable_observer(model, false);
      schedule.apply(sgd, step);
      sgd.zero_grad();
      Tensor loss = cross_entropy(model(batch->x), batch->y);
      loss.backward();
      sgd.step();
      ++step;
      if (!o.quiet) progress.update(step, loss.item(), batch->x.size(0));
    }
  }
  quant::freeze_bn_stats(model);
  quant::enable_observer(model, false);
  model.eval();
  return step;
}

}  // namespace

std::shared_ptr<FashionCNN> load_fashion_cnn(const std::string& path, std::string* method) {
  io::Checkpoint ck = io::load_checkpoint(path);
  QS_CHECK(ck.config.is_object() && ck.config.value("model", "") == "FashionCNN",
           "{}: not a FashionCNN checkpoint (config: {}); hint: make one with 'qiusuo train cnn'", path, ck.config.dump());
  Generator g(0);
  auto model = std::make_shared<FashionCNN>(CnnWidths::from_config(ck.config), g);
  if (quant::is_quantized_checkpoint(ck)) {
    quant::load_quantized_checkpoint(path, ck, *model);
    quant::chain_quantized_layers(*model, zeros({1, 1, 28, 28}, DType::f32));  // run-time wiring, not in the file
    if (method) *method = ck.config["quantized"].value("method", "?");
  } else {
    model->load_state_dict(ck.model);
    if (method) *method = "fp32";
  }
  model->eval();
  return model;
}

ResidentGrowth cnn_resident_growth(const std::string& path) {
  std::shared_ptr<FashionCNN> m;
  return resident_growth([&] {
    m = load_fashion_cnn(path);
    NoGrad ng;
    (*m)(zeros({1, 1, 28, 28}, DType::f32));
  });
}

QuantizeCnnResult quantize_cnn(const QuantizeCnnOptions& o) {
  QS_CHECK(o.method == "ptq" || o.method == "qat", "quantize cnn: unknown method '{}' (expected ptq or qat)", o.method);
  auto t0 = std::chrono::steady_clock::now();
  std::string float_method;
  auto model = load_fashion_cnn(o.checkpoint, &float_method);
  QS_CHECK(float_method == "fp32", "{}: is already quantised ({}); quantise the float checkpoint", o.checkpoint,
           float_method);
  data::FashionMNIST train_set(true, o.data_root, true), test_set(false, o.data_root, true);
  Tensor train_x = first_rows(train_set.images, o.limit_train), train_y = first_rows(train_set.labels, o.limit_train);
  Tensor test_x = first_rows(test_set.images, o.limit_test), test_y = first_rows(test_set.labels, o.limit_test);

  QuantizeCnnResult r;
  r.fp32_accuracy = evaluate_classifier(*model, test_x, test_y).first;
  r.fp32_weight_bytes = quant::model_weight_bytes(*model);
  nlohmann::json config = {{"model", "FashionCNN"}, {"source", o.checkpoint}, {"widths", model->widths().to_json()}};
  if (!o.out.empty()) {
    std::filesystem::path out(o.out);
    if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path());
    std::string tmp = o.out + ".fp32-size.tmp";
    io::save_checkpoint(tmp, io::Checkpoint{model->state_dict(), {}, 0, {}, config, nullptr});
    r.fp32_file_bytes = file_size(tmp);
    r.fp32_resident = cnn_resident_growth(tmp);
    std::filesystem::remove(tmp);
  }
  if (o.method == "ptq") calibrate_ptq(*model, train_x, o);
  else r.qat_steps = train_qat(*model, train_x, train_y, o);
  quant::enable_fake_quant(*model, true);
  quant::enable_observer(*model, false);
  r.fake_quant_accuracy = evaluate_classifier(*model, test_x, test_y).first;
  quant::convert(*model, zeros({1, 1, 28, 28}, DType::f32));
  r.int8_accuracy = evaluate_classifier(*model, test_x, test_y).first;
  r.retained = r.fp32_accuracy > 0 ? r.int8_accuracy / r.fp32_accuracy : 0;
  r.int8_weight_bytes = quant::model_weight_bytes(*model);
  if (!o.out.empty()) {
    nlohmann::json extra = {{"fp32_accuracy", r.fp32_accuracy}, {"int8_accuracy", r.int8_accuracy},
                            {"calib_batches", o.calib_batches}, {"qat_epochs", o.qat_epochs}, {"qat_steps", r.qat_steps}};
    quant::save_quantized_checkpoint(o.out, *model, config, o.method, extra);
    r.int8_file_bytes = file_size(o.out);
    r.int8_resident = cnn_resident_growth(o.out);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace qs::apps
