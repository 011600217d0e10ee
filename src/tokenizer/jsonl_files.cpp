#include "tokenizer/jsonl_files.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"

namespace xd::tok {
namespace {

using Clock = std::chrono::steady_clock;

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Reads `path` line by line; calls on_line(line, line_number) for each.
void for_each_line(const std::string& path, const std::function<void(const std::string&, size_t)>& on_line) {
  std::ifstream in(path, std::ios::binary);
  XD_CHECK(in, path, ": cannot open for reading");
  std::string line;
  size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    on_line(line, number);
  }
  XD_CHECK(in.eof(), path, ": read error after line ", number);
}

nlohmann::json parse_line(const std::string& line, const std::string& path, size_t number) {
  try {
    return nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ":" + std::to_string(number) + ": malformed JSON: " + e.what());
  }
}

void write_all(std::FILE* f, const std::string& data, const std::string& path) {
  if (!data.empty() && std::fwrite(data.data(), 1, data.size(), f) != data.size())
    throw Error(path + ": short write");
}

void append_ids(std::string& out, const char* key, const std::vector<int32_t>& ids) {
  out += '"';
  out += key;
  out += "\":[";
  char buffer[16];
  for (size_t i = 0; i < ids.size(); ++i) {
    const int n = std::snprintf(buffer, sizeof(buffer), i ? ",%d" : "%d", ids[i]);
    out.append(buffer, size_t(n));
  }
  out += ']';
}

// Batches of texts are encoded together, so that all threads share the work.
constexpr size_t kBatchBytes = size_t(32) << 20;
constexpr size_t kBatchLines = 1 << 16;

}  // namespace

JsonlStats encode_jsonl(const Tokenizer& tokenizer, const std::string& input, const std::string& output,
                        bool add_special_tokens, int threads) {
  JsonlStats stats;
  const auto start = Clock::now();
  fs::write_atomic_with(output, [&](std::FILE* f) {
    std::vector<std::string> batch;
    size_t batch_bytes = 0;
    std::string out;
    auto flush = [&] {
      const auto t0 = Clock::now();
      const double cpu0 = cpu_seconds();
      const auto ids = tokenizer.encode_batch(batch, add_special_tokens, threads);
      stats.codec_seconds += seconds_since(t0);
      stats.codec_cpu_seconds += cpu_seconds() - cpu0;
      out.clear();
      for (const auto& row : ids) {
        out += '{';
        append_ids(out, "ids", row);
        out += "}\n";
      }
      write_all(f, out, output);
      batch.clear();
      batch_bytes = 0;
    };
    for_each_line(input, [&](const std::string& line, size_t number) {
      const nlohmann::json j = parse_line(line, input, number);
      XD_CHECK(j.is_object() && j.contains("text") && j.at("text").is_string(), input, ":", number,
               ": expected an object with a string \"text\"");
      batch.push_back(j.at("text").get<std::string>());
      batch_bytes += batch.back().size();
      stats.text_bytes += batch.back().size();
      ++stats.lines;
      if (batch_bytes >= kBatchBytes || batch.size() >= kBatchLines) flush();
    });
    if (!batch.empty()) flush();
  });
  stats.total_seconds = seconds_since(start);
  return stats;
}

JsonlStats decode_jsonl(const Tokenizer& tokenizer, const std::string& input, const std::string& output,
                        bool skip_special_tokens) {
  JsonlStats stats;
  const auto start = Clock::now();
  fs::write_atomic_with(output, [&](std::FILE* f) {
    std::string out;
    for_each_line(input, [&](const std::string& line, size_t number) {
      const nlohmann::json j = parse_line(line, input, number);
      XD_CHECK(j.is_object() && j.contains("ids") && j.at("ids").is_array(), input, ":", number,
               ": expected an object with an array \"ids\"");
      std::vector<int32_t> ids;
      ids.reserve(j.at("ids").size());
      for (const auto& id : j.at("ids")) {
        XD_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() <= INT32_MAX, input, ":",
                 number, ": ids must be non-negative integers, got ", id.dump());
        ids.push_back(id.get<int32_t>());
      }
      const auto t0 = Clock::now();
      std::string text;
      try {
        text = tokenizer.decode(ids, skip_special_tokens);
      } catch (const Error& e) {
        throw Error(input + ":" + std::to_string(number) + ": " + e.what());
      }
      stats.codec_seconds += seconds_since(t0);
      stats.text_bytes += text.size();
      ++stats.lines;
      out = "{\"text\":" + nlohmann::json(text).dump() + "}\n";
      write_all(f, out, output);
    });
  });
  stats.total_seconds = seconds_since(start);
  return stats;
}

JsonlStats chat_jsonl(const Tokenizer& tokenizer, const std::string& input, const std::string& output,
                      bool add_generation_prompt, std::optional<ChatFormat> format) {
  JsonlStats stats;
  const auto start = Clock::now();
  fs::write_atomic_with(output, [&](std::FILE* f) {
    std::string out;
    for_each_line(input, [&](const std::string& line, size_t number) {
      const nlohmann::json j = parse_line(line, input, number);
      const std::string where = input + ":" + std::to_string(number);
      XD_CHECK(j.is_object() && j.contains("messages") && j.at("messages").is_array(), where,
               ": expected an object with an array \"messages\"");
      std::vector<ChatMessage> messages;
      for (const auto& m : j.at("messages")) {
        XD_CHECK(m.is_object() && m.contains("role") && m.at("role").is_string() && m.contains("content") &&
                     m.at("content").is_string(),
                 where, ": each message needs string \"role\" and \"content\"");
        messages.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
      }
      const bool generation = j.value("add_generation_prompt", add_generation_prompt);
      RenderedChat chat;
      try {
        chat = format ? render_chat(tokenizer, messages, generation, *format)
                      : render_chat(tokenizer, messages, generation);
      } catch (const Error& e) {
        throw Error(where + ": " + e.what());
      }
      ++stats.lines;
      stats.text_bytes += chat.text.size();
      out = "{\"text\":" + nlohmann::json(chat.text).dump() + ',';
      append_ids(out, "ids", chat.ids);
      out += ',';
      append_ids(out, "assistant_mask", std::vector<int32_t>(chat.assistant_mask.begin(), chat.assistant_mask.end()));
      out += "}\n";
      write_all(f, out, output);
    });
  });
  stats.total_seconds = seconds_since(start);
  return stats;
}

}  // namespace xd::tok
