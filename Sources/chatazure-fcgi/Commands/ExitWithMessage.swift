import Foundation

/// Ends the process with one line on stderr and exit code 1, no stack trace.
struct ExitWithMessage: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

extension ExitWithMessage {
    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(1)
    }
}
