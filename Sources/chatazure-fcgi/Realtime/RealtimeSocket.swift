import Core
import Foundation
import Logging

/// Where the Realtime listener's socket comes from: the supervisor passes it as fd 3
/// (`--realtime-fd 3`); a process on its own opens `realtime.socket`, unless a live process of
/// the host listens there already (spawn-fcgi starts several processes, and only one may bind).
enum RealtimeSocket {
    static let inheritedFD: Int32 = 3

    /// The listening socket at `path`, created with the FastCGI socket's mode and group, and, when
    /// that socket was handed over (spawn-fcgi's `-U`, `-G`, `-M`), with its owner, group and mode;
    /// nil when another process listens there.
    static func open(_ path: String, settings: FastCGISettings, like fastcgi: ListenSocket, logger: Logger) -> ListenSocket? {
        if isLive(path) {
            logger.info("another process of this host listens on \(path); this one serves no Realtime sessions")
            return nil
        }
        do {
            let socket = try ListenSocket.open(.unix(path: path), mode: settings.socketMode, group: settings.socketGroup, backlog: 1024)
            var info = stat()
            if fastcgi.isInherited, let fastcgiPath = fastcgi.unixPath, stat(fastcgiPath, &info) == 0 {
                // Only nginx's workers, as for the FastCGI socket; as root, the same owner too.
                if chown(path, getuid() == 0 ? info.st_uid : uid_t.max, info.st_gid) != 0 || chmod(path, info.st_mode & 0o777) != 0 {
                    logger.warning("cannot give \(path) the owner and mode of \(fastcgiPath): \(String(cString: strerror(errno)))")
                }
            }
            logger.info("Realtime sessions on \(path)")
            return socket
        } catch let error as ExitWithMessage {
            logger.error("no Realtime listener: \(error.message)")
        } catch {
            logger.error("no Realtime listener: \(error)")
        }
        return nil
    }

    /// Whether a process accepts connections at the unix socket `path`.
    static func isLive(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
    }
}
