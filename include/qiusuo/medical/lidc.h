// LIDC-IDRI's radiologist annotations (Armato et al. 2011): the XML file beside each CT
// series, read with pugixml, and the nodules of up to four readers grouped and labelled.
//
//   medical::DicomSeries ct = medical::read_dicom_series(dir);
//   medical::LidcRead read = medical::read_lidc_xml(dir + "/069.xml");
//   for (const medical::LidcNodule& n : medical::group_nodules(read, ct))
//     if (int y = medical::label(n); y >= 0) ...;   // 1 malignant, 0 benign, -1 excluded
//
// The file: <LidcReadMessage> holds a <ResponseHeader> (SeriesInstanceUid, ...) and one
// <readingSession> per radiologist. A session marks
//   - nodules >= 3 mm as <unblindedReadNodule> with <characteristics> (subtlety, internal
//     structure, calcification, sphericity, margin, lobulation, spiculation, texture, and
//     malignancy, each rated 1-5 or 1-6) and one <roi> per slice: <imageZposition>,
//     <imageSOP_UID>, <inclusion> (FALSE: a hole) and the outline as <edgeMap> points
//     (<xCoord> column, <yCoord> row, in pixels);
//   - nodules < 3 mm as an <unblindedReadNodule> without characteristics and one point;
//   - non-nodules as <nonNodule> with a <locus> point.
// The readers worked independently: their nodule IDs do not match across sessions, so the
// same nodule appears once per reader who marked it. group_nodules puts those together.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "qiusuo/medical/dicom.h"

namespace qs::medical {

struct LidcRoi {
  double z = 0;                                // imageZposition (DICOM z, mm)
  std::string sop_uid;                         // the slice
  bool inclusion = true;                       // false: the outline is a hole
  std::vector<std::array<double, 2>> points;   // (column, row) pixels
};

struct LidcCharacteristics {
  // 0 where the reader gave none (nodules < 3 mm have no characteristics at all).
  int subtlety = 0, internal_structure = 0, calcification = 0, sphericity = 0, margin = 0, lobulation = 0,
      spiculation = 0, texture = 0, malignancy = 0;
};

struct LidcAnnotation {
  int session = 0;          // index of the readingSession
  std::string reader;       // servicingRadiologistID ("" if absent)
  std::string nodule_id;
  bool has_characteristics = false;  // false: a nodule < 3 mm (one point)
  LidcCharacteristics c;
  std::vector<LidcRoi> rois;
};

struct LidcNonNodule {
  int session = 0;
  std::string id, sop_uid;
  double z = 0, column = 0, row = 0;
};

struct LidcRead {
  std::string series_uid, study_uid;  // from the ResponseHeader
  int sessions = 0;
  std::vector<LidcAnnotation> annotations;  // every unblindedReadNodule, in file order
  std::vector<LidcNonNodule> non_nodules;
};

struct LidcReadOptions {
  // An element the reader does not know inside a session, nodule, characteristics, roi,
  // edgeMap or nonNodule is an error naming it and its line (a misspelt or foreign file
  // must not pass as one without annotations); false skips such elements.
  bool strict = true;
  int64_t max_bytes = int64_t(64) << 20;  // files above this size are refused unread
};

// Errors (IOError naming the file and line): not well-formed XML; a DOCTYPE or entity
// declaration (refused: no external entities are ever resolved, and none are expected);
// a root other than LidcReadMessage; a chest X-ray reading (CXRreadingSession) instead
// of CT; unknown elements (strict); numbers that do not parse or ratings outside 1-6;
// an roi without an SOP UID or with no edge points; a file over max_bytes.
LidcRead read_lidc_xml(const std::string& path, const LidcReadOptions& opt = {});

// Writes `read` in LIDC's layout (namespace http://www.nih.gov, a ResponseHeader with the
// series and study UIDs, one readingSession per session index), atomically: what the
// synthetic data set's XML files are. read_lidc_xml gives `read` back.
void write_lidc_xml(const std::string& path, const LidcRead& read);

// A CT series of a LIDC-IDRI download: the folder of its DICOM files and its annotation XML.
// TCIA's layout is LIDC-IDRI-0001/<study>/<series>/{1-001.dcm, ..., 069.xml}.
struct LidcCase {
  std::string dir, xml;
};
// Every folder under `root` (recursively) holding an XML file whose root is LidcReadMessage
// with CT reading sessions, sorted by path. Chest X-ray folders (CXRreadingSession) are
// skipped. Errors: `root` not a folder.
std::vector<LidcCase> find_lidc_cases(const std::string& root);

// One physical nodule: the annotations (at most one per reading session) of the readers
// who marked it.
struct LidcNodule {
  std::vector<int> annotations;        // indices into LidcRead::annotations
  std::array<double, 3> centre{};      // voxel (i, j, k) of the series' volume: mean of the outlines' points
  std::array<double, 3> centre_mm{};   // the same in world millimetres (RAS)
  double diameter_mm = 0;              // largest distance between two outline points of one annotation
  std::vector<int> malignancy;         // each reader's rating, in annotation order
  double mean_malignancy = 0;
};

// Groups the nodules >= 3 mm (annotations with characteristics) of different sessions whose
// centres lie within `tolerance_mm` of each other (single linkage, never two annotations of
// one session in a group), placing each roi on the series' slice with its SOP instance UID.
// Errors: an roi whose SOP UID is not a slice of the series (naming it), a read of another
// series.
std::vector<LidcNodule> group_nodules(const LidcRead& read, const DicomSeries& series, double tolerance_mm = 10);

// The usual rule on the readers' mean malignancy (ratings 1-5): above `malignant_above`
// malignant (1), below `benign_below` benign (0), otherwise excluded (-1); groups with
// fewer than `min_readers` readers are excluded too. Defaults: > 3, < 3, 1 reader.
struct LabelRule {
  double malignant_above = 3, benign_below = 3;
  int min_readers = 1;
};
int label(const LidcNodule& n, const LabelRule& rule = {});

}  // namespace qs::medical
