#include "block_cache.h"

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <cstring>
#include <limits>

namespace hessdistill {

namespace {

// Below this size glibc's own free lists already reuse memory without page faults.
constexpr std::size_t CACHE_FROM = std::size_t(1) << 20;
// Sizes round up to this step, so a tensor whose edge count changed a little still finds its block.
constexpr std::size_t GRANULE = std::size_t(2) << 20;
// Priority above the default CPU allocator's (0), so install() takes effect.
constexpr std::uint8_t PRIORITY = 1;

}    // namespace

BlockCache &BlockCache::instance()
{
  static BlockCache *cache = new BlockCache();
  return *cache;
}

void BlockCache::attach()
{
  std::lock_guard<std::mutex> lock(mutex);
  if (users++ > 0) return;
  previous = c10::GetCPUAllocator();
  c10::SetCPUAllocator(this, PRIORITY);
}

void BlockCache::detach()
{
  std::vector<void *> idle;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (users == 0 || --users > 0) return;
    c10::SetCPUAllocator(previous, PRIORITY);
    idle = take_idle(std::numeric_limits<std::uint64_t>::max());    // blocks in use: see give_back()
  }
  for (void *ptr : idle) c10::free_cpu(ptr);
}

c10::DataPtr BlockCache::allocate(std::size_t n)
{
  const c10::Device cpu(c10::DeviceType::CPU);
  if (n < CACHE_FROM) {
    void *ptr = c10::alloc_cpu(n);
    return {ptr, ptr, &c10::free_cpu, cpu};
  }
  const std::size_t size = (n + GRANULE - 1) / GRANULE * GRANULE;
  void *ptr = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = free_blocks.find(size);
    if (it != free_blocks.end() && !it->second.empty()) {
      ptr = it->second.back().ptr;
      it->second.pop_back();
      free_bytes -= size;
    }
  }
  if (!ptr) ptr = c10::alloc_cpu(size);
  std::lock_guard<std::mutex> lock(mutex);
  live[ptr] = size;
  return {ptr, ptr, &BlockCache::release, cpu};
}

void BlockCache::release(void *ptr)
{
  instance().give_back(ptr);
}

void BlockCache::give_back(void *ptr)
{
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = live.find(ptr);
    const std::size_t size = it->second;
    live.erase(it);
    if (users > 0) {
      free_blocks[size].push_back({ptr, step});
      free_bytes += size;
      return;
    }
  }
  c10::free_cpu(ptr);    // freed after the last user detached: nobody will call step_boundary() again
}

std::vector<void *> BlockCache::take_idle(std::uint64_t older_than)
{
  std::vector<void *> idle;
  for (auto it = free_blocks.begin(); it != free_blocks.end();) {
    auto &blocks = it->second;
    std::size_t kept = 0;
    for (const Free &b : blocks) {
      if (b.freed_in_step < older_than) {
        idle.push_back(b.ptr);
        free_bytes -= it->first;
      } else {
        blocks[kept++] = b;
      }
    }
    blocks.resize(kept);
    it = blocks.empty() ? free_blocks.erase(it) : std::next(it);
  }
  return idle;
}

void BlockCache::step_boundary()
{
  std::vector<void *> idle;
  {
    std::lock_guard<std::mutex> lock(mutex);
    // with n users a step spans n boundaries: keep what was freed within the last n
    const std::uint64_t span = users > 1 ? (std::uint64_t) users : 1;
    if (step + 1 >= span) idle = take_idle(step + 1 - span);
    step++;
  }
  for (void *ptr : idle) c10::free_cpu(ptr);
}

std::size_t BlockCache::cached_bytes()
{
  std::lock_guard<std::mutex> lock(mutex);
  return free_bytes;
}

void BlockCache::copy_data(void *dest, const void *src, std::size_t count) const
{
  std::memcpy(dest, src, count);
}

}    // namespace hessdistill
