// Defect-detection data on disk: NEU-DET's folder layouts (Song & Yan 2013; He et al.
// 2020: six steel-surface defect classes, 200 x 200 grey JPEGs, VOC boxes) and inspection
// sequences (folders of frames, each with its VOC file), as the detectors read them.
//
//   auto images = defect::scan_neu_det("/data/NEU-DET");          // every annotated image
//   auto seqs = defect::scan_sequences("/data/strip/train");     // frames in name order
//   Tensor x = defect::load_gray(images[0].image);               // [1, H, W] in [0, 1]
//   defect::Targets t = defect::targets_of(images[0].voc);       // boxes + class indices
#pragma once
#include <string>
#include <vector>

#include "qiusuo/defect/voc.h"
#include "qiusuo/tensor.h"

namespace qs::defect {

// crazing, inclusion, patches, pitted_surface, rolled-in_scale, scratches (NEU-DET's
// names and order; class index = position).
const std::vector<std::string>& neu_det_classes();
// The index of a class name, or -1.
int class_index(const std::string& name);

struct DefectImage {
  std::string image, annotation;  // paths
  VocAnnotation voc;
};

// NEU-DET as released, either layout (the images found by file name, see below):
//   ROOT/ANNOTATIONS/<stem>.xml + ROOT/IMAGES/<file>                   (the original archive)
//   ROOT/<split>/annotations/<stem>.xml + ROOT/<split>/images[/<class>]/<file>
//                                                                       (the train/validation copy)
// `split` picks one split of the second layout ("" takes every split found, in name order).
// An annotation's image is its <filename>, else <stem> with .jpg, .jpeg, .png or .bmp (some
// NEU-DET files name the image without its extension), in the images folder or one of
// its class subfolders. Annotations in name order. Errors (IOError): no layout found, an
// annotation without its image, an object whose class is not one of the six (naming the
// file; nothing is skipped silently), an unreadable or malformed annotation.
std::vector<DefectImage> scan_neu_det(const std::string& root, const std::string& split = "");

struct DefectSequence {
  std::string name;                 // the folder's name
  std::vector<DefectImage> frames;  // in file-name order
};
// Inspection sequences: ROOT/<sequence>/<frame>.xml, each beside its image (found as in
// scan_neu_det), every folder of ROOT holding .xml files one sequence, in name order.
// Errors as scan_neu_det, and a ROOT without sequences, frames of different sizes within a
// sequence.
std::vector<DefectSequence> scan_sequences(const std::string& root);

// An image file (PNG, JPEG, BMP) as grey levels: [1, H, W] f32 in [0, 1] (RGB averaged
// with the ITU-R BT.601 weights 0.299, 0.587, 0.114). Errors as viz::read_image; the
// second form also refuses an image whose size is not its annotation's <size>.
Tensor load_gray(const std::string& path);
Tensor load_gray(const DefectImage& d);

// What a detector trains on: boxes [n, 4] f32 as continuous pixel corners (x1, y1, x2,
// y2; voc_box_continuous) and class indices [n] i64, difficult flags alongside.
struct Targets {
  Tensor boxes, labels;
  std::vector<bool> difficult;
};
Targets targets_of(const VocAnnotation& a);

}  // namespace qs::defect
