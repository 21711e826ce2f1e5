// Synthetic inspection sequences of a moving steel strip, for the defect detectors' demo
// and tests where NEU-DET cannot be had (docs/defect.md says what they are and are not).
//
// A strip of rolled steel (a grey level, streaks along the rolling direction, mottling and
// a fixed grain) carries defects of NEU-DET's six classes drawn procedurally:
//   crazing          a network of short dark cracks
//   inclusion        dark streaks stretched along the rolling direction
//   patches          a smooth irregular dark blotch
//   pitted_surface   a cluster of small dark pits
//   rolled-in_scale  darker flakes stretched along the rolling direction
//   scratches        one or two long thin lines, mostly along the rolling direction, bright or dark
// A camera sees a size x size window of the strip moving `speed` pixels per frame, with
// jitter (camera shake), illumination that drifts across the frame and over time, motion
// blur in some frames and sensor noise. Each defect's contrast changes from frame to frame
// (the light's angle): faint in some frames, clear in others, which is what a model
// looking at several frames can use. Every frame is written as an image with its VOC file
// (a defect's box clipped to the frame, <truncated> when clipped; defects less than 40%
// inside a frame are not annotated in it), so the real loaders read them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qs::defect {

struct SynthOptions {
  int sequences = 16;  // per call (one split)
  int frames = 8;      // per sequence
  int size = 128;      // frame side, pixels (16..1024)
  double speed = 10;   // strip travel per frame, pixels
  int max_defects = 4; // per sequence (1..max_defects, uniform)
  std::string format = "png";  // png | jpg
  uint64_t seed = 0;
};

struct SynthSummary {
  int sequences = 0, frames = 0, boxes = 0;
  std::vector<int> per_class;  // annotated boxes per class (NEU-DET order)
};

// Writes DIR/seq_<k>/frame_<t>.<png|jpg> + frame_<t>.xml for k < sequences, t < frames.
// The same options and seed, the same files. Errors: options out of range, DIR not writable.
SynthSummary write_synthetic_sequences(const std::string& dir, const SynthOptions& o);

}  // namespace qs::defect
