// `qiusuo attention` end to end on a tiny LM trained here: the files it writes decode, the
// dynamic pages hold one frame per checkpoint / generated token, and bad input gets a clear
// error. Also the snapshot-level pieces: encoder-decoder snapshots, the generation prefix
// property, the log-u8 quantisation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "qiusuo/apps/attention_report.h"
#include "qiusuo/apps/lm.h"
#include "qiusuo/viz/image.h"
#include "test_util.h"

namespace qs::apps {
namespace {

namespace fs = std::filesystem;

struct CliRun {
  int rc;
  std::string out;
};

CliRun cli(const std::string& args, const std::string& env = "") {
  const std::string cmd = env + " " + std::string(QS_CLI_PATH) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// Two checkpoints (steps 2 and 4) of a 2-layer, 2-head byte-level LM with 48-token windows.
const std::string& checkpoints_dir() {
  static const std::string dir = [] {
    const std::string d = testing::temp_dir("attention_cli");
    std::string text;
    for (int i = 0; i < 300; ++i)
      text += "In the beginning God created the heaven and the earth, verse " + std::to_string(i) + ".\n";
    testing::write_bytes(d + "/corpus.txt", text);
    TrainLmOptions o;
    o.model.n_layers = 2, o.model.d_model = 32, o.model.n_heads = 2;
    o.corpus = d + "/corpus.txt";
    o.seq = 48, o.batch = 2, o.steps = 4, o.save_every = 2, o.eval_windows = 1, o.quiet = true;
    o.out_dir = d + "/ck";
    train_lm(o);
    return d + "/ck";
  }();
  return dir;
}

nlohmann::json page_data(const std::string& html) {
  const std::string open = "<script type=\"application/json\" id=\"data\">";
  const size_t a = html.find(open), b = html.find("</script>", a);
  EXPECT_NE(a, std::string::npos);
  return nlohmann::json::parse(html.substr(a + open.size(), b - a - open.size()));
}

TEST(AttentionCli, WritesFiguresThatDecode) {
  const std::string out = testing::temp_dir("attention_figs") + "/out";
  const CliRun r = cli("attention " + checkpoints_dir() + "/step-4.safetensors --text \"In the beginning, caf\xC3\xA9\" --out " + out);
  ASSERT_EQ(r.rc, 0) << r.out;
  for (const char* f : {"layer0_head0.png", "layer0_head1.svg", "layer1_grid.png", "layer1_mean.png", "layer1_mean.svg",
                        "rollout.png", "rollout.svg", "index.html", "attention.json"})
    EXPECT_NE(r.out.find(f), std::string::npos) << f << " not reported in\n" << r.out;
  const nlohmann::json j = nlohmann::json::parse(testing::read_bytes(out + "/attention.json"));
  EXPECT_EQ(j["tokens"].size(), 23u);  // 'é' is two byte tokens
  EXPECT_EQ(j["maps"].size(), 2u);
  EXPECT_EQ(j["maps"][1]["shape"], (std::vector<int64_t>{2, 23, 23}));
  const std::string index = testing::read_bytes(out + "/index.html");
  for (const auto& f : j["files"]) {
    const std::string name = f.get<std::string>();
    ASSERT_TRUE(fs::exists(out + "/" + name)) << name;
    if (name.ends_with(".png")) {
      const viz::Image img = viz::decode_png(testing::read_bytes(out + "/" + name));
      EXPECT_GT(img.width(), 23 * 8) << name;
      EXPECT_LE(img.width(), 4096) << name;
      EXPECT_NE(index.find("src=\"" + name + "\""), std::string::npos) << name << " not shown in index.html";
    }
    if (name.ends_with(".svg")) EXPECT_EQ(testing::read_bytes(out + "/" + name).rfind("<svg", 0), 0u) << name;
  }
  EXPECT_NE(index.find("layer1_head1.png"), std::string::npos);
}

TEST(AttentionCli, SelectsLayerHeadFormatAndLogScale) {
  const std::string out = testing::temp_dir("attention_sel") + "/out";
  const CliRun r = cli("attention " + checkpoints_dir() + "/last.safetensors --text \"light\" --layer 1 --head 1 --log --format svg --out " + out);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(fs::exists(out + "/layer1_head1.svg"));
  EXPECT_FALSE(fs::exists(out + "/layer1_head0.svg"));
  EXPECT_FALSE(fs::exists(out + "/layer1_head1.png"));
  EXPECT_FALSE(fs::exists(out + "/layer0_mean.svg"));
  EXPECT_TRUE(fs::exists(out + "/layer1_grid.svg"));
  EXPECT_NE(testing::read_bytes(out + "/layer1_head1.svg").find("\u22641e-4"), std::string::npos);  // log ticks
}

TEST(AttentionCli, CheckpointSliderHasOneFramePerCheckpoint) {
  const std::string out = testing::temp_dir("attention_ck") + "/out", ck = checkpoints_dir();
  const CliRun r = cli("attention --checkpoints " + ck + "/step-2.safetensors " + ck + "/step-4.safetensors " + ck +
                    "/last.safetensors --text \"And God said\" --out " + out);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("(3 frames)"), std::string::npos) << r.out;
  const std::string html = testing::read_bytes(out + "/checkpoints.html");
  EXPECT_EQ(html.find("http"), std::string::npos);  // nothing fetched
  const nlohmann::json d = page_data(html);
  ASSERT_EQ(d["frames"].size(), 3u);
  EXPECT_EQ(d["frames"][0]["label"], "step 2 (step-2.safetensors)");
  EXPECT_EQ(d["frames"][1]["label"], "step 4 (step-4.safetensors)");
  EXPECT_EQ(d["tokens"].size(), 12u);
  for (const auto& f : d["frames"]) {
    ASSERT_EQ(f["data"].size(), 2u);  // one per layer
    EXPECT_EQ(f["data"][0].get<std::string>().size(), (2 * 12 * 12 + 2) / 3 * 4);  // base64 of H*T*T bytes
  }
  EXPECT_NE(d["frames"][0]["data"][0], d["frames"][1]["data"][0]);  // the weights changed in training
}

TEST(AttentionCli, GenerationHasOneFramePerToken) {
  const std::string out = testing::temp_dir("attention_gen") + "/out";
  const CliRun r = cli("attention " + checkpoints_dir() + "/last.safetensors --generate 7 --prompt \"In the\" --out " + out);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("(7 frames)"), std::string::npos) << r.out;
  const nlohmann::json d = page_data(testing::read_bytes(out + "/generation.html"));
  ASSERT_EQ(d["frames"].size(), 7u);
  EXPECT_EQ(d["prompt_tokens"], 6);
  EXPECT_EQ(d["tokens"].size(), 6u + 6u);  // the last generated token is never attended from
  for (size_t k = 0; k < 7; ++k) EXPECT_EQ(d["frames"][k]["n"], 6 + int(k));
}

TEST(AttentionCli, BadInputGetsClearErrors) {
  const std::string ck = checkpoints_dir() + "/last.safetensors", out = testing::temp_dir("attention_bad");
  CliRun r = cli("attention /nonexistent.safetensors --text x --out " + out + "/a");
  EXPECT_EQ(r.rc, 3) << r.out;
  EXPECT_NE(r.out.find("/nonexistent.safetensors"), std::string::npos) << r.out;
  r = cli("attention " + ck + " --text \"\" --out " + out + "/a");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("empty"), std::string::npos) << r.out;
  r = cli("attention " + ck + " --text \"" + std::string(60, 'x') + "\" --out " + out + "/a");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("60 tokens but this model supports at most 48"), std::string::npos) << r.out;
  testing::write_bytes(out + "/file", "x");
  r = cli("attention " + ck + " --text abc --out " + out + "/file/sub");
  EXPECT_EQ(r.rc, 3) << r.out;
  EXPECT_NE(r.out.find("cannot create the output folder"), std::string::npos) << r.out;
  r = cli("attention " + ck + " --text abc --layer 5 --out " + out + "/a");
  EXPECT_NE(r.out.find("--layer 5 does not exist; the model has layers 0, 1"), std::string::npos) << r.out;
  r = cli("attention " + ck + " --text abc --format jpg --out " + out + "/a");
  EXPECT_EQ(r.rc, 1) << r.out;
  r = cli("attention " + ck + " --text abc --out " + out + "/a", "QS_FONT=/nonexistent/font.ttf");
  EXPECT_EQ(r.rc, 3) << r.out;
  EXPECT_NE(r.out.find("install the Debian package fonts-dejavu-core"), std::string::npos) << r.out;
  r = cli("attention " + ck + " --generate 40 --prompt \"In the beginning\" --out " + out + "/a");
  EXPECT_NE(r.out.find("exceeds the 48 tokens"), std::string::npos) << r.out;
}

// The pages' script runs in a real browser: after load it has filled the frame label and sized
// the canvas. Skipped where Debian's chromium is not installed.
TEST(AttentionCli, PagesRunInHeadlessChromium) {
  if (!fs::exists("/usr/bin/chromium")) GTEST_SKIP() << "/usr/bin/chromium is not installed";
  const std::string out = testing::temp_dir("attention_chromium");
  ASSERT_EQ(cli("attention " + checkpoints_dir() + "/last.safetensors --generate 3 --prompt \"In\" --out " + out).rc, 0);
  const std::string cmd = "timeout 120 /usr/bin/chromium --headless --no-sandbox --disable-gpu --user-data-dir=" + out +
                          "/profile --dump-dom file://" + out + "/generation.html 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  std::string dom;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) dom.append(buf, n);
  pclose(p);
  EXPECT_NE(dom.find("<span id=\"framelabel\">step 1: predicts"), std::string::npos) << dom.substr(0, 2000);
  EXPECT_NE(dom.find("class=\"tok next\""), std::string::npos);
  EXPECT_EQ(dom.find("<canvas id=\"c\" width=\"10\""), std::string::npos);  // draw() resized it
}

TEST(AttentionViews, GenerationFramesArePrefixesOfTheFullCapture) {
  LoadedLm lm = load_lm(checkpoints_dir() + "/last.safetensors");
  GenerateOptions g;
  g.max_tokens = 5, g.temperature = 0;
  const GenerationCapture cap = capture_generation(lm, "In the", g);
  ASSERT_EQ(cap.generated.size(), 5u);
  // Frame 2's matrix (the first 6 + 2 tokens) is what the model computes on that prefix alone.
  std::vector<int32_t> prefix(cap.snapshot.ids.begin(), cap.snapshot.ids.begin() + 8);
  const AttentionSnapshot alone = capture_attention_ids(*lm.model, *lm.tokenizer, prefix);
  const viz::Matrix full = viz::head_matrix(cap.snapshot.maps[1].weights, 1), part = viz::head_matrix(alone.maps[1].weights, 1);
  for (int64_t i = 0; i < 8; ++i)
    for (int64_t j = 0; j < 8; ++j) EXPECT_NEAR(full.at(i, j), part.at(i, j), 1e-5) << i << "," << j;
}

TEST(AttentionViews, EncoderDecoderSnapshotsDraw) {
  AttentionSnapshot s;
  s.tokens = {"<s>", "le", "chat"};
  s.ids = {1, 2, 3};
  s.source_tokens = {"the", "cat", "sat", "</s>"};
  s.source_ids = {4, 5, 6, 7};
  auto uniform = [](int64_t h, int64_t q, int64_t k) { return full({h, q, k}, 1.0 / double(k)); };
  s.maps = {{"encoder.blocks.0.self_attn", "self", 0, uniform(2, 4, 4)},
            {"encoder.blocks.1.self_attn", "self", 1, uniform(2, 4, 4)},
            {"decoder.blocks.0.self_attn", "causal", 0, uniform(2, 3, 3)},
            {"decoder.blocks.0.cross_attn", "cross", 0, uniform(2, 3, 4)}};
  const std::string out = testing::temp_dir("attention_encdec");
  AttentionFigureOptions o;
  o.title = "mt";
  const std::vector<std::string> files = write_attention_figures(s, out, o);
  for (const char* f : {"encoder_layer1_head0.png", "decoder_layer0_mean.svg", "cross_layer0_head1.svg",
                        "cross_layer0_grid.png", "encoder_rollout.png", "decoder_rollout.svg"})
    EXPECT_NE(std::find(files.begin(), files.end(), f), files.end()) << f;
  const std::string cross = testing::read_bytes(out + "/cross_layer0_head1.svg");
  EXPECT_NE(cross.find(">&lt;/s&gt;<"), std::string::npos);  // source labels on the key axis
  EXPECT_NE(cross.find("key (source)"), std::string::npos);
  const nlohmann::json d = page_data(checkpoints_view_html({s, s}, {"a", "b"}, "mt"));
  EXPECT_EQ(d["maps"][3]["col_labels"], "source");
  EXPECT_EQ(d["maps"][0]["row_labels"], "source");
  s.maps[3].weights = uniform(2, 3, 5);  // a cross map whose keys do not match the source
  EXPECT_NE(testing::error_of([&] { write_attention_figures(s, out, o); }).find("3x5 but its tokens are 3"),
            std::string::npos);
}

TEST(AttentionViews, LogBytesKeepTwoPercent) {
  EXPECT_EQ(quantize_log_u8(0.0), 0);
  EXPECT_EQ(quantize_log_u8(5e-5), 0);
  EXPECT_EQ(quantize_log_u8(1.0), 255);
  EXPECT_EQ(quantize_log_u8(1e-4), 1);
  for (double w = 1e-4; w <= 1.0; w *= 1.07)
    EXPECT_LE(std::fabs(dequantize_log_u8(quantize_log_u8(w)) / w - 1), 0.0185) << w;
}

}  // namespace
}  // namespace qs::apps
