#include "xdistill/dist/flat_layout.h"

#include <algorithm>
#include <cstdio>

#include "xdistill/util/error.h"

namespace xd::dist {

FlatLayout::FlatLayout(std::vector<int64_t> param_numels, int world_size, int64_t bucket_numel)
    : numels_(std::move(param_numels)), world_(world_size), bucket_numel_(bucket_numel) {
  XD_CHECK(world_ >= 1, "flat layout: world size ", world_, " must be at least 1");
  XD_CHECK(bucket_numel_ >= 1, "flat layout: bucket size ", bucket_numel_, " must be at least 1 element");
  Bucket current;
  auto close_bucket = [&] {
    if (current.numel == 0) return;
    current.padded_numel = (current.numel + world_ - 1) / world_ * world_;
    current.shard_numel = current.padded_numel / world_;
    current.shard_offset = shard_numel_;
    shard_numel_ += current.shard_numel;
    buckets_.push_back(std::move(current));
    current = Bucket{};
  };
  for (size_t i = numels_.size(); i-- > 0;) {
    XD_CHECK(numels_[i] >= 0, "flat layout: parameter ", i, " has a negative size");
    int64_t done = 0;
    while (done < numels_[i]) {
      const int64_t take = std::min(numels_[i] - done, bucket_numel_ - current.numel);
      current.pieces.push_back({i, done, current.numel, take});
      current.numel += take;
      done += take;
      if (current.numel == bucket_numel_) close_bucket();
    }
  }
  close_bucket();
}

int64_t FlatLayout::total_numel() const {
  int64_t n = 0;
  for (int64_t x : numels_) n += x;
  return n;
}

std::vector<ShardPiece> FlatLayout::shard_pieces(int rank) const {
  XD_CHECK(rank >= 0 && rank < world_, "flat layout: rank ", rank, " outside world of ", world_);
  std::vector<ShardPiece> out;
  for (const Bucket& b : buckets_) {
    const int64_t lo = rank * b.shard_numel, hi = lo + b.shard_numel;
    for (const BucketPiece& p : b.pieces) {
      const int64_t a = std::max(lo, p.bucket_offset), z = std::min(hi, p.bucket_offset + p.length);
      if (a >= z) continue;
      out.push_back({p.param, p.param_offset + (a - p.bucket_offset), b.shard_offset + (a - lo), z - a});
    }
  }
  return out;
}

FlatLayout FlatLayout::with_world_size(int world_size) const { return FlatLayout(numels_, world_size, bucket_numel_); }

std::string FlatLayout::fingerprint() const {
  // FNV-1a over the sizes and the bucket cut: cheap, stable across builds.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  mix(numels_.size());
  for (int64_t n : numels_) mix(static_cast<uint64_t>(n));
  mix(static_cast<uint64_t>(bucket_numel_));
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace xd::dist
