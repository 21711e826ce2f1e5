// `qiusuo experiment deepseek` at its CI size: every model it names is trained and measured,
// the KV-cache and parameter counts follow from the architectures, expert load is recorded
// for the MoE models only, and the page's sentences quote its table.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "qiusuo/apps/experiments.h"
#include "test_util.h"

using namespace qs;
using json = nlohmann::json;

namespace {

const json& row(const json& res, const std::string& name) {
  for (const json& r : res["rows"])
    if (r["name"] == name) return r;
  throw std::runtime_error("no row " + name);
}

std::string read(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace

TEST(ExperimentDeepseek, QuickRunMeasuresEveryModel) {
  apps::DeepseekExperimentOptions o;
  o.quick = true, o.quiet = true, o.threads = 2;
  o.out_dir = qs::testing::temp_dir("deepseek_quick");
  o.models = {"dense", "mla", "moe", "mla-moe", "mla-moe-nobias", "mla-moe-aux"};
  const json res = apps::run_deepseek_experiment(o);
  ASSERT_EQ(res["rows"].size(), o.models.size());
  for (size_t i = 0; i < o.models.size(); ++i) EXPECT_EQ(res["rows"][i]["name"], o.models[i]);

  // d_model 64, 2 layers, f32: MHA caches keys and values (2 x 64 numbers) per layer, MLA a
  // 32-wide latent and an 8-wide RoPE key.
  const int64_t mha_kv = 2 * 2 * 64 * 4, mla_kv = 2 * (32 + 8) * 4;
  for (const std::string& name : o.models) {
    SCOPED_TRACE(name);
    const json& r = row(res, name);
    EXPECT_EQ(r["kv_bytes_per_token"].get<int64_t>(), r["attention"] == "mla" ? mla_kv : mha_kv);
    const double ppl = r["test_perplexity"].get<double>();
    EXPECT_TRUE(std::isfinite(ppl) && ppl > 1 && ppl < 256) << ppl;  // better than a uniform guess over bytes
    ASSERT_EQ(r["runs"].size(), 1u);
    EXPECT_EQ(r["val_curve"].size(), 20u);  // a validation every step / 20 of the 20 steps
    if (r["ffn"] == "moe") {
      // 8 routed experts, top 2: the busiest expert gets at most 4x the mean.
      ASSERT_EQ(r["load_curve"].size(), 20u);
      for (const json& pt : r["load_curve"]) EXPECT_TRUE(pt[1] >= 1.0 && pt[1] <= 4.0) << pt.dump();
      ASSERT_TRUE(r["final_load_max_over_mean"].is_number());
      EXPECT_LT(r["active_parameters"].get<int64_t>(), r["parameters"].get<int64_t>());
      EXPECT_NE(r["runs"][0]["expert_load"].get<std::string>().find("layer 1 max/mean"), std::string::npos);
    } else {
      EXPECT_TRUE(r["load_curve"].empty());
      EXPECT_TRUE(r["final_load_max_over_mean"].is_null());
      EXPECT_EQ(r["active_parameters"], r["parameters"]);
    }
  }
  // Equal compute: a token of the MoE model uses about as many parameters as the dense
  // model's (the experts' width is rounded up to a multiple of 8).
  const double dense = row(res, "dense")["parameters"].get<double>(), moe = row(res, "moe")["active_parameters"].get<double>();
  EXPECT_NEAR(moe / dense, 1.0, 0.1);
  // Six models of 20 steps each start from the same seed: they differ, so the architecture
  // reached the trainer.
  EXPECT_NE(row(res, "mla-moe")["test_perplexity"], row(res, "mla-moe-nobias")["test_perplexity"]);
  EXPECT_NE(row(res, "mla-moe")["test_perplexity"], row(res, "mla-moe-aux")["test_perplexity"]);

  EXPECT_GT(res["seconds"].get<double>(), 0.0);  // the run's own time and machine, for qiusuo report
  EXPECT_EQ(res["machine"].get<std::string>().rfind("oneDNN ISA ", 0), 0u);
  const std::filesystem::path dir(o.out_dir);
  for (const char* f : {"results.json", "results.md", "learning_curves.svg", "expert_load.svg", "mla-moe/last.safetensors"})
    EXPECT_TRUE(std::filesystem::exists(dir / f)) << f;
  const std::string md = read(dir / "results.md");
  EXPECT_EQ(md.rfind("# DeepSeek blocks", 0), 0u);
  // The opening sentence quotes the table's perplexities and KV-cache sizes.
  EXPECT_NE(md.find(fmt::format("**mla-moe** reaches a test perplexity of {:.3f} against the dense model's {:.3f}",
                                row(res, "mla-moe")["test_perplexity"].get<double>(),
                                row(res, "dense")["test_perplexity"].get<double>())),
            std::string::npos)
      << md;
  EXPECT_NE(md.find(fmt::format("a KV cache of {} against {} bytes per token", mla_kv, mha_kv)), std::string::npos);
  EXPECT_NE(md.find("one seed, so its spread is unknown"), std::string::npos);

  // The same command again continues the experiment: every run is read back from its
  // checkpoint (nothing trained), measured again alike, and the recorded time counts the
  // training the first invocation did.
  const auto t0 = std::chrono::steady_clock::now();
  const json again = apps::run_deepseek_experiment(o);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const std::string& name : o.models)
    EXPECT_EQ(row(again, name)["test_perplexity"], row(res, name)["test_perplexity"]) << name;
  EXPECT_GT(again["seconds"].get<double>(), wall);

  // --replot writes the same page again from results.json alone.
  std::filesystem::remove(dir / "results.md");
  std::filesystem::remove(dir / "expert_load.svg");
  apps::write_deepseek_report(o.out_dir);
  EXPECT_EQ(read(dir / "results.md"), md);
  EXPECT_TRUE(std::filesystem::exists(dir / "expert_load.svg"));
}

TEST(ExperimentDeepseek, ReplotNamesTheFileItCannotUse) {
  const std::string dir = qs::testing::temp_dir("deepseek_replot_bad");
  std::ofstream(dir + "/results.json") << R"({"rows": []})";
  const std::string e = qs::testing::error_of([&] { apps::write_deepseek_report(dir); });
  EXPECT_NE(e.find(dir + "/results.json: not the results of `qiusuo experiment deepseek`"), std::string::npos) << e;
  const std::string missing = qs::testing::error_of([&] { apps::write_deepseek_report(dir + "/nothing"); });
  EXPECT_NE(missing.find("nothing/results.json"), std::string::npos) << missing;
}

TEST(ExperimentDeepseek, UnknownModelIsRefusedBeforeAnyWork) {
  apps::DeepseekExperimentOptions o;
  o.quick = true;
  o.out_dir = qs::testing::temp_dir("deepseek_bad") + "/out";
  o.models = {"dense", "mla+moe"};
  const std::string e = qs::testing::error_of([&] { apps::run_deepseek_experiment(o); });
  EXPECT_NE(e.find("unknown model 'mla+moe' (available: dense, mla, moe, mla-moe, mla-moe-nobias, mla-moe-aux)"),
            std::string::npos)
      << e;
  EXPECT_FALSE(std::filesystem::exists(o.out_dir));
}
