// What the viewer's server tests share: a tiny language model, an asset folder, a running server.
#pragma once
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "qiusuo/apps/viewer.h"
#include "qiusuo/nn/transformer.h"
#include "qiusuo/text/tokenizer.h"
#include "test_util.h"

namespace qs::apps {

inline std::unique_ptr<nn::TransformerLM> tiny_model() {
  nn::LMConfig c;
  c.vocab_size = 256, c.d_model = 32, c.n_layers = 2, c.n_heads = 4, c.max_seq_len = 32;
  c.pos.kind = nn::PositionEncoding::alibi;  // any length: lets the tests pass 256
  Generator gen(7);
  return std::make_unique<nn::TransformerLM>(c, nn::FfnFactory{}, gen);
}

inline LoadedLm tiny_lm() {
  LoadedLm lm;
  lm.model = tiny_model();
  lm.tokenizer = std::make_unique<text::ByteTokenizer>();
  lm.step = 42;
  return lm;
}

// An asset folder with a page, a subfolder, a hidden file and a symlink that points out.
inline std::string make_assets(const std::string& tag) {
  const std::string root = qs::testing::temp_dir(tag);
  std::filesystem::create_directories(root + "/www/sub");
  qs::testing::write_bytes(root + "/www/index.html", "<!doctype html><p>viewer page</p>");
  qs::testing::write_bytes(root + "/www/sub/a.js", "console.log(1)");
  qs::testing::write_bytes(root + "/www/.hidden", "HIDDEN-CONTENT");
  qs::testing::write_bytes(root + "/secret.txt", "SECRET-CONTENT");
  std::filesystem::create_symlink(root + "/secret.txt", root + "/www/link.txt");
  return root;
}

// tiny_lm() served with `o` on a free port, by a thread of its own until destroyed.
struct RunningServer {
  explicit RunningServer(const ViewerOptions& o) : server(tiny_lm(), o), port(server.bind()) {
    thread = std::thread([this] { server.run(); });
  }
  ~RunningServer() {
    server.stop();
    thread.join();
  }
  ViewerServer server;
  int port;
  std::thread thread;
};

}  // namespace qs::apps
