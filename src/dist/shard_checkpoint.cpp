// Sharded optimizer state on disk, and the commit protocol that makes a checkpoint
// count only once every rank's shard and the final marker are written.
#include <torch/torch.h>

#include <cstdio>

#include "xdistill/dist/checkpoint.h"
#include "xdistill/dist/sharded_adamw.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"
#include "xdistill/util/log.h"

namespace xd::dist {
namespace stdfs = std::filesystem;

namespace {

constexpr int64_t kShardRevision = 1;

struct ShardFile {
  at::Tensor master, exp_avg, exp_avg_sq;
  int64_t step = 0, world = 0, rank = 0, bucket_numel = 0, revision = 0;
  std::string fingerprint;
};

int64_t read_int(torch::serialize::InputArchive& in, const char* key) {
  c10::IValue v;
  in.read(key, v);
  return v.toInt();
}

ShardFile read_shard(const stdfs::path& file) {
  if (!stdfs::is_regular_file(file)) throw Error(file.string() + ": optimizer shard not found");
  torch::serialize::InputArchive in;
  ShardFile s;
  try {
    in.load_from(file.string(), at::Device(at::kCPU));
    s.revision = read_int(in, "revision");
    if (s.revision > kShardRevision)
      throw Error(file.string() + ": optimizer shard revision " + std::to_string(s.revision) +
                  " is newer than this xdistill reads (" + std::to_string(kShardRevision) + "): update xdistill");
    in.read("master", s.master);
    in.read("exp_avg", s.exp_avg);
    in.read("exp_avg_sq", s.exp_avg_sq);
    s.step = read_int(in, "step");
    s.world = read_int(in, "world");
    s.rank = read_int(in, "rank");
    s.bucket_numel = read_int(in, "bucket_numel");
    c10::IValue fp;
    in.read("fingerprint", fp);
    s.fingerprint = fp.toStringRef();
  } catch (const c10::Error& e) {
    throw Error(file.string() + ": not a readable optimizer shard: " + e.what_without_backtrace());
  }
  return s;
}

}  // namespace

std::string ShardedAdamW::shard_file(int rank, int world) { return expected_shards(world).at(static_cast<size_t>(rank)); }

void ShardedAdamW::save_shard(const stdfs::path& checkpoint_dir) const {
  const stdfs::path file = checkpoint_dir / shard_file(pg_->rank(), pg_->size());
  stdfs::create_directories(file.parent_path());
  torch::serialize::OutputArchive out;
  out.write("revision", c10::IValue(kShardRevision));
  out.write("master", master_.cpu());
  out.write("exp_avg", exp_avg_.cpu());
  out.write("exp_avg_sq", exp_avg_sq_.cpu());
  out.write("step", c10::IValue(step_));
  out.write("world", c10::IValue(static_cast<int64_t>(pg_->size())));
  out.write("rank", c10::IValue(static_cast<int64_t>(pg_->rank())));
  out.write("bucket_numel", c10::IValue(layout_.bucket_numel()));
  out.write("fingerprint", c10::IValue(layout_.fingerprint()));
  // Temp file + rename: a shard on disk is always whole.
  const stdfs::path tmp = fs::temp_sibling(file);
  out.save_to(tmp.string());
  stdfs::rename(tmp, file);
}

void ShardedAdamW::load_shard(const stdfs::path& checkpoint_dir) {
  torch::NoGradGuard no_grad;
  const int old_world = checkpoint_world_size(checkpoint_dir);
  const auto check = [&](const ShardFile& s, const stdfs::path& file) {
    if (s.bucket_numel != layout_.bucket_numel() || s.fingerprint != layout_.fingerprint())
      throw Error(file.string() + ": optimizer shard is for other parameters or another bucket size (layout " +
                  s.fingerprint + ", bucket " + std::to_string(s.bucket_numel) + "; this run: " +
                  layout_.fingerprint() + ", bucket " + std::to_string(layout_.bucket_numel()) + ")");
    if (s.world != old_world) throw Error(file.string() + ": written by " + std::to_string(s.world) + " ranks, the marker says " + std::to_string(old_world));
  };
  if (old_world == pg_->size()) {
    const stdfs::path file = checkpoint_dir / shard_file(pg_->rank(), pg_->size());
    ShardFile s = read_shard(file);
    check(s, file);
    master_.copy_(s.master);
    exp_avg_.copy_(s.exp_avg);
    exp_avg_sq_.copy_(s.exp_avg_sq);
    step_ = s.step;
    return;
  }
  // Resharding: rebuild each bucket from the old ranks' slices, keep this rank's slice.
  log::info("dist: optimizer state of ", checkpoint_dir.string(), " was written by ", old_world,
            " ranks; resharding to ", pg_->size());
  const FlatLayout old_layout = layout_.with_world_size(old_world);
  std::vector<ShardFile> old;
  for (int r = 0; r < old_world; ++r) {
    const stdfs::path file = checkpoint_dir / shard_file(r, old_world);
    old.push_back(read_shard(file));
    check(old.back(), file);
  }
  const int rank = pg_->rank();
  for (size_t b = 0; b < layout_.buckets().size(); ++b) {
    const Bucket& ob = old_layout.buckets()[b];
    const Bucket& nb = layout_.buckets()[b];
    const int64_t lo = rank * nb.shard_numel, take = std::max<int64_t>(0, std::min(nb.numel - lo, nb.shard_numel));
    auto rebuild = [&](at::Tensor ShardFile::*field, at::Tensor& dest) {
      std::vector<at::Tensor> parts;
      for (auto& s : old) parts.push_back((s.*field).narrow(0, ob.shard_offset, ob.shard_numel));
      at::Tensor full = at::cat(parts);  // old padded bucket
      auto slice = dest.narrow(0, nb.shard_offset, nb.shard_numel);
      slice.zero_();
      if (take > 0) slice.narrow(0, 0, take).copy_(full.narrow(0, lo, take));
    };
    rebuild(&ShardFile::master, master_);
    rebuild(&ShardFile::exp_avg, exp_avg_);
    rebuild(&ShardFile::exp_avg_sq, exp_avg_sq_);
  }
  step_ = old.front().step;
}

void ShardedAdamW::load_full_state(const FullStateFetch& fetch, int64_t step) {
  torch::NoGradGuard no_grad;
  std::vector<std::vector<ShardPiece>> pieces_of(params_.size());
  for (const ShardPiece& piece : layout_.shard_pieces(pg_->rank())) pieces_of[piece.param].push_back(piece);
  master_.zero_(), exp_avg_.zero_(), exp_avg_sq_.zero_();
  for (size_t i = 0; i < params_.size(); ++i) {
    if (pieces_of[i].empty()) continue;
    const auto copy_field = [&](const char* field, at::Tensor& dest) {
      const at::Tensor full = fetch(params_[i].name, field);
      XD_CHECK(full.numel() == params_[i].tensor.numel(), "optimizer state: '", field, "' of '", params_[i].name,
               "' has ", full.numel(), " elements, the parameter ", params_[i].tensor.numel());
      const at::Tensor flat = full.reshape({-1}).to(dest.device(), at::kFloat);
      for (const ShardPiece& piece : pieces_of[i])
        dest.narrow(0, piece.shard_offset, piece.length).copy_(flat.narrow(0, piece.param_offset, piece.length));
    };
    copy_field("master", master_);
    copy_field("exp_avg", exp_avg_);
    copy_field("exp_avg_sq", exp_avg_sq_);
  }
  step_ = step;
}

stdfs::path agree_on_staging(ProcessGroup& pg, const std::function<stdfs::path()>& make_staging) {
  std::string path;
  if (pg.is_main()) path = make_staging().string();
  return pg.broadcast_string(path, 0);
}

stdfs::path commit_checkpoint(ProcessGroup& pg, const stdfs::path& staging, int64_t step,
                              const std::function<stdfs::path()>& publish) {
  pg.barrier();  // every rank has written (and renamed) its files
  std::string missing;
  if (pg.is_main())
    for (const auto& shard : expected_shards(pg.size()))
      if (!stdfs::is_regular_file(staging / shard)) missing += (missing.empty() ? "" : ", ") + shard;
  if (pg.any(!missing.empty()))
    throw Error("checkpoint " + staging.string() + " of step " + std::to_string(step) +
                " lacks optimizer shards" + (missing.empty() ? "" : ": " + missing) +
                " (is the run directory on a file system every node shares?)");
  std::string published;
  if (pg.is_main()) {
    write_complete_marker(staging, step, pg.size());
    published = publish().string();
  }
  published = pg.broadcast_string(published, 0);  // also keeps ranks until it is in place
  return published;
}

}  // namespace xd::dist
