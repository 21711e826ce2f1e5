// The text form's spelling of attribute values (graph.cpp), shared with the passes that
// compare attributes (common-subexpression keys).
#pragma once
#include <string>

#include "qiusuo/attrs.h"

namespace qs::graph {

// Integers bare (the dynamic batch "N"), reals always with a point or an exponent (the
// shortest form that reads back exactly), lists in brackets, strings quoted: two values
// print alike only if they are equal and of one type.
std::string attr_text(const AttrValue& v);

}  // namespace qs::graph
