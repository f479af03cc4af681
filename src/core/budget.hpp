// What the gateway holds of upstream answers while it reads them (remote servers' bodies and SSE events),
// across every call at once: UPSTREAM_MEMORY_LIMIT_MB at most. One answer is bounded on its own (64 MiB),
// but not how many are read at once; past the limit the call whose answer would grow the total fails with
// a JSON-RPC error, rather than the process growing until the kernel kills it. The io thread's only.
#pragma once
#include <cstddef>
#include <cstdint>

namespace gh::budget {

struct Counts {
  std::size_t held = 0, limit = 0;  // limit 0: none
  uint64_t refused = 0;             // answers refused at the limit
};
inline Counts state;  // (inline: a share's resize is on every call's path)
// The default limit: a quarter of `memory_bytes`, at most 1 GiB.
std::size_t default_limit(std::size_t memory_bytes);
// The memory this process may use: its memory cgroup's limit when lower than the machine's memory.
std::size_t available_memory();
inline void set_limit(std::size_t bytes) { state.limit = bytes; }
inline const Counts& counts() { return state; }

// One reader's share, given back when it ends.
class Share {
 public:
  Share() = default;
  Share(const Share&) = delete;
  Share& operator=(const Share&) = delete;
  ~Share() { resize(0); }
  // Makes the share `bytes`. False when that would take the total past the limit: the share is then
  // unchanged, and the refusal counted.
  bool resize(std::size_t bytes) {
    if (bytes > mine_ && state.limit && state.held - mine_ + bytes > state.limit) {
      ++state.refused;
      return false;
    }
    state.held = state.held - mine_ + bytes;
    mine_ = bytes;
    return true;
  }
  std::size_t size() const { return mine_; }

 private:
  std::size_t mine_ = 0;
};

}  // namespace gh::budget
