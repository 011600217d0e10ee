// A small command-line window onto the safetensors reader/writer, for the Python
// interoperability tests (tests/python/test_safetensors.py):
//   xd_st_tool dump PATH                 JSON: metadata, and per tensor dtype, shape, bytes as hex
//   xd_st_tool copy SRC DST SHARD_BYTES  re-write SRC through CheckpointWriter
//   xd_st_tool copy-planned SRC DST SHARD_BYTES  the same with CheckpointWriter::plan
// Errors go to stderr with exit code 1.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "xdistill/io/safetensors.h"
#include "xdistill/util/error.h"

using namespace xd::io;

static std::string hex(const uint8_t* p, uint64_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (uint64_t i = 0; i < n; ++i) {
    s[2 * i] = digits[p[i] >> 4];
    s[2 * i + 1] = digits[p[i] & 15];
  }
  return s;
}

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "dump" && argc == 3) {
      const Checkpoint ck = Checkpoint::open(argv[2]);
      nlohmann::json out;
      out["metadata"] = ck.metadata();
      out["tensors"] = nlohmann::json::object();
      for (const auto& name : ck.names()) {
        const TensorInfo& t = ck.info(name);
        out["tensors"][name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"hex", hex(ck.data(name), t.nbytes())}};
      }
      std::cout << out.dump() << "\n";
      return 0;
    }
    if ((cmd == "copy" || cmd == "copy-planned") && argc == 5) {
      const Checkpoint ck = Checkpoint::open(argv[2]);
      CheckpointWriter w(argv[3], std::stoull(argv[4]), ck.metadata());
      if (cmd == "copy-planned") {
        std::vector<CheckpointWriter::PlannedTensor> plan;
        for (const auto& name : ck.names()) plan.push_back({name, ck.info(name).dtype, ck.info(name).shape});
        std::reverse(plan.begin(), plan.end());  // a different order than the adds below
        w.plan(plan);
      }
      for (const auto& name : ck.names()) {
        const TensorInfo& t = ck.info(name);
        w.add(name, t.dtype, t.shape, ck.data(name), t.nbytes());
      }
      w.finish();
      return 0;
    }
    std::cerr << "usage: xd_st_tool dump PATH | copy|copy-planned SRC DST SHARD_BYTES\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
