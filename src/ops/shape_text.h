// "[2, 3, 4]": a tensor's shape as text, for the operators' error messages.
#pragma once
#include <ATen/ATen.h>

#include <sstream>
#include <string>

namespace xd::ops {

inline std::string shape_of(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

}  // namespace xd::ops
