#include "qiusuo/io/checkpoint.h"

#include <filesystem>

#include "util/json_bounded.h"

namespace qs::io {
namespace {

using json = nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw IOError(fmt::format("checkpoint: {}: {}", path, what));
}

const std::string& meta_field(const std::string& path, const std::map<std::string, std::string>& m,
                              const char* key) {
  auto it = m.find(key);
  if (it == m.end()) fail(path, fmt::format("__metadata__: expected a key '{}', found none", key));
  return it->second;
}

json parse_field(const std::string& path, const std::string& key, const std::string& text) {
  try {
    return util::parse_json_bounded(text);
  } catch (const json::exception& e) {
    fail(path, fmt::format("__metadata__['{}']: expected JSON text, found '{}' ({})", key,
                           text.size() > 200 ? text.substr(0, 200) + "..." : text, e.what()));
  }
}

}  // namespace

void check_config_fits(const std::string& path, const Checkpoint& ckpt, double at_least_bytes) {
  double held = 0;
  for (const auto& [name, t] : ckpt.model) held += double(t.numel()) * double(dtype_size(t.dtype()));
  if (at_least_bytes > 1.01 * held + 4096)
    throw Error(fmt::format("{}: the model config describes at least {:.3g} bytes of parameters, but the checkpoint "
                            "holds {:.3g} bytes of tensors; the config does not belong to these weights",
                            path, at_least_bytes, held));
}

void save_checkpoint(const std::string& path, const Checkpoint& ckpt) {
  NamedTensors all;
  all.reserve(ckpt.model.size() + ckpt.optimizer.size());
  for (const auto& [n, t] : ckpt.model) all.emplace_back("model." + n, t);
  for (const auto& [n, t] : ckpt.optimizer) all.emplace_back("optim." + n, t);
  std::map<std::string, std::string> meta = {
      {"format", kCheckpointFormat},
      {"step", std::to_string(ckpt.step)},
      {"rng_state", json(ckpt.rng_state).dump()},
      {"config", ckpt.config.dump()},
      {"extra", ckpt.extra.dump()},
  };
  save_safetensors(path, all, meta);
}

std::string save_checkpoint_and_last(const std::string& dir, const std::string& name, const Checkpoint& ckpt) {
  namespace fs = std::filesystem;
  const std::string path = (fs::path(dir) / name).string();
  const fs::path last = fs::path(dir) / "last.safetensors";
  fs::path tmp = last;
  tmp += ".tmp";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(dir, fmt::format("cannot create the folder: {}", ec.message()));
  save_checkpoint(path, ckpt);
  fs::copy_file(path, tmp, fs::copy_options::overwrite_existing, ec);
  if (!ec) fs::rename(tmp, last, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    fail(last.string(), fmt::format("cannot refresh it from {} ({}); {} itself was saved", path, ec.message(), path));
  }
  return path;
}

Checkpoint load_checkpoint(const std::string& path) {
  SafetensorsFile f = load_safetensors(path);
  auto fmt_it = f.metadata.find("format");
  if (fmt_it == f.metadata.end())
    fail(path, fmt::format("expected __metadata__ 'format': '{}', found none (a plain safetensors file?) "
                           "hint: read it with io::load_safetensors", kCheckpointFormat));
  if (fmt_it->second != kCheckpointFormat)
    fail(path, fmt::format("expected format '{}', found '{}'", kCheckpointFormat, fmt_it->second));
  Checkpoint c;
  json step = parse_field(path, "step", meta_field(path, f.metadata, "step"));
  if (!step.is_number_integer()) fail(path, fmt::format("step: expected an integer, found {}", step.dump()));
  c.step = step.get<int64_t>();
  json rng = parse_field(path, "rng_state", meta_field(path, f.metadata, "rng_state"));
  if (!rng.is_array()) fail(path, fmt::format("rng_state: expected an array of u64, found {}", rng.dump()));
  for (const json& w : rng) {
    if (!w.is_number_unsigned() && !(w.is_number_integer() && w.get<int64_t>() >= 0))
      fail(path, fmt::format("rng_state: expected unsigned 64-bit integers, found {}", w.dump()));
    c.rng_state.push_back(w.get<uint64_t>());
  }
  c.config = parse_field(path, "config", meta_field(path, f.metadata, "config"));
  c.extra = parse_field(path, "extra", meta_field(path, f.metadata, "extra"));
  for (auto& [name, t] : f.tensors) {
    if (name.rfind("model.", 0) == 0)
      c.model.emplace_back(name.substr(6), std::move(t));
    else if (name.rfind("optim.", 0) == 0)
      c.optimizer.emplace_back(name.substr(6), std::move(t));
    else
      fail(path, fmt::format("tensor '{}': expected a name starting with 'model.' or 'optim.'", name));
  }
  return c;
}

}  // namespace qs::io
