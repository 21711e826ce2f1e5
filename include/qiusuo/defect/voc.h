// Pascal VOC annotation files (Everingham et al. 2010; the devkit's XML), read with
// pugixml and written atomically: the format of NEU-DET's boxes and of the synthetic
// inspection sequences (docs/defect.md).
//
//   <annotation>
//     <folder>IMAGES</folder> <filename>crazing_1.jpg</filename>
//     <size><width>200</width><height>200</height><depth>1</depth></size>
//     <object>
//       <name>crazing</name> <pose>Unspecified</pose> <truncated>0</truncated> <difficult>0</difficult>
//       <bndbox><xmin>2</xmin><ymin>2</ymin><xmax>193</xmax><ymax>194</ymax></bndbox>
//     </object> ...
//   </annotation>
//
// Box coordinates are the devkit's: 1-based pixel indices, both ends inclusive, so a box
// covers the continuous region [xmin - 1, xmax] x [ymin - 1, ymax] of the image
// (voc_box_continuous). Other elements (<source>, <owner>, <segmented>, ...) are ignored.
#pragma once
#include <array>
#include <string>
#include <vector>

namespace qs::defect {

struct VocObject {
  std::string name;
  std::string pose;  // "" when absent
  bool truncated = false, difficult = false;
  double xmin = 0, ymin = 0, xmax = 0, ymax = 0;  // as written (after clipping, see parse_voc)
};

struct VocAnnotation {
  std::string folder, filename;  // "" when absent
  int width = 0, height = 0, depth = 0;  // depth 0 when absent
  std::vector<VocObject> objects;
  int clipped = 0;  // boxes that reached outside the image and were clipped to it
};

// Parses one annotation. `where` names it in errors (IOError "where:line: ..."):
// not well-formed XML, a DOCTYPE or ENTITY declaration (refused: a VOC file has none, and
// no entity is ever expanded), a root other than <annotation>, a missing or non-integer
// <size> (width and height 1..16384), an object without <name> or <bndbox>, a coordinate
// that is not a finite number, a box with xmin > xmax or ymin > ymax, a flag other than 0/1.
// A box reaching outside the pixels 1..width, 1..height is clipped to them (some tools
// count from 0, or write width + 1) and counted in `clipped`; one wholly outside is an error.
VocAnnotation parse_voc(const std::string& xml, const std::string& where);
// parse_voc of a file (at most 4 MiB).
VocAnnotation read_voc(const std::string& path);

// The XML of `a` (the layout above, coordinates as integers when they are), and its
// atomic write. Errors: a size outside 1..16384, an empty class name.
std::string voc_xml(const VocAnnotation& a);
void write_voc(const VocAnnotation& a, const std::string& path);

// A box's continuous pixel region {x1, y1, x2, y2} = {xmin - 1, ymin - 1, xmax, ymax}, and back.
std::array<double, 4> voc_box_continuous(const VocObject& o);
void set_voc_box(VocObject& o, const std::array<double, 4>& continuous);

}  // namespace qs::defect
