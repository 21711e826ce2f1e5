// The raster library: colour map anchors, text rasterisation, PNG round trips.
#include <gtest/gtest.h>

#include <cmath>

#include "qiusuo/viz/image.h"
#include "test_util.h"

namespace qs::viz {
namespace {

int dist(Rgb a, Rgb b) { return std::max({std::abs(a.r - b.r), std::abs(a.g - b.g), std::abs(a.b - b.b)}); }

TEST(Viridis, MatchesPublishedAnchors) {
  EXPECT_EQ(to_hex(viridis(0.0)), "#440154");
  EXPECT_EQ(to_hex(viridis(1.0)), "#fde725");
  // matplotlib's viridis at 0.25, 0.5 and 0.75 (its 256-entry table; not stops of ours).
  EXPECT_LE(dist(viridis(0.25), {0x3b, 0x52, 0x8b}), 3);
  EXPECT_LE(dist(viridis(0.5), {0x21, 0x91, 0x8c}), 3);
  EXPECT_LE(dist(viridis(0.75), {0x5e, 0xc9, 0x62}), 3);
  EXPECT_EQ(viridis(-3.0), viridis(0.0));
  EXPECT_EQ(viridis(7.0), viridis(1.0));
  EXPECT_EQ(viridis(std::nan("")), viridis(0.0));
}

TEST(Viridis, LightnessRisesMonotonically) {
  double prev = -1;
  for (int i = 0; i <= 200; ++i) {
    const Rgb c = viridis(i / 200.0);
    const double luma = 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b;
    EXPECT_GT(luma, prev - 0.6) << "at t = " << i / 200.0;  // integer rounding only
    prev = luma;
  }
  EXPECT_GT(prev, 200);
}

// The bounding box of the non-white pixels, or {-1,...} when there are none.
struct Box {
  int x0 = -1, y0 = -1, x1 = -1, y1 = -1;
};
Box ink(const Image& img) {
  Box b;
  for (int y = 0; y < img.height(); ++y)
    for (int x = 0; x < img.width(); ++x)
      if (!(img.pixel(x, y) == kWhite)) {
        if (b.x0 < 0 || x < b.x0) b.x0 = x;
        if (b.y0 < 0 || y < b.y0) b.y0 = y;
        b.x1 = std::max(b.x1, x), b.y1 = std::max(b.y1, y);
      }
  return b;
}

TEST(Font, DrawsTextInTheExpectedBox) {
  const Font& f = Font::get();
  const std::string s = "Hé\u2423\u23CE";  // Latin-1, and the label symbols of token_labels
  const double w = f.text_width(s, 20);
  EXPECT_GT(w, 30);
  EXPECT_LT(w, 90);
  Image img(200, 100);
  f.draw(img, 50, 40, s, 20, kBlack);
  const Box b = ink(img);
  ASSERT_GE(b.x0, 0) << "nothing drawn";
  EXPECT_GE(b.x0, 49);
  EXPECT_LE(b.x1, 50 + w + 2);
  EXPECT_GE(b.y0, 40 - 14);
  EXPECT_LE(b.y1, 40 + 14);
  EXPECT_GT(b.y1 - b.y0, 10);
  // Anti-aliased: some pixels are neither white nor black.
  int grey = 0;
  for (int y = b.y0; y <= b.y1; ++y)
    for (int x = b.x0; x <= b.x1; ++x) grey += img.pixel(x, y).r > 20 && img.pixel(x, y).r < 235;
  EXPECT_GT(grey, 5);
  // Right-aligned: the text ends at the anchor.
  Image right(200, 100);
  f.draw(right, 150, 40, s, 20, kBlack, Align::end);
  EXPECT_LE(ink(right).x1, 152);
  EXPECT_GE(ink(right).x0, 150 - w - 2);
}

TEST(Font, RotatedTextRunsUpward) {
  const Font& f = Font::get();
  const double w = f.text_width("queries", 16);
  Image img(100, 200);
  f.draw(img, 50, 20, "queries", 16, kBlack, Align::end, TextDir::up);  // ends at y = 20, hangs below
  const Box b = ink(img);
  ASSERT_GE(b.x0, 0);
  EXPECT_GT(b.y1 - b.y0, w - 4);  // tall, not wide
  EXPECT_LT(b.x1 - b.x0, 20);
  EXPECT_GE(b.y0, 18);
  EXPECT_LE(b.y1, 20 + w + 3);
  EXPECT_GE(b.x0, 50 - 12);
  EXPECT_LE(b.x1, 50 + 12);
}

TEST(Font, MissingGlyphsDrawABox) {
  const Font& f = Font::get();
  Image img(100, 60);
  f.draw(img, 10, 30, "\u4E2D", 24, kBlack);  // CJK: not in DejaVu Sans
  const Box b = ink(img);
  ASSERT_GE(b.x0, 0);
  EXPECT_GT(b.x1 - b.x0, 6);
  EXPECT_GT(b.y1 - b.y0, 8);
  EXPECT_EQ(img.pixel((b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2), kWhite);  // an outline, hollow
  EXPECT_GT(f.text_width("\u4E2D", 24), 5);
}

TEST(Font, MissingFileNamesThePackage) {
  EXPECT_NE(testing::error_of([] { Font f("/nonexistent/font.ttf"); }).find("cannot read"), std::string::npos);
}

TEST(Png, RoundTripKeepsSizeAndPixels) {
  Image img(37, 21, viridis(0.0));
  img.fill_rect(10, 5, 7, 3, viridis(0.5));
  img.set(36, 20, {1, 2, 3});
  const std::string dir = testing::temp_dir("viz_png");
  write_png(img, dir + "/a.png");
  const Image back = decode_png(testing::read_bytes(dir + "/a.png"));
  ASSERT_EQ(back.width(), 37);
  ASSERT_EQ(back.height(), 21);
  EXPECT_EQ(back.rgb(), img.rgb());
  EXPECT_EQ(back.pixel(12, 6), viridis(0.5));
  EXPECT_NE(testing::error_of([] { decode_png("not a png"); }).find("png"), std::string::npos);
  EXPECT_NE(testing::error_of([&] { write_png(img, "/nonexistent_dir/a.png"); }), "");
  EXPECT_NE(testing::error_of([] { Image bad(0, 3); }).find("size"), std::string::npos);
}

TEST(Text, Base64AndUtf8) {
  EXPECT_EQ(base64(""), "");
  EXPECT_EQ(base64("f"), "Zg==");
  EXPECT_EQ(base64("fo"), "Zm8=");
  EXPECT_EQ(base64("foobar"), "Zm9vYmFy");
  EXPECT_EQ(utf8_decode("a\xC3\xA9\xE4\xB8\xAD"), (std::vector<uint32_t>{'a', 0xE9, 0x4E2D}));
  EXPECT_EQ(utf8_decode("\xC3"), (std::vector<uint32_t>{0xFFFD}));
  EXPECT_EQ(utf8_decode("\xFF" "a"), (std::vector<uint32_t>{0xFFFD, 'a'}));
}

}  // namespace
}  // namespace qs::viz
