// HistogramObserver (include/qiusuo/quant/observer.h): a histogram over a growing range,
// and the clipping range chosen from it by PyTorch's L2-error search or a percentile.
#include <cmath>
#include <limits>

#include "qiusuo/autograd.h"
#include "qiusuo/ops.h"
#include "qiusuo/quant/observer.h"

namespace qs::quant {

namespace {

// Counts of v in `bins` equal bins over [lo, hi] (torch.histc: the last bin includes hi).
void add_counts(std::vector<double>& h, const std::vector<float>& v, float lo, float hi) {
  const int64_t bins = int64_t(h.size());
  const double width = double(hi) - double(lo);
  for (float x : v) {
    int64_t b = width > 0 ? int64_t((double(x) - lo) * double(bins) / width) : 0;
    h[size_t(std::clamp<int64_t>(b, 0, bins - 1))] += 1.0;
  }
}

// The counts of bins over [lo, hi] spread over bins of the wider [nlo, nhi], each old
// bin's count in proportion to its overlap with the new ones (uniform within a bin).
std::vector<double> rebin(const std::vector<double>& h, double lo, double hi, double nlo, double nhi) {
  const int64_t bins = int64_t(h.size());
  std::vector<double> out(h.size(), 0.0);
  const double w = (hi - lo) / double(bins), nw = (nhi - nlo) / double(bins);
  for (int64_t k = 0; k < bins; ++k) {
    double c = h[size_t(k)];
    if (c == 0) continue;
    double a = lo + double(k) * w, b = a + w;
    int64_t first = std::clamp<int64_t>(int64_t((a - nlo) / nw), 0, bins - 1);
    if (w <= 0) {  // a point mass (the range was a single value)
      out[size_t(first)] += c;
      continue;
    }
    for (int64_t j = first; j < bins; ++j) {
      double ja = nlo + double(j) * nw, jb = ja + nw;
      if (ja >= b) break;
      double overlap = std::min(b, jb) - std::max(a, ja);
      if (overlap > 0) out[size_t(j)] += c * overlap / w;
    }
  }
  return out;
}

}  // namespace

HistogramObserver::HistogramObserver(ObserverOptions opt) : Observer("HistogramObserver", std::move(opt), false) {
  QS_CHECK(opt_.bins >= 16, "HistogramObserver: needs at least 16 bins, got {}", opt_.bins);
  QS_CHECK(opt_.method == "mse" || opt_.method == "percentile", "HistogramObserver: method must be 'mse' or "
           "'percentile', got '{}'", opt_.method);
  QS_CHECK(opt_.percentile > 50 && opt_.percentile <= 100, "HistogramObserver: percentile must be in (50, 100], got {}",
           opt_.percentile);
  histogram_ = register_buffer("histogram", zeros({opt_.bins}));
}

void HistogramObserver::observe(const Tensor& x) {
  if (x.defined() && x.numel() == 0) return;
  auto [lo, hi] = batch_range(x);
  QS_CHECK(std::isfinite(lo[0]) && std::isfinite(hi[0]), "HistogramObserver: the observed tensor holds NaN or inf "
           "(range [{}, {}])", lo[0], hi[0]);
  std::vector<float> v;
  {
    NoGrad ng;
    v = x.detach().to(DType::f32).contiguous().to_vector_as<float>();
  }
  std::vector<double> h = histogram_.to_vector();
  float mn = min_val_.data_ptr<float>()[0], mx = max_val_.data_ptr<float>()[0];
  if (!has_observed()) {
    mn = lo[0], mx = hi[0];
  } else if (lo[0] < mn || hi[0] > mx) {
    float nmn = std::min(mn, lo[0]), nmx = std::max(mx, hi[0]);
    h = rebin(h, mn, mx, nmn, nmx);
    mn = nmn, mx = nmx;
  }
  add_counts(h, v, mn, mx);
  Tensor(histogram_).copy_(from_vector(h, {opt_.bins}));
  set_range({mn}, {mx});
}

std::pair<float, float> HistogramObserver::clipping_range() const {
  QS_CHECK(has_observed(), "HistogramObserver: no data observed, so there is no range to quantise; hint: run "
           "calibration batches through the model before asking for qparams");
  return opt_.method == "mse" ? mse_range() : percentile_range();
}

QParams HistogramObserver::qparams() const {
  auto [lo, hi] = clipping_range();
  return qparams_for({lo}, {hi});
}

// PyTorch's _compute_quantization_error: the L2 error of quantising the histogram's
// density with 2^8 destination bins spanning source bins [start_bin, end_bin].
double HistogramObserver::quantization_error(const std::vector<double>& h, int64_t start_bin, int64_t end_bin) const {
  const int64_t bins = opt_.bins;
  const double dst_nbins = 256;
  const double bin_width = (double(max_val_.data_ptr<float>()[0]) - double(min_val_.data_ptr<float>()[0])) / double(bins);
  const double dst_w = bin_width * double(end_bin - start_bin + 1) / dst_nbins;
  if (dst_w == 0.0) return 0.0;
  auto norm = [](double a, double b, double density) { return density * (b * b * b - a * a * a) / 3.0; };
  double total = 0;
  for (int64_t k = 0; k < bins; ++k) {
    double density = h[size_t(k)] / bin_width;
    if (density == 0) continue;
    double begin = double(k - start_bin) * bin_width, end = begin + bin_width;
    double dst_begin = std::clamp(std::floor(begin / dst_w), 0.0, dst_nbins - 1);
    double dst_end = std::clamp(std::floor(end / dst_w), 0.0, dst_nbins - 1);
    total += norm(begin - (dst_begin + 0.5) * dst_w, dst_w / 2, density);
    total += (dst_end - dst_begin - 1) * norm(-dst_w / 2, dst_w / 2, density);
    total += norm(-dst_w / 2, end - (dst_end * dst_w + dst_w / 2), density);
  }
  return total;
}

// PyTorch's _non_linear_param_search: move whichever end (start or end bin) passes the
// fewer quantiles, in steps of 1e-5 of the mass, while the quantisation error falls.
std::pair<float, float> HistogramObserver::mse_range() const {
  std::vector<double> h = histogram_.to_vector();
  const int64_t bins = opt_.bins;
  std::vector<float> csum(h.size());
  float run = 0, total = 0;
  for (size_t k = 0; k < h.size(); ++k) run += float(h[k]), csum[k] = run;
  total = run;
  const double step = 1e-5;
  double alpha = 0.0, beta = 1.0, norm_min = std::numeric_limits<double>::infinity();
  int64_t start_bin = 0, end_bin = bins - 1;
  while (alpha < beta) {
    double next_alpha = alpha + step, next_beta = beta - step;
    int64_t l = start_bin, r = end_bin;
    while (l < end_bin && csum[size_t(l)] < float(next_alpha * total)) ++l;
    while (r > start_bin && csum[size_t(r)] > float(next_beta * total)) --r;
    int64_t next_start = start_bin, next_end = end_bin;
    if (l - start_bin > end_bin - r) {
      next_start = l;
      alpha = next_alpha;
    } else {
      next_end = r;
      beta = next_beta;
    }
    if (next_start == start_bin && next_end == end_bin) continue;
    double norm = quantization_error(h, next_start, next_end);
    if (norm > norm_min) break;
    norm_min = norm;
    start_bin = next_start;
    end_bin = next_end;
  }
  const float mn = min_val_.data_ptr<float>()[0], mx = max_val_.data_ptr<float>()[0];
  const float w = (mx - mn) / float(bins);
  return {mn + w * float(start_bin), mn + w * float(end_bin + 1)};
}

// The value below which a fraction `q` of the mass lies (linear within a bin).
std::pair<float, float> HistogramObserver::percentile_range() const {
  std::vector<double> h = histogram_.to_vector();
  const double mn = min_val_.data_ptr<float>()[0], mx = max_val_.data_ptr<float>()[0];
  const double w = (mx - mn) / double(h.size());
  double total = 0;
  for (double c : h) total += c;
  auto quantile = [&](double q) {
    double target = q * total, acc = 0;
    for (size_t k = 0; k < h.size(); ++k) {
      if (acc + h[k] >= target && h[k] > 0) return mn + w * (double(k) + (target - acc) / h[k]);
      acc += h[k];
    }
    return mx;
  };
  double p = opt_.percentile / 100.0;
  return {float(quantile(1.0 - p)), float(quantile(p))};
}

}  // namespace qs::quant
