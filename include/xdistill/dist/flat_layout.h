// How parameters are packed into flat fp32 buckets and sharded over ranks.
//
// Parameters are taken in REVERSE order (the backward pass produces the last
// layers' gradients first) and cut into buckets of at most `bucket_numel`
// elements; a large parameter may span several buckets. Each bucket is padded to
// a multiple of the world size and split evenly: rank r owns elements
// [r * shard, (r + 1) * shard) of every bucket, so one reduce-scatter per bucket
// delivers exactly the owner's gradients and one all-gather returns the weights
// (the layout of FSDP's flat parameters and of ZeRO stage 2).
// A rank's local shard is the concatenation of its slices of all buckets.
// The bucket cut does not depend on the world size; only the padding does, which
// is what makes resharding a checkpoint to another world size possible.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace xd::dist {

// A contiguous run of one parameter's elements inside one bucket.
struct BucketPiece {
  size_t param = 0;          // index into the parameter list
  int64_t param_offset = 0;  // first element within the flattened parameter
  int64_t bucket_offset = 0; // first element within the bucket
  int64_t length = 0;
};

struct Bucket {
  std::vector<BucketPiece> pieces;
  int64_t numel = 0;         // real elements
  int64_t padded_numel = 0;  // multiple of the world size
  int64_t shard_numel = 0;   // padded_numel / world
  int64_t shard_offset = 0;  // where this bucket's slice sits in a rank's local shard
};

// A contiguous run of one parameter's elements inside one rank's local shard.
struct ShardPiece {
  size_t param = 0;
  int64_t param_offset = 0;
  int64_t shard_offset = 0;
  int64_t length = 0;
};

class FlatLayout {
 public:
  FlatLayout() = default;
  FlatLayout(std::vector<int64_t> param_numels, int world_size, int64_t bucket_numel);

  int world_size() const { return world_; }
  int64_t bucket_numel() const { return bucket_numel_; }
  const std::vector<int64_t>& param_numels() const { return numels_; }
  const std::vector<Bucket>& buckets() const { return buckets_; }
  int64_t shard_numel() const { return shard_numel_; }  // same on every rank
  int64_t total_numel() const;                          // real elements, all parameters

  // The pieces of all parameters that land in `rank`'s local shard (padding excluded).
  std::vector<ShardPiece> shard_pieces(int rank) const;
  // The same layout for another world size (resharding a checkpoint).
  FlatLayout with_world_size(int world_size) const;
  // Identifies the parameter sizes and the bucket cut (not the world size).
  std::string fingerprint() const;

 private:
  std::vector<int64_t> numels_;
  int world_ = 1;
  int64_t bucket_numel_ = 0;
  std::vector<Bucket> buckets_;
  int64_t shard_numel_ = 0;
};

}  // namespace xd::dist
