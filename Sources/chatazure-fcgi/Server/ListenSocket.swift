import CFastCGI
import Core
import Foundation

/// The socket the pool accepts on: inherited as fd 0 from spawn-fcgi, or opened here from a
/// `ListenAddress`, in which case a unix socket file is created with the configured mode and
/// group and removed again by `close()`.
struct ListenSocket {
    let fd: Int32
    /// The socket file this process created, if any.
    let createdPath: String?
    /// Passed as fd 0 (spawn-fcgi, the supervisor) rather than opened here.
    var isInherited = false

    /// fd 0 when it is a listening socket (spawn-fcgi), else nil.
    static func inherited() -> ListenSocket? {
        var accepting: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(0, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &length) == 0, accepting != 0 else { return nil }
        return ListenSocket(fd: 0, createdPath: nil, isInherited: true)
    }

    /// Opens `address`; a stale unix socket file is replaced, any other file is refused.
    static func open(_ address: ListenAddress, mode: UInt32, group: String?, backlog: Int32) throws -> ListenSocket {
        var gid: gid_t?
        if let group {
            guard let entry = getgrnam(group) else { throw ExitWithMessage(message: "fastcgi.socket-group: no group named '\(group)'") }
            gid = entry.pointee.gr_gid
        }
        if case .unix(let path) = address {
            var info = stat()
            if lstat(path, &info) == 0 {
                guard (info.st_mode & S_IFMT) == S_IFSOCK else {
                    throw ExitWithMessage(message: "\(path) exists and is not a socket; refusing to replace it")
                }
                unlink(path)
            }
        }
        // The socket file must never exist with wider permissions than asked, not even briefly.
        let previous = umask(0o777 & ~mode_t(mode))
        let fd = FCGX_OpenSocket(address.description, backlog)
        umask(previous)
        guard fd >= 0 else { throw ExitWithMessage(message: "cannot listen on \(address): \(String(cString: strerror(errno)))") }
        guard case .unix(let path) = address else { return ListenSocket(fd: fd, createdPath: nil) }
        if let gid, chown(path, uid_t.max, gid) != 0 {
            throw ExitWithMessage(message: "cannot give \(path) to group \(group ?? ""): \(String(cString: strerror(errno)))")
        }
        guard chmod(path, mode_t(mode)) == 0 else {
            throw ExitWithMessage(message: "cannot set the mode of \(path): \(String(cString: strerror(errno)))")
        }
        return ListenSocket(fd: fd, createdPath: path)
    }

    /// The path of the unix socket listened on (inherited or not); nil for TCP or an abstract one.
    var unixPath: String? {
        var address = sockaddr_un()
        var length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
        }
        guard named, address.sun_family == sa_family_t(AF_UNIX) else { return nil }
        let path = withUnsafeBytes(of: address.sun_path) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
        return path.isEmpty ? nil : path
    }

    /// Removes the socket file this process created.
    func close() {
        if let createdPath { unlink(createdPath) }
    }
}
