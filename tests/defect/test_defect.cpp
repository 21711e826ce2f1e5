// Defect-detection data: Pascal VOC files (well-formed, malformed and hostile), images
// (JPEG/PNG/BMP, truncated, lying headers), NEU-DET's two folder layouts built here, the
// synthetic sequences read back through the same loaders.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "qiusuo/defect/dataset.h"
#include "qiusuo/defect/synth.h"
#include "qiusuo/defect/voc.h"
#include "qiusuo/viz/image.h"
#include "test_util.h"

using namespace qs;
using namespace qs::defect;
using qs::testing::error_of;

namespace {

namespace fs = std::filesystem;

const char* kVoc = R"(<annotation>
  <folder>IMAGES</folder>
  <filename>crazing_1.jpg</filename>
  <source><database>NEU-DET</database></source>
  <size><width>200</width><height>200</height><depth>1</depth></size>
  <segmented>0</segmented>
  <object>
    <name>crazing</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>
    <bndbox><xmin>2</xmin><ymin>2</ymin><xmax>193</xmax><ymax>194</ymax></bndbox>
  </object>
  <object>
    <name>scratches</name><difficult>1</difficult>
    <bndbox><xmin> 10 </xmin><ymin>20.5</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>
  </object>
</annotation>
)";

std::string with(const std::string& from, const std::string& to) {
  std::string s = kVoc;
  const size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

// A grey image: value (x * 7 + y * 3) % 256.
viz::Image ramp(int w, int h) {
  viz::Image img(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const uint8_t v = uint8_t((x * 7 + y * 3) % 256);
      img.set(x, y, {v, v, v});
    }
  return img;
}

VocAnnotation one_box(const std::string& file, const std::string& cls, int w = 40, int h = 30) {
  VocAnnotation a;
  a.filename = file;
  a.width = w;
  a.height = h;
  a.depth = 1;
  VocObject o;
  o.name = cls;
  o.xmin = 3, o.ymin = 4, o.xmax = 20, o.ymax = 25;
  a.objects.push_back(o);
  return a;
}

}  // namespace

TEST(Voc, ParsesTheDevkitLayout) {
  const VocAnnotation a = parse_voc(kVoc, "a.xml");
  EXPECT_EQ(a.folder, "IMAGES");
  EXPECT_EQ(a.filename, "crazing_1.jpg");
  EXPECT_EQ(a.width, 200);
  EXPECT_EQ(a.height, 200);
  EXPECT_EQ(a.depth, 1);
  ASSERT_EQ(a.objects.size(), 2u);
  EXPECT_EQ(a.objects[0].name, "crazing");
  EXPECT_FALSE(a.objects[0].difficult);
  EXPECT_EQ(a.objects[0].xmax, 193);
  EXPECT_EQ(a.objects[1].name, "scratches");
  EXPECT_TRUE(a.objects[1].difficult);
  EXPECT_EQ(a.objects[1].xmin, 10);  // spaces around a number are trimmed
  EXPECT_EQ(a.objects[1].ymin, 20.5);
  EXPECT_EQ(a.clipped, 0);
  // 1-based inclusive pixels -> continuous corners, and back.
  const auto c = voc_box_continuous(a.objects[0]);
  EXPECT_EQ(c, (std::array<double, 4>{1, 1, 193, 194}));
  VocObject o;
  set_voc_box(o, c);
  EXPECT_EQ(o.xmin, 2);
  EXPECT_EQ(o.ymax, 194);
}

TEST(Voc, WritesWhatItReads) {
  const std::string dir = qs::testing::temp_dir("voc_rt");
  VocAnnotation a = parse_voc(kVoc, "a.xml");
  a.objects[1].name = "a<b&c";  // escaped on the way out
  write_voc(a, dir + "/a.xml");
  const VocAnnotation b = read_voc(dir + "/a.xml");
  EXPECT_EQ(b.filename, a.filename);
  EXPECT_EQ(b.width, a.width);
  ASSERT_EQ(b.objects.size(), 2u);
  EXPECT_EQ(b.objects[1].name, "a<b&c");
  EXPECT_EQ(b.objects[1].ymin, 20.5);
  EXPECT_TRUE(b.objects[1].difficult);
  EXPECT_EQ(b.objects[0].xmax, 193);
}

TEST(Voc, ClipsBoxesReachingOutAndRefusesBoxesOutside) {
  // Counted from 0 and one past the right edge: clipped into 1..200.
  const VocAnnotation a = parse_voc(with("<xmin>2</xmin><ymin>2</ymin><xmax>193</xmax>", "<xmin>0</xmin><ymin>2</ymin><xmax>201</xmax>"), "c.xml");
  EXPECT_EQ(a.clipped, 1);
  EXPECT_EQ(a.objects[0].xmin, 1);
  EXPECT_EQ(a.objects[0].xmax, 200);
  const std::string e = error_of([] {
    parse_voc(with("<xmin>2</xmin><ymin>2</ymin><xmax>193</xmax>", "<xmin>250</xmin><ymin>2</ymin><xmax>260</xmax>"), "o.xml");
  });
  EXPECT_NE(e.find("o.xml:"), std::string::npos) << e;
  EXPECT_NE(e.find("outside the 200 x 200 image"), std::string::npos) << e;
}

TEST(Voc, MalformedFilesGetClearErrors) {
  struct Case {
    std::string xml, expect;
  };
  const std::vector<Case> cases = {
      {"<annotation><size>", "not well-formed XML"},
      {"", "No document element"},
      {"<annotations/>", "not <annotation>"},
      {with("<size><width>200</width><height>200</height><depth>1</depth></size>", ""), "has no <size>"},
      {with("<width>200</width>", "<width>2e9</width>"), "1..16384 expected"},
      {with("<width>200</width>", "<width>-3</width>"), "1..16384 expected"},
      {with("<height>200</height>", "<height>12.5</height>"), "1..16384 expected"},
      {with("<xmin>2</xmin>", "<xmin>nan</xmin>"), "not a number"},
      {with("<xmin>2</xmin>", "<xmin>1e999</xmin>"), "not a number"},
      {with("<xmin>2</xmin>", "<xmin>two</xmin>"), "not a number"},
      {with("<xmin>2</xmin>", ""), "has no <xmin>"},
      {with("<xmin>2</xmin>", "<xmin>199</xmin>"), "xmin > xmax"},
      {with("<difficult>0</difficult>", "<difficult>yes</difficult>"), "not 0 or 1"},
      {with("<name>crazing</name>", "<name> </name>"), "empty <name>"},
      {with("<depth>1</depth>", "<depth>4</depth>"), "1 or 3 expected"},
  };
  for (const Case& c : cases) {
    const std::string e = error_of([&] { parse_voc(c.xml, "bad.xml"); });
    EXPECT_NE(e.find(c.expect), std::string::npos) << "for\n" << c.xml << "\ngot: " << e;
    EXPECT_NE(e.find("bad.xml"), std::string::npos) << e;
  }
}

// An external entity (XXE) and an entity bomb ("billion laughs") are refused before
// parsing, with the line of the declaration; nothing is fetched or expanded.
TEST(Voc, HostileXmlIsRefused) {
  const std::string xxe = "<?xml version=\"1.0\"?>\n<!DOCTYPE annotation [\n<!ENTITY xxe SYSTEM \"file:///etc/passwd\">\n]>\n"
                          "<annotation><filename>&xxe;</filename></annotation>";
  std::string bomb = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n";
  for (int i = 1; i < 10; ++i) {
    bomb += "<!ENTITY lol" + std::to_string(i) + " \"";
    for (int k = 0; k < 10; ++k) bomb += "&lol" + (i == 1 ? std::string() : std::to_string(i - 1)) + ";";
    bomb += "\">\n";
  }
  bomb += "]>\n<annotation><filename>&lol9;</filename></annotation>";
  for (const std::string& x : {xxe, bomb}) {
    const std::string e = error_of([&] { parse_voc(x, "evil.xml"); });
    EXPECT_NE(e.find("evil.xml:2: <!DOCTYPE declarations are refused"), std::string::npos) << e;
  }
  // A lone undeclared entity reference is malformed XML, not a lookup.
  EXPECT_NE(error_of([] { parse_voc("<annotation><filename>&xxe;</filename></annotation>", "u.xml"); }), "");
  // Files above the bound are not read whole.
  const std::string dir = qs::testing::temp_dir("voc_big");
  qs::testing::write_bytes(dir + "/big.xml", std::string(5 << 20, ' '));
  EXPECT_NE(error_of([&] { read_voc(dir + "/big.xml"); }).find("more than"), std::string::npos);
}

TEST(Images, DecodeJpegPngBmpAndRefuseBadOnes) {
  const viz::Image img = ramp(37, 21);
  const viz::Image png = viz::decode_image(viz::encode_png(img));
  EXPECT_EQ(png.rgb(), img.rgb());
  const viz::Image jpg = viz::decode_image(viz::encode_jpeg(img, 95));
  ASSERT_EQ(jpg.width(), 37);
  ASSERT_EQ(jpg.height(), 21);
  double err = 0;
  for (size_t i = 0; i < img.rgb().size(); ++i) err = std::max(err, std::abs(double(jpg.rgb()[i]) - img.rgb()[i]));
  EXPECT_LT(err, 40);  // lossy, but the same picture
  // A 2 x 1 24-bit BMP, bottom-up rows padded to 4 bytes.
  std::string bmp = "BM";
  auto u32 = [&](uint32_t v) { for (int i = 0; i < 4; ++i) bmp.push_back(char(v >> (8 * i))); };
  auto u16 = [&](uint16_t v) { for (int i = 0; i < 2; ++i) bmp.push_back(char(v >> (8 * i))); };
  u32(62), u32(0), u32(54), u32(40), u32(2), u32(1), u16(1), u16(24), u32(0), u32(8), u32(2835), u32(2835), u32(0), u32(0);
  bmp += std::string("\x00\x00\xff\x00\xff\x00\x00\x00", 8);  // BGR: red, green; 2 bytes of padding
  const viz::Image b = viz::decode_image(bmp, "t.bmp");
  EXPECT_EQ(b.pixel(0, 0), (viz::Rgb{255, 0, 0}));
  EXPECT_EQ(b.pixel(1, 0), (viz::Rgb{0, 255, 0}));
  // Truncated: an error, not a crash or a half image.
  const std::string full = viz::encode_jpeg(img);
  EXPECT_NE(error_of([&] { viz::decode_image(full.substr(0, 20), "cut.jpg"); }).find("cut.jpg"), std::string::npos);
  EXPECT_NE(error_of([&] { viz::decode_image("hello", "t.txt"); }).find("not a PNG, JPEG or BMP"), std::string::npos);
  // A PNG header that claims 100000 x 100000 pixels: refused from the header, nothing allocated.
  std::string huge = viz::encode_png(ramp(4, 4));
  for (int at : {16, 20}) {
    huge[size_t(at)] = 0, huge[size_t(at) + 1] = 1, huge[size_t(at) + 2] = char(0x86), huge[size_t(at) + 3] = char(0xa0);
  }
  const std::string e = error_of([&] { viz::decode_image(huge, "huge.png"); });
  EXPECT_NE(e.find("huge.png"), std::string::npos) << e;
}

// NEU-DET as released (ANNOTATIONS/ + IMAGES/) and as copied into splits with a folder per
// class, with the quirks of the real files: an image named without its extension.
TEST(NeuDet, ReadsBothLayouts) {
  const std::string root = qs::testing::temp_dir("neu_a");
  fs::create_directories(root + "/ANNOTATIONS");
  fs::create_directories(root + "/IMAGES");
  viz::write_jpeg(ramp(40, 30), root + "/IMAGES/crazing_1.jpg");
  viz::write_jpeg(ramp(40, 30), root + "/IMAGES/scratches_7.jpg");
  write_voc(one_box("crazing_1.jpg", "crazing"), root + "/ANNOTATIONS/crazing_1.xml");
  write_voc(one_box("scratches_7", "scratches"), root + "/ANNOTATIONS/scratches_7.xml");  // no extension
  const auto a = scan_neu_det(root);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(fs::path(a[0].image).filename(), "crazing_1.jpg");
  EXPECT_EQ(fs::path(a[1].image).filename(), "scratches_7.jpg");
  const Tensor x = load_gray(a[0]);
  EXPECT_EQ(x.shape(), (Shape{1, 30, 40}));
  EXPECT_NEAR(x.to_vector()[1 * 40 + 2], (2 * 7 + 1 * 3) / 255.0, 6 / 255.0);  // JPEG's error, small on a ramp

  const std::string root2 = qs::testing::temp_dir("neu_b");
  for (const char* split : {"train", "validation"}) {
    const std::string s = root2 + "/" + split;
    fs::create_directories(s + "/annotations");
    fs::create_directories(s + "/images/patches");
    viz::write_jpeg(ramp(40, 30), s + "/images/patches/patches_" + split + ".jpg");
    write_voc(one_box(std::string("patches_") + split + ".jpg", "patches"), s + "/annotations/patches_" + split + ".xml");
  }
  EXPECT_EQ(scan_neu_det(root2).size(), 2u);
  const auto v = scan_neu_det(root2, "validation");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_NE(v[0].image.find("images/patches/patches_validation.jpg"), std::string::npos);
  const Targets t = targets_of(v[0].voc);
  EXPECT_EQ(t.boxes.to_vector(), (std::vector<double>{2, 3, 20, 25}));
  EXPECT_EQ(t.labels.to_vector(), (std::vector<double>{2}));
}

TEST(NeuDet, BadTreesGetClearErrors) {
  const std::string root = qs::testing::temp_dir("neu_bad");
  EXPECT_NE(error_of([&] { scan_neu_det(root); }).find("holds neither ANNOTATIONS/"), std::string::npos);
  fs::create_directories(root + "/ANNOTATIONS");
  fs::create_directories(root + "/IMAGES");
  write_voc(one_box("gone.jpg", "crazing"), root + "/ANNOTATIONS/gone.xml");
  EXPECT_NE(error_of([&] { scan_neu_det(root); }).find("gone.xml: its image 'gone.jpg'"), std::string::npos);
  viz::write_jpeg(ramp(40, 30), root + "/IMAGES/gone.jpg");
  write_voc(one_box("other.jpg", "rust"), root + "/ANNOTATIONS/other.xml");
  viz::write_jpeg(ramp(40, 30), root + "/IMAGES/other.jpg");
  const std::string e = error_of([&] { scan_neu_det(root); });
  EXPECT_NE(e.find("other.xml: object class 'rust' is not one of NEU-DET's six"), std::string::npos) << e;
  // An image whose size is not its annotation's, and a truncated one.
  fs::remove(root + "/ANNOTATIONS/other.xml");
  write_voc(one_box("gone.jpg", "crazing", 41, 30), root + "/ANNOTATIONS/gone.xml");
  const auto imgs = scan_neu_det(root);
  EXPECT_NE(error_of([&] { load_gray(imgs[0]); }).find("the image is 40 x 30 but its annotation"), std::string::npos);
  const std::string bytes = qs::testing::read_bytes(root + "/IMAGES/gone.jpg");
  qs::testing::write_bytes(root + "/IMAGES/gone.jpg", bytes.substr(0, bytes.size() / 3));
  EXPECT_NE(error_of([&] { load_gray(root + "/IMAGES/gone.jpg"); }), "");
}

// The generator's files go through the same loaders; the same seed, the same bytes.
TEST(DefectSynth, SequencesReadBackAndRepeat) {
  const std::string dir = qs::testing::temp_dir("dsynth");
  SynthOptions o;
  o.sequences = 3;
  o.frames = 5;
  o.size = 64;
  o.speed = 6;
  o.seed = 4;
  const SynthSummary s = write_synthetic_sequences(dir + "/a", o);
  EXPECT_EQ(s.sequences, 3);
  EXPECT_EQ(s.frames, 15);
  const auto seqs = scan_sequences(dir + "/a");
  ASSERT_EQ(seqs.size(), 3u);
  int boxes = 0;
  std::vector<int> per_class(6, 0);
  for (const auto& q : seqs) {
    ASSERT_EQ(q.frames.size(), 5u);
    for (const auto& f : q.frames) {
      const Tensor x = load_gray(f);
      EXPECT_EQ(x.shape(), (Shape{1, 64, 64}));
      for (const auto& ob : f.voc.objects) {
        ++boxes;
        ++per_class[size_t(class_index(ob.name))];
        const auto c = voc_box_continuous(ob);
        EXPECT_GE(c[0], 0);
        EXPECT_LE(c[2], 64);
        EXPECT_GE(c[2] - c[0], 4);
      }
    }
  }
  EXPECT_EQ(boxes, s.boxes);
  EXPECT_EQ(per_class, s.per_class);
  EXPECT_GT(boxes, 0);
  write_synthetic_sequences(dir + "/b", o);
  for (const char* f : {"seq_0001/frame_003.png", "seq_0001/frame_003.xml"})
    EXPECT_EQ(qs::testing::read_bytes(dir + "/a/" + f), qs::testing::read_bytes(dir + "/b/" + f)) << f;
  o.format = "jpg";
  o.sequences = 1;
  write_synthetic_sequences(dir + "/c", o);
  EXPECT_EQ(scan_sequences(dir + "/c")[0].frames[0].image, dir + "/c/seq_0000/frame_000.jpg");
  o.size = 8;
  EXPECT_NE(error_of([&] { write_synthetic_sequences(dir + "/d", o); }).find("size must be 16..1024"), std::string::npos);
}

// The catalogue of malformed files (tests/malformed/README.md).
TEST(Images, MalformedCatalogue) {
  const std::string path = std::string(QS_SOURCE_DIR) + "/tests/malformed/jpeg_huffman_overflow_stb.jpg";
  const std::string e = error_of([&] { viz::read_image(path); });
  EXPECT_NE(e.find("cannot decode the JPEG"), std::string::npos) << e;
  const std::string b = error_of([] {
    viz::read_image(std::string(QS_SOURCE_DIR) + "/tests/malformed/bmp_70_bytes_claim_179m_pixels.bmp");
  });
  EXPECT_NE(b.find("at most 67108864 pixels"), std::string::npos) << b;
  // 32 bytes: a BITMAPINFOHEADER (40 bytes) cut short after its height, 11325 x 188 pixels.
  const std::string c = error_of([] {
    viz::read_image(std::string(QS_SOURCE_DIR) + "/tests/malformed/bmp_header_cut_short_32_bytes.bmp");
  });
  EXPECT_NE(c.find("the BMP's header is cut short (32 bytes in the file)"), std::string::npos) << c;
}
