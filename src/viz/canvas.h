// One drawing interface, two backends: a figure laid out once is drawn into a PNG image
// and into SVG text, so the two files show the same figure (positions in pixels).
#pragma once
#include <string>

#include "qiusuo/viz/image.h"

namespace qs::viz {

class Canvas {
 public:
  virtual ~Canvas() = default;
  virtual void rect(double x, double y, double w, double h, Rgb c) = 0;
  // An unfilled 1 px frame.
  virtual void frame(double x, double y, double w, double h, Rgb c) = 0;
  virtual void text(double x, double y, const std::string& s, double px, Rgb c, Align a = Align::start,
                    TextDir d = TextDir::horizontal) = 0;
  // `cells` (one pixel per matrix cell) stretched over the w x h rectangle at (x, y).
  virtual void cells(double x, double y, double w, double h, const Image& cells) = 0;
  // The viridis ramp, bottom (0) to top (1).
  virtual void ramp(double x, double y, double w, double h) = 0;
};

class PngCanvas : public Canvas {
 public:
  PngCanvas(int w, int h) : img_(w, h) {}
  void rect(double x, double y, double w, double h, Rgb c) override;
  void frame(double x, double y, double w, double h, Rgb c) override;
  void text(double x, double y, const std::string& s, double px, Rgb c, Align a, TextDir d) override;
  void cells(double x, double y, double w, double h, const Image& cells) override;
  void ramp(double x, double y, double w, double h) override;
  Image& image() { return img_; }

 private:
  Image img_;
};

// Cells become one <rect> each up to rect_limit cells per side (runs of the background
// colour skipped); larger matrices an embedded PNG <image> (data URI, pixelated).
class SvgCanvas : public Canvas {
 public:
  SvgCanvas(int w, int h, int rect_limit = 128);
  void rect(double x, double y, double w, double h, Rgb c) override;
  void frame(double x, double y, double w, double h, Rgb c) override;
  void text(double x, double y, const std::string& s, double px, Rgb c, Align a, TextDir d) override;
  void cells(double x, double y, double w, double h, const Image& cells) override;
  void ramp(double x, double y, double w, double h) override;
  std::string finish();  // the whole document

 private:
  std::string body_, defs_;
  int w_, h_, rect_limit_;
};

}  // namespace qs::viz
