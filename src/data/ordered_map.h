// A pipeline of one producer thread, N worker threads and the calling thread as the
// consumer, which sees the results in production order. Data preparation uses it to
// tokenize in parallel yet write deterministically.
//
// Errors keep their place in the order: a worker's exception is rethrown when its item
// would have been consumed, a producer's exception after every item produced before
// it. An exception from `consume` stops the producer and workers and is rethrown.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace xd::data {

// produce(In&) -> bool (false: no more items); work(In&) -> Out; consume(Out&).
template <typename In, typename Out, typename Produce, typename Work, typename Consume>
void ordered_parallel_map(int workers, int64_t max_in_flight, Produce produce, Work work, Consume consume) {
  struct Slot {
    std::optional<Out> out;
    std::exception_ptr error;
  };
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<std::pair<int64_t, In>> queue;
  std::map<int64_t, Slot> results;
  int64_t produced = 0, consumed = 0;
  bool producer_done = false, stop = false;
  std::exception_ptr producer_error;

  std::vector<std::thread> threads;
  struct Joiner {  // stops and joins every thread however the consumer leaves
    std::mutex& mutex;
    std::condition_variable& changed;
    bool& stop;
    std::vector<std::thread>& threads;
    ~Joiner() {
      {
        std::lock_guard<std::mutex> lock(mutex);
        stop = true;
      }
      changed.notify_all();
      for (std::thread& t : threads) t.join();
    }
  } joiner{mutex, changed, stop, threads};

  threads.emplace_back([&] {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex);
        changed.wait(lock, [&] { return stop || produced - consumed < max_in_flight; });
        if (stop) return;
      }
      In item{};
      bool more = false;
      std::exception_ptr error;
      try {
        more = produce(item);
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mutex);
      if (error || !more) {
        producer_error = error;
        producer_done = true;
        changed.notify_all();
        return;
      }
      queue.emplace_back(produced++, std::move(item));
      changed.notify_all();
    }
  });
  for (int w = 0; w < std::max(1, workers); ++w) {
    threads.emplace_back([&] {
      for (;;) {
        std::pair<int64_t, In> job;
        {
          std::unique_lock<std::mutex> lock(mutex);
          changed.wait(lock, [&] { return stop || !queue.empty() || producer_done; });
          if (stop || queue.empty()) return;
          job = std::move(queue.front());
          queue.pop_front();
        }
        Slot slot;
        try {
          slot.out.emplace(work(job.second));
        } catch (...) {
          slot.error = std::current_exception();
        }
        std::lock_guard<std::mutex> lock(mutex);
        results.emplace(job.first, std::move(slot));
        changed.notify_all();
      }
    });
  }

  for (;;) {
    Slot slot;
    {
      std::unique_lock<std::mutex> lock(mutex);
      changed.wait(lock, [&] { return results.count(consumed) || (producer_done && consumed == produced); });
      auto it = results.find(consumed);
      if (it == results.end()) {
        if (producer_error) std::rethrow_exception(producer_error);
        return;
      }
      slot = std::move(it->second);
      results.erase(it);
    }
    if (slot.error) std::rethrow_exception(slot.error);
    consume(*slot.out);
    std::lock_guard<std::mutex> lock(mutex);
    ++consumed;
    changed.notify_all();
  }
}

}  // namespace xd::data
