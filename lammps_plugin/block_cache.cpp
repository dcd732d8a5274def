#include "block_cache.h"

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <cstring>

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

void BlockCache::install()
{
  std::lock_guard<std::mutex> lock(mutex);
  if (installed) return;
  previous = c10::GetCPUAllocator();
  c10::SetCPUAllocator(this, PRIORITY);
  installed = true;
}

void BlockCache::uninstall()
{
  std::lock_guard<std::mutex> lock(mutex);
  if (!installed) return;
  c10::SetCPUAllocator(previous, PRIORITY);
  installed = false;
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
  std::lock_guard<std::mutex> lock(mutex);
  auto it = live.find(ptr);
  const std::size_t size = it->second;
  live.erase(it);
  free_blocks[size].push_back({ptr, step});
  free_bytes += size;
}

void BlockCache::step_boundary()
{
  std::vector<void *> idle;
  {
    std::lock_guard<std::mutex> lock(mutex);
    for (auto it = free_blocks.begin(); it != free_blocks.end();) {
      auto &blocks = it->second;
      std::size_t kept = 0;
      for (const Free &b : blocks) {
        if (b.freed_in_step < step) {
          idle.push_back(b.ptr);
          free_bytes -= it->first;
        } else {
          blocks[kept++] = b;
        }
      }
      blocks.resize(kept);
      it = blocks.empty() ? free_blocks.erase(it) : std::next(it);
    }
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
