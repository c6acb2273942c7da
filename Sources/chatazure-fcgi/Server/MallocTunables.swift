import Foundation

/// A speed setting, applied at start. By default glibc keeps 7 freed blocks per size class per
/// thread (its tcache); one request frees more than that of the same few sizes (strings, arrays,
/// libcurl's and libfcgi's buffers), and the rest take glibc's slower locked paths. 64 keeps a
/// request's worth in the thread's cache. glibc reads tunables once, at process start, so `serve`
/// re-executes itself once with the setting added.
enum MallocTunables {
    static let setting = "glibc.malloc.tcache_count=64"

    /// Re-executes this program with `setting` in GLIBC_TUNABLES, unless a tcache count is already
    /// set there. Returns only when nothing needs doing or the exec failed (then glibc's defaults
    /// stay, which only costs speed).
    static func applyByReexecuting() {
        let current = getenv("GLIBC_TUNABLES").map { String(cString: $0) } ?? ""
        guard !current.contains("tcache_count") else { return }
        setenv("GLIBC_TUNABLES", current.isEmpty ? setting : "\(current):\(setting)", 1)
        // By its real path: the kernel names a process after the file it executes, and through
        // /proc/self/exe every worker would show as "exe" in ps, top and pgrep.
        execv(SelfExecutable.path() ?? "/proc/self/exe", CommandLine.unsafeArgv)
    }
}
