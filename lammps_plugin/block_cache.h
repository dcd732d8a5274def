/* A CPU allocator for libtorch that keeps large freed blocks for the next MD step.

   Each step of a student allocates the same large tensors again (edge features, autograd buffers: hundreds of
   MB at 10k+ atoms). Through the default allocator each comes from a fresh mmap that the kernel must fault in and
   zero, which made the cost per atom-step rise 3-5x from 1k to 17k atoms. This cache hands a freed block of the
   same rounded size back instead. A block nobody took during a whole step is returned to the system at the next
   step boundary, so the cache holds at most what one step frees (the step's own working set).

   Installed process-wide (c10::SetCPUAllocator) while at least one `pair_style hessdistill ... memory cache` is
   attached: an opt-in (the default is `memory system`, torch's own allocator), since it changes every CPU
   allocation of torch in the process, the host program's included. Every attached pair style calls step_boundary() once per step, so with several of them
   (pair_style hybrid) a "step" spans as many boundaries as there are users: a block is returned only after that
   many boundaries without use, not at the next user's boundary. */

#ifndef HESSDISTILL_BLOCK_CACHE_H
#define HESSDISTILL_BLOCK_CACHE_H

#include <c10/core/Allocator.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace hessdistill {

class BlockCache final : public c10::Allocator {
 public:
  static BlockCache &instance();    // never destroyed: tensors may still be freed during static destruction

  void attach();    // one more user; the first one makes this torch's CPU allocator
  void detach();    // one user fewer; after the last one, torch's previous allocator and no cached blocks
  void step_boundary();    // each user, once per step: return blocks unused for a whole step to the system
  std::size_t cached_bytes();

  c10::DataPtr allocate(std::size_t n) override;
  void copy_data(void *dest, const void *src, std::size_t count) const override;

 private:
  BlockCache() = default;
  static void release(void *ptr);
  void give_back(void *ptr);
  std::vector<void *> take_idle(std::uint64_t older_than);    // caller holds the mutex; frees outside it

  struct Free {
    void *ptr;
    std::uint64_t freed_in_step;
  };
  std::mutex mutex;
  std::map<std::size_t, std::vector<Free>> free_blocks;    // rounded size -> blocks ready for reuse
  std::unordered_map<void *, std::size_t> live;              // cached-size blocks in use -> rounded size
  std::size_t free_bytes = 0;
  std::uint64_t step = 0;    // step boundaries so far, all users together
  int users = 0;
  c10::Allocator *previous = nullptr;    // blocks allocated before attach() keep their own deleters
};

}    // namespace hessdistill

#endif
