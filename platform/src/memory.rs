//! This process's memory: how much of it is resident, and giving freed heap
//! memory back to the OS.

/// The resident set size of process `pid` in KiB (`VmRSS` of
/// `/proc/PID/status`; `std::process::id()` for this process), or `None`
/// when it cannot be read: the process is gone, or the OS is not Linux.
///
/// The resident size counts what the allocator keeps free as well as the
/// live heap, stacks and mapped code: call [`release_free_memory`] first to
/// see what is in use.
pub fn rss_kib(pid: u32) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// Returns the heap memory the allocator holds free to the OS, where the
/// allocator keeps it otherwise.
///
/// glibc's malloc keeps freed small chunks in its arenas, so a process that
/// freed many of them (thousands of closed connections) keeps its resident
/// size; `malloc_trim(0)` hands every free page of every arena back. It
/// walks the arenas under their locks (a few milliseconds for hundreds of
/// MiB), so call it rarely: after many frees, at most every few seconds,
/// from a blocking thread. Elsewhere (other C libraries, macOS, Windows) it
/// does nothing.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only rearranges the
    // allocator's own free lists; it is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn rss_of_this_process_and_of_none() {
        let rss = rss_kib(std::process::id()).expect("our own VmRSS");
        assert!(rss > 0);
        // Above the kernel's pid_max (at most 2^22): no such process.
        assert_eq!(rss_kib(u32::MAX), None);
    }

    #[test]
    fn live_memory_is_left_intact() {
        let keep: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 4096]).collect();
        let freed: Vec<Vec<u8>> = (0..1024).map(|_| vec![1; 8192]).collect();
        drop(freed);
        release_free_memory();
        release_free_memory();
        for (i, v) in (0u8..).zip(&keep) {
            assert!(v.iter().all(|b| *b == i));
        }
    }

    /// 64 MiB in 8 KiB chunks (below glibc's mmap threshold) with live
    /// chunks after them, so that freeing them leaves the memory in the
    /// arena: the trim gives most of it back.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_small_chunks_go_back_to_the_os() {
        let chunks: Vec<Vec<u8>> = (0..8192).map(|_| vec![1; 8192]).collect();
        let guard: Vec<Vec<u8>> = (0..16).map(|_| vec![2; 1024]).collect();
        drop(chunks);
        let rss = || rss_kib(std::process::id()).unwrap_or(0);
        let before = rss();
        release_free_memory();
        let after = rss();
        assert!(
            before.saturating_sub(after) > 32 * 1024,
            "RSS {before} KiB -> {after} KiB"
        );
        assert!(guard.iter().flatten().all(|b| *b == 2));
    }
}
